#include "engine/dist/comm.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

namespace mg::dist {

namespace {

class SingleProcess final : public Comm {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  int local_rank() const override { return 0; }
  int local_size() const override { return 1; }
  void allreduce_sum(float*, int64_t) override {}
  void allgather(const float* send, float* recv, int64_t n) override {
    if (send != recv && n > 0) std::memcpy(recv, send, static_cast<size_t>(n) * sizeof(float));
  }
  void reduce_sum_async(float*, int64_t, int) override {}
  void allgather_slices(float*, int64_t) override {}
  void broadcast(void*, size_t) override {}
  bool any(bool flag) override { return flag; }
  [[noreturn]] void abort(const std::string& why, int) override { throw std::runtime_error(why); }
  std::string describe() const override { return "1 process"; }
};

bool env_set(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0';
}

}  // namespace

void reduce_to_owners(Comm& comm, float* data, int64_t first, int64_t count, int64_t slice) {
  if (slice <= 0) throw std::invalid_argument("reduce_to_owners: a slice of " + std::to_string(slice) + " floats");
  const int64_t end = first + count;
  for (int r = static_cast<int>(first / slice); r < comm.size() && static_cast<int64_t>(r) * slice < end; ++r) {
    const int64_t lo = std::max(first, r * slice), hi = std::min(end, (r + 1) * slice);
    if (lo < hi) comm.reduce_sum_async(data + lo, hi - lo, r);
  }
}

std::unique_ptr<Comm> single_process() { return std::make_unique<SingleProcess>(); }

bool launched_by_mpi() {
  if (env_set("OMPI_COMM_WORLD_RANK") || env_set("PMIX_RANK") || env_set("PMI_RANK")) return true;
  // srun without an MPI plugin still sets these; one task is a single process.
  const char* tasks = std::getenv("SLURM_NTASKS");
  return env_set("SLURM_PROCID") && tasks != nullptr && std::atoi(tasks) > 1;
}

#ifndef MELGRAPH_HAVE_MPI
bool built_with_mpi() { return false; }

std::unique_ptr<Comm> world(double) {
  if (launched_by_mpi())
    throw std::runtime_error(
        "this process was started by mpirun or srun, but this melgraph was built without MPI: install "
        "libopenmpi-dev (scripts/setup does) and configure again, or run a single process without the launcher");
  return single_process();
}
#endif

}  // namespace mg::dist
