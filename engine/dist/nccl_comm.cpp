#include "engine/dist/nccl_comm.h"

#include <stdexcept>

#ifdef MELGRAPH_HAVE_NCCL
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <nccl.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <optional>

#include "engine/dist/periodic_thread.h"
#endif

namespace mg::dist {

#ifndef MELGRAPH_HAVE_NCCL
bool nccl_built() { return false; }

std::unique_ptr<Comm> nccl_comm(Comm&, void*, int, double) {
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

// Every NCCL call here expects a blocking communicator (a call returns once its work is
// enqueued, or with its error). NCCL_COMM_BLOCKING=0 makes every communicator non-blocking, its
// calls returning ncclInProgress, and NCCL lets the variable override what a program asks for
// in ncclConfig_t: the run is refused before it starts rather than failing at its first
// collective. The value is read as NCCL reads it (strtoll in base 0, trailing text ignored,
// kept in an int), so "false" or "0x0" count as 0 here as they do there. NCCL's own
// configuration files (NCCL_CONF_FILE, ~/.nccl.conf, /etc/nccl.conf) are not read.
void refuse_nonblocking_environment() {
  const char* value = std::getenv("NCCL_COMM_BLOCKING");
  if (!value || !*value) return;
  errno = 0;
  const long long blocking = std::strtoll(value, nullptr, 0);
  if (errno == 0 && static_cast<int>(blocking) == 0)
    throw std::runtime_error(std::string("NCCL_COMM_BLOCKING=") + value +
                             " asks NCCL for non-blocking communicators, and melgraph's collectives are written for "
                             "blocking ones: unset it (or set it to 1)");
}

void check_cuda(cudaError_t rc, const char* call, const char* file, int line) {
  if (rc != cudaSuccess)
    throw std::runtime_error(std::string(call) + " failed at " + file + ":" + std::to_string(line) + ": " +
                             cudaGetErrorString(rc));
}
#define MG_NCCL_CUDA_CHECK(call) check_cuda((call), #call, __FILE__, __LINE__)

class NcclComm final : public Comm {
 public:
  NcclComm(Comm& host, cudaStream_t stream, int device, double timeout_seconds)
      : host_(host), stream_(stream), device_(device), timeout_(timeout_seconds) {
    refuse_nonblocking_environment();
    const NcclApi& api = nccl();
    int version = 0;
    MG_NCCL_CHECK(api.GetVersion(&version));
    version_ = version;
    ncclUniqueId id{};
    if (host.leader()) MG_NCCL_CHECK(api.GetUniqueId(&id));
    host.broadcast(&id, sizeof id);
    MG_NCCL_CUDA_CHECK(cudaSetDevice(device));
    try {
      MG_NCCL_CUDA_CHECK(cudaStreamCreateWithFlags(&comm_stream_, cudaStreamNonBlocking));
      MG_NCCL_CUDA_CHECK(cudaEventCreateWithFlags(&forked_, cudaEventDisableTiming));
      MG_NCCL_CUDA_CHECK(cudaEventCreateWithFlags(&joined_, cudaEventDisableTiming));
      MG_NCCL_CUDA_CHECK(cudaEventCreateWithFlags(&enqueued_, cudaEventDisableTiming));
      MG_NCCL_CHECK(api.CommInitRank(&comm_, host.size(), id, host.rank()));
    } catch (...) {
      release();
      throw;
    }
    watchdog_.emplace(std::chrono::seconds(1), [this] { watch(); });
  }

  // ncclCommDestroy is a collective of the ranks on this machine, and the synchronisation
  // before it waits for collectives that need every rank: when an exception unwinds one
  // rank's run, the others are not here to meet it, and either call could block for good
  // before cmd_train's catch ends the run (Comm::abort). The communicator is left to the
  // process's exit then, which ends its kernels with the GPU context.
  ~NcclComm() override {
    watchdog_.reset();  // before the communicator it reads goes
    if (std::uncaught_exceptions() > 0 && host_.size() > 1) return;
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
  // The host communicator ends every process (MPI_Abort), and with them their GPU contexts and
  // any NCCL kernel still waiting for a peer. Not ncclCommAbort first: it is a collective of
  // the ranks on this machine and could block before the abort is reached.
  [[noreturn]] void abort(const std::string& why, int code) override {
    host_.abort(why, code);
    std::_Exit(code);  // not reached: the host communicator's abort ends the process
  }

  // After each launch of a step (eager or a graph replay): the event recorded behind it must
  // complete within the timeout. Inside a capture there is nothing to time: the replays are.
  void watch_enqueued_work() override {
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    MG_NCCL_CUDA_CHECK(cudaStreamIsCapturing(stream_, &capture));
    if (capture != cudaStreamCaptureStatusNone) return;
    const std::lock_guard<std::mutex> lock(enqueued_mu_);
    MG_NCCL_CUDA_CHECK(cudaEventRecord(enqueued_, stream_));
    enqueued_at_ = std::chrono::steady_clock::now();
    enqueued_pending_ = true;
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
    if (enqueued_) cudaEventDestroy(enqueued_);
    if (joined_) cudaEventDestroy(joined_);
    if (forked_) cudaEventDestroy(forked_);
    if (comm_stream_) cudaStreamDestroy(comm_stream_);
    comm_ = nullptr;
    enqueued_ = joined_ = forked_ = nullptr;
    comm_stream_ = nullptr;
  }

  void fork() {
    MG_NCCL_CUDA_CHECK(cudaEventRecord(forked_, stream_));
    MG_NCCL_CUDA_CHECK(cudaStreamWaitEvent(comm_stream_, forked_, 0));
  }

  // The watchdog, every second. A GPU collective waits on the device, where no host
  // collective's watch sees it: a rank whose peer failed (NCCL reports a broken connection or
  // a remote error asynchronously) or stalls without failing (stuck in I/O, or in a call that
  // never returns) would spin in its kernels for good, and the host in its next
  // synchronisation. Either ends every rank of the run, from this thread (the host
  // communicator's abort may be called from any thread).
  void watch() {
    if (host_.size() < 2) return;  // no peer to wait for; the main thread sees its own errors
    ncclResult_t async = ncclSuccess;
    if (nccl().CommGetAsyncError(comm_, &async) == ncclSuccess && async != ncclSuccess && async != ncclInProgress)
      host_.abort(std::string("NCCL reported ") + nccl().GetErrorString(async), 1);
    const double waited = seconds_waited_for_enqueued_work();
    if (waited >= timeout_) {
      char why[256];
      std::snprintf(why, sizeof why,
                    "a training step's GPU work (its NCCL collectives) did not complete in %.0f s: another rank has "
                    "failed or stopped (see its messages above)",
                    waited);
      host_.abort(why, 1);
    }
  }

  // How long the work behind the last watch_enqueued_work() has been pending; 0 once it is done.
  double seconds_waited_for_enqueued_work() {
    const std::lock_guard<std::mutex> lock(enqueued_mu_);
    if (!enqueued_pending_) return 0;
    // This thread's first CUDA call would otherwise make a context on GPU 0 for every rank.
    if (cudaSetDevice(device_) != cudaSuccess) return 0;
    const cudaError_t done = cudaEventQuery(enqueued_);
    if (done == cudaSuccess) enqueued_pending_ = false;
    // Another error is the main thread's to report: its next CUDA call returns it.
    if (done != cudaErrorNotReady) return 0;
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - enqueued_at_).count();
  }

  Comm& host_;
  cudaStream_t stream_;  // the backend's compute stream
  int device_;
  double timeout_;                      // seconds that a step's enqueued work may take
  cudaStream_t comm_stream_ = nullptr;  // every NCCL operation of this communicator
  cudaEvent_t forked_ = nullptr;        // compute stream -> comm_stream_
  cudaEvent_t joined_ = nullptr;        // comm_stream_ -> compute stream
  ncclComm_t comm_ = nullptr;
  int version_ = 0;
  std::mutex enqueued_mu_;          // the main thread records, the watchdog queries
  cudaEvent_t enqueued_ = nullptr;  // recorded on stream_ by watch_enqueued_work()
  std::chrono::steady_clock::time_point enqueued_at_;
  bool enqueued_pending_ = false;
  std::optional<PeriodicThread> watchdog_;  // last: its thread reads the members above
};

}  // namespace

std::unique_ptr<Comm> nccl_comm(Comm& host, void* cuda_stream, int device, double timeout_seconds) {
  return std::make_unique<NcclComm>(host, static_cast<cudaStream_t>(cuda_stream), device, timeout_seconds);
}
#endif

}  // namespace mg::dist
