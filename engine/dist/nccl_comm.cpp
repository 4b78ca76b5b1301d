#include "engine/dist/nccl_comm.h"

#include <stdexcept>

#ifdef MELGRAPH_HAVE_NCCL
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <nccl.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <optional>

#include "engine/dist/periodic_thread.h"
#endif

namespace mg::dist {

#ifndef MELGRAPH_HAVE_NCCL
bool nccl_built() { return false; }

std::unique_ptr<Comm> nccl_comm(Comm&, void*, int) {
  throw std::runtime_error(
      "data-parallel training on GPUs needs NCCL, and this melgraph was built without it (the CUDA toolkit's nccl.h "
      "was not found at configure)");
}
#else
bool nccl_built() { return true; }

namespace {

// The NCCL entry points melgraph calls, from the library loaded at run time.
struct NcclApi {
  decltype(&::ncclGetVersion) GetVersion = nullptr;
  decltype(&::ncclGetUniqueId) GetUniqueId = nullptr;
  decltype(&::ncclCommInitRank) CommInitRank = nullptr;
  decltype(&::ncclCommDestroy) CommDestroy = nullptr;
  decltype(&::ncclCommAbort) CommAbort = nullptr;
  decltype(&::ncclCommGetAsyncError) CommGetAsyncError = nullptr;
  decltype(&::ncclAllReduce) AllReduce = nullptr;
  decltype(&::ncclAllGather) AllGather = nullptr;
  decltype(&::ncclGetErrorString) GetErrorString = nullptr;
};

const NcclApi& nccl() {
  static const NcclApi api = [] {
    void* lib = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!lib) lib = dlopen("libnccl.so", RTLD_NOW | RTLD_LOCAL);
    if (!lib)
      throw std::runtime_error(std::string("data-parallel training on GPUs needs NCCL: cannot load libnccl.so.2 (") +
                               dlerror() + "); install NCCL or add its folder to LD_LIBRARY_PATH");
    NcclApi a;
    auto load = [lib](auto& fn, const char* name) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)> >(dlsym(lib, name));
      if (!fn) throw std::runtime_error(std::string("libnccl.so.2 has no ") + name + ": NCCL 2.12 or newer is needed");
    };
    load(a.GetVersion, "ncclGetVersion");
    load(a.GetUniqueId, "ncclGetUniqueId");
    load(a.CommInitRank, "ncclCommInitRank");
    load(a.CommDestroy, "ncclCommDestroy");
    load(a.CommAbort, "ncclCommAbort");
    load(a.CommGetAsyncError, "ncclCommGetAsyncError");
    load(a.AllReduce, "ncclAllReduce");
    load(a.AllGather, "ncclAllGather");
    load(a.GetErrorString, "ncclGetErrorString");
    return a;
  }();
  return api;
}

void check(ncclResult_t rc, const char* call, const char* file, int line) {
  if (rc != ncclSuccess)
    throw std::runtime_error(std::string(call) + " failed at " + file + ":" + std::to_string(line) + ": " +
                             nccl().GetErrorString(rc));
}
#define MG_NCCL_CHECK(call) check((call), #call, __FILE__, __LINE__)

void check_cuda(cudaError_t rc, const char* call, const char* file, int line) {
  if (rc != cudaSuccess)
    throw std::runtime_error(std::string(call) + " failed at " + file + ":" + std::to_string(line) + ": " +
                             cudaGetErrorString(rc));
}
#define MG_NCCL_CUDA_CHECK(call) check_cuda((call), #call, __FILE__, __LINE__)

class NcclComm final : public Comm {
 public:
  NcclComm(Comm& host, cudaStream_t stream, int device) : host_(host), stream_(stream) {
    const NcclApi& api = nccl();
    ncclUniqueId id{};
    if (host.leader()) MG_NCCL_CHECK(api.GetUniqueId(&id));
    host.broadcast(&id, sizeof id);
    MG_NCCL_CUDA_CHECK(cudaSetDevice(device));
    MG_NCCL_CHECK(api.CommInitRank(&comm_, host.size(), id, host.rank()));
    int version = 0;
    MG_NCCL_CHECK(api.GetVersion(&version));
    version_ = version;
    watchdog_.emplace(std::chrono::seconds(1), [this] { check_async_error(); });
  }

  ~NcclComm() override {
    watchdog_.reset();                     // before the communicator it reads goes
    if (comm_) nccl().CommDestroy(comm_);  // from a destructor: the result is not checked
  }

  int rank() const override { return host_.rank(); }
  int size() const override { return host_.size(); }
  int local_rank() const override { return host_.local_rank(); }
  int local_size() const override { return host_.local_size(); }
  bool device_memory() const override { return true; }

  // NCCL's ring and tree reductions give every rank the same bits.
  void allreduce_sum(float* data, int64_t n) override {
    MG_NCCL_CHECK(nccl().AllReduce(data, data, static_cast<size_t>(n), ncclFloat, ncclSum, comm_, stream_));
  }
  void allgather(const float* send, float* recv, int64_t n) override {
    MG_NCCL_CHECK(nccl().AllGather(send, recv, static_cast<size_t>(n), ncclFloat, comm_, stream_));
  }
  void broadcast(void* data, size_t bytes) override { host_.broadcast(data, bytes); }
  bool any(bool flag) override { return host_.any(flag); }
  [[noreturn]] void abort(const std::string& why, int code) override {
    nccl().CommAbort(comm_);  // unblocks kernels waiting for a peer that is gone
    comm_ = nullptr;
    host_.abort(why, code);
    std::_Exit(code);  // not reached: the host communicator's abort ends the process
  }
  std::string describe() const override {
    return "NCCL " + std::to_string(version_ / 10000) + "." + std::to_string(version_ / 100 % 100) + " over " +
           host_.describe();
  }

 private:
  // NCCL reports a peer's failure (a broken connection, a remote error) asynchronously; a
  // kernel waiting for it would otherwise spin for good. Checked every second.
  void check_async_error() {
    ncclResult_t async = ncclSuccess;
    if (nccl().CommGetAsyncError(comm_, &async) != ncclSuccess || async == ncclSuccess || async == ncclInProgress)
      return;
    std::fprintf(stderr, "melgraph: error: rank %d of %d: NCCL reported %s; ending every rank of the run\n",
                 host_.rank(), host_.size(), nccl().GetErrorString(async));
    std::fflush(stderr);
    nccl().CommAbort(comm_);
    host_.abort(std::string("NCCL: ") + nccl().GetErrorString(async), 1);
  }

  Comm& host_;
  cudaStream_t stream_;
  ncclComm_t comm_ = nullptr;
  int version_ = 0;
  std::optional<PeriodicThread> watchdog_;
};

}  // namespace

std::unique_ptr<Comm> nccl_comm(Comm& host, void* cuda_stream, int device) {
  return std::make_unique<NcclComm>(host, static_cast<cudaStream_t>(cuda_stream), device);
}
#endif

}  // namespace mg::dist
