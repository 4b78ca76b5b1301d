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
  decltype(&::ncclReduce) Reduce = nullptr;
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
    load(a.Reduce, "ncclReduce");
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
    try {
      MG_NCCL_CUDA_CHECK(cudaStreamCreateWithFlags(&comm_stream_, cudaStreamNonBlocking));
      MG_NCCL_CUDA_CHECK(cudaEventCreateWithFlags(&forked_, cudaEventDisableTiming));
      MG_NCCL_CUDA_CHECK(cudaEventCreateWithFlags(&joined_, cudaEventDisableTiming));
      MG_NCCL_CHECK(api.CommInitRank(&comm_, host.size(), id, host.rank()));
    } catch (...) {
      release();
      throw;
    }
    int version = 0;
    MG_NCCL_CHECK(api.GetVersion(&version));
    version_ = version;
    watchdog_.emplace(std::chrono::seconds(1), [this] { check_async_error(); });
  }

  ~NcclComm() override {
    watchdog_.reset();  // before the communicator it reads goes
    release();
  }

  int rank() const override { return host_.rank(); }
  int size() const override { return host_.size(); }
  int local_rank() const override { return host_.local_rank(); }
  int local_size() const override { return host_.local_size(); }
  bool device_memory() const override { return true; }

  // Every NCCL call goes on comm_stream_, forked from the compute stream (it starts after the
  // work enqueued there so far) and joined back where the compute needs its result: one
  // stream, so the communicator's operations run in the order they were issued, the same on
  // every rank. A captured step records the fork and the join as graph edges.
  // NCCL's ring and tree reductions give every rank the same bits.
  void allreduce_sum(float* data, int64_t n) override {
    allreduce_sum_async(data, n);
    wait_sums();
  }
  void allreduce_sum_async(float* data, int64_t n) override {
    fork();
    MG_NCCL_CHECK(nccl().AllReduce(data, data, static_cast<size_t>(n), ncclFloat, ncclSum, comm_, comm_stream_));
  }
  void wait_sums() override {
    MG_NCCL_CUDA_CHECK(cudaEventRecord(joined_, comm_stream_));
    MG_NCCL_CUDA_CHECK(cudaStreamWaitEvent(stream_, joined_, 0));
  }
  void allgather(const float* send, float* recv, int64_t n) override {
    fork();
    MG_NCCL_CHECK(nccl().AllGather(send, recv, static_cast<size_t>(n), ncclFloat, comm_, comm_stream_));
    wait_sums();
  }
  // In place (send buffer = receive buffer); only the root's receive buffer is written.
  void reduce_sum_async(float* data, int64_t n, int root) override {
    fork();
    MG_NCCL_CHECK(nccl().Reduce(data, data, static_cast<size_t>(n), ncclFloat, ncclSum, root, comm_, comm_stream_));
  }
  void allgather_slices(float* data, int64_t n) override {
    fork();
    MG_NCCL_CHECK(nccl().AllGather(data + static_cast<int64_t>(host_.rank()) * n, data, static_cast<size_t>(n),
                                   ncclFloat, comm_, comm_stream_));
    wait_sums();
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
  // From a destructor or a failed constructor: results are not checked.
  void release() {
    if (comm_stream_) cudaStreamSynchronize(comm_stream_);
    if (comm_) nccl().CommDestroy(comm_);
    if (joined_) cudaEventDestroy(joined_);
    if (forked_) cudaEventDestroy(forked_);
    if (comm_stream_) cudaStreamDestroy(comm_stream_);
    comm_ = nullptr;
    joined_ = forked_ = nullptr;
    comm_stream_ = nullptr;
  }

  void fork() {
    MG_NCCL_CUDA_CHECK(cudaEventRecord(forked_, stream_));
    MG_NCCL_CUDA_CHECK(cudaStreamWaitEvent(comm_stream_, forked_, 0));
  }

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
  cudaStream_t stream_;                 // the backend's compute stream
  cudaStream_t comm_stream_ = nullptr;  // every NCCL operation of this communicator
  cudaEvent_t forked_ = nullptr;        // compute stream -> comm_stream_
  cudaEvent_t joined_ = nullptr;        // comm_stream_ -> compute stream
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
