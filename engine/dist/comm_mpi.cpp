// The MPI communicator (built when CMake finds MPI): MPI_COMM_WORLD's ranks, the collectives on
// host memory, and a watchdog thread that ends the run when a collective does not complete in
// time (a rank stuck or gone), so that no rank hangs for good.
#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "engine/dist/comm.h"
#include "engine/dist/periodic_thread.h"

namespace mg::dist {

namespace {

std::string mpi_error(int rc) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) return "MPI error " + std::to_string(rc);
  return std::string(text, static_cast<size_t>(len));
}

void check(int rc, const char* call, const char* file, int line) {
  if (rc != MPI_SUCCESS)
    throw std::runtime_error(std::string(call) + " failed at " + file + ":" + std::to_string(line) + ": " +
                             mpi_error(rc));
}
#define MG_MPI_CHECK(call) check((call), #call, __FILE__, __LINE__)

// MPI counts are int: longer buffers go in pieces.
constexpr int64_t kMaxCount = INT_MAX / 2;

class MpiComm final : public Comm {
 public:
  explicit MpiComm(double timeout_seconds) : timeout_(timeout_seconds) {
    int initialised = 0;
    MG_MPI_CHECK(MPI_Initialized(&initialised));
    if (!initialised) {
      // The watchdog thread may call MPI_Abort while the main thread is inside a collective.
      MG_MPI_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &thread_level_));
      owns_mpi_ = true;
    } else {
      MG_MPI_CHECK(MPI_Query_thread(&thread_level_));
    }
    MG_MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
    MG_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank_));
    MG_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &size_));
    MPI_Comm node = MPI_COMM_NULL;
    MG_MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node));
    MG_MPI_CHECK(MPI_Comm_rank(node, &local_rank_));
    MG_MPI_CHECK(MPI_Comm_size(node, &local_size_));
    MG_MPI_CHECK(MPI_Comm_free(&node));
    int first_on_node = local_rank_ == 0 ? 1 : 0;
    MG_MPI_CHECK(MPI_Allreduce(&first_on_node, &machines_, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD));
    watchdog_.emplace(std::chrono::milliseconds(500), [this] { check_collective(); });
  }

  ~MpiComm() override {
    watchdog_.reset();  // before MPI goes
    if (owns_mpi_) MPI_Finalize();
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_rank() const override { return local_rank_; }
  int local_size() const override { return local_size_; }

  // A reduction to rank 0 and a broadcast back, rather than MPI_Allreduce: the standard does
  // not promise every rank the same bits from an allreduce (summation orders may differ per
  // rank), and ranks whose parameters drift apart by a rounding are no longer one model.
  void allreduce_sum(float* data, int64_t n) override {
    const Watch w(*this, "allreduce of the gradients");
    reduce_at(data, n, 0);
    for (int64_t at = 0; at < n; at += kMaxCount)
      MG_MPI_CHECK(MPI_Bcast(data + at, static_cast<int>(std::min(kMaxCount, n - at)), MPI_FLOAT, 0, MPI_COMM_WORLD));
  }

  // Synchronous: the CPU has no idle cores for a sum to overlap with.
  void reduce_sum_async(float* data, int64_t n, int root) override {
    const Watch w(*this, "sum of a gradient bucket at its owner (ZeRO-1)");
    reduce_at(data, n, root);
  }

  void allgather(const float* send, float* recv, int64_t n) override {
    const Watch w(*this, "allgather of the batch's pooled features");
    if (n > kMaxCount) throw std::invalid_argument("allgather: " + std::to_string(n) + " floats per rank is too many");
    MG_MPI_CHECK(
        MPI_Allgather(send, static_cast<int>(n), MPI_FLOAT, recv, static_cast<int>(n), MPI_FLOAT, MPI_COMM_WORLD));
  }

  void allgather_slices(float* data, int64_t n) override {
    const Watch w(*this, "allgather of the parameters (ZeRO-1)");
    if (n > kMaxCount)
      throw std::invalid_argument("allgather_slices: " + std::to_string(n) + " floats per rank is too many");
    MG_MPI_CHECK(
        MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, data, static_cast<int>(n), MPI_FLOAT, MPI_COMM_WORLD));
  }

  void broadcast(void* data, size_t bytes) override {
    const Watch w(*this, "broadcast from rank 0");
    auto* p = static_cast<char*>(data);
    for (size_t at = 0; at < bytes; at += static_cast<size_t>(kMaxCount)) {
      const int count = static_cast<int>(std::min(static_cast<size_t>(kMaxCount), bytes - at));
      MG_MPI_CHECK(MPI_Bcast(p + at, count, MPI_BYTE, 0, MPI_COMM_WORLD));
    }
  }

  bool any(bool flag) override {
    const Watch w(*this, "agreement on stopping");
    int mine = flag ? 1 : 0, all = 0;
    MG_MPI_CHECK(MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_LOR, MPI_COMM_WORLD));
    return all != 0;
  }

  [[noreturn]] void abort(const std::string& why, int code) override {
    std::fprintf(stderr, "melgraph: error: rank %d of %d: %s; ending every rank of the run\n", rank_, size_,
                 why.c_str());
    std::fflush(stderr);
    // From another thread (a watchdog) only where MPI allows calls from any thread; else the
    // launcher, seeing this rank fail, ends the others.
    if (thread_level_ >= MPI_THREAD_MULTIPLE || std::this_thread::get_id() == main_thread_)
      MPI_Abort(MPI_COMM_WORLD, code);
    _exit(code);  // MPI_Abort does not return; should it, the launcher sees this rank fail
  }

  std::string describe() const override {
    return "MPI, " + std::to_string(size_) + " ranks on " + std::to_string(machines_) +
           (machines_ == 1 ? " machine" : " machines");
  }

 private:
  // Marks the time spent inside one collective for the watchdog.
  class Watch {
   public:
    Watch(MpiComm& c, const char* what) : c_(c) {
      c_.what_.store(what);
      c_.since_.store(std::chrono::steady_clock::now().time_since_epoch().count());
    }
    ~Watch() { c_.since_.store(0); }
    Watch(const Watch&) = delete;
    Watch& operator=(const Watch&) = delete;

   private:
    MpiComm& c_;
  };

  // data [n] summed at rank `root`, in place there, in chunks MPI's int counts can name.
  void reduce_at(float* data, int64_t n, int root) {
    for (int64_t at = 0; at < n; at += kMaxCount) {
      const int count = static_cast<int>(std::min(kMaxCount, n - at));
      if (rank_ == root)
        MG_MPI_CHECK(MPI_Reduce(MPI_IN_PLACE, data + at, count, MPI_FLOAT, MPI_SUM, root, MPI_COMM_WORLD));
      else
        MG_MPI_CHECK(MPI_Reduce(data + at, nullptr, count, MPI_FLOAT, MPI_SUM, root, MPI_COMM_WORLD));
    }
  }

  // The watchdog's check: the collective in progress, if any, against the timeout.
  void check_collective() {
    const int64_t since = since_.load();
    if (since == 0) return;
    const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
    const double waited = std::chrono::duration<double>(std::chrono::steady_clock::duration(now - since)).count();
    if (waited < timeout_) return;
    char why[256];
    std::snprintf(why, sizeof why,
                  "the %s did not complete in %.0f s: another rank has failed or stopped (see its messages above)",
                  what_.load(), waited);
    abort(why, 1);
  }

  double timeout_;
  std::thread::id main_thread_ = std::this_thread::get_id();  // the one that made the communicator
  int thread_level_ = MPI_THREAD_SINGLE;
  bool owns_mpi_ = false;
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1, machines_ = 1;
  std::atomic<int64_t> since_{0};  // steady_clock ticks at the start of the collective in progress; 0: none
  std::atomic<const char*> what_{""};
  std::optional<PeriodicThread> watchdog_;
};

}  // namespace

bool built_with_mpi() { return true; }

std::unique_ptr<Comm> world(double timeout_seconds) {
  if (!launched_by_mpi()) return single_process();
  return std::make_unique<MpiComm>(timeout_seconds);
}

}  // namespace mg::dist
