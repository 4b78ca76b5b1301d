// The processes of one training run and the collectives its data-parallel step needs.
//
// A run of N processes ("ranks") is launched by mpirun or srun; each rank trains on 1/N of the
// global batch (engine/train_step.h). The float collectives work on host memory here (MPI's,
// one process's) and return once the result is there; engine/dist/nccl_comm.h's work on a
// GPU's memory (device_memory()). The control collectives (broadcast, any) work on host memory.
//
// Every collective of a rank must be met by the same collective on every other rank, in the
// same order: the trainer calls them at the same points of the same loop on every rank.
// A collective that does not complete within the watchdog's timeout (a rank stuck or gone)
// aborts the whole run with a message naming the collective, instead of hanging.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace mg::dist {

class Comm {
 public:
  virtual ~Comm() = default;
  virtual int rank() const = 0;        // [0, size)
  virtual int size() const = 0;        // ranks in the run
  virtual int local_rank() const = 0;  // among the ranks on this machine (picks the GPU)
  virtual int local_size() const = 0;
  bool leader() const { return rank() == 0; }  // writes the run's files
  // Whether allreduce_sum and allgather take a GPU's memory (NCCL's) rather than host memory.
  virtual bool device_memory() const { return false; }

  // data [n]: every rank's data summed, the same bits on every rank.
  virtual void allreduce_sum(float* data, int64_t n) = 0;
  // Gradient buckets summed while the backward goes on (llm.c's overlap): starts the sum of
  // data [n] over the ranks once the device work enqueued before this call is done, and
  // returns at once; the device work enqueued after wait_sums() waits for every sum started
  // before it. NCCL's run on a stream of their own, ordered by events. A host communicator has
  // no second stream and the CPU no idle cores: it sums at once, and wait_sums() is nothing.
  virtual void allreduce_sum_async(float* data, int64_t n) { allreduce_sum(data, n); }
  virtual void wait_sums() {}
  // ZeRO-1's pair, in place over data [size * n] (rank r owns the slice [r n, (r+1) n)).
  // reduce_sum_async: the sum of data [count] over the ranks, at rank `root` only (the other
  // ranks' data then holds anything); started and waited for as allreduce_sum_async, so each
  // bucket's share of an owner's slice is summed while the backward goes on (reduce_to_owners).
  // allgather_slices sends this rank's slice to every rank, so afterwards each slice holds
  // its owner's.
  virtual void reduce_sum_async(float* data, int64_t count, int root) = 0;
  virtual void allgather_slices(float* data, int64_t n) = 0;
  // send [n] of every rank into recv [size * n], rank r's at recv + r * n.
  virtual void allgather(const float* send, float* recv, int64_t n) = 0;
  // Host bytes [bytes] from rank 0 to every rank.
  virtual void broadcast(void* data, size_t bytes) = 0;
  // Whether `flag` is true on any rank (stop requests, decisions that must agree).
  virtual bool any(bool flag) = 0;
  // After a training step is enqueued: a communicator whose collectives run on the device
  // (NCCL's) ends the run unless the work enqueued so far completes within its timeout, since
  // the host waits for it outside any collective the watchdog could see. Host communicators
  // watch their collectives as they run: nothing to do.
  virtual void watch_enqueued_work() {}
  // Ends every rank of the run now, `why` printed first (a rank that cannot go on); the
  // launcher exits with `code` (2: bad input, as melgraph's own exit status).
  [[noreturn]] virtual void abort(const std::string& why, int code) = 0;

  // "MPI, 4 ranks on 2 machines" or "1 process".
  virtual std::string describe() const = 0;
};

// ZeRO-1's gradient sum for one bucket, data [first, first + count) of a flat buffer whose
// rank r owns [r slice, (r + 1) slice): each part summed at its owner, one reduce per owner
// the bucket touches (together one pass of the bucket, as a reduce-scatter). Asynchronous as
// reduce_sum_async: wait_sums() before the sums are read.
void reduce_to_owners(Comm& comm, float* data, int64_t first, int64_t count, int64_t slice);

// How long one collective may wait for the other ranks before the watchdog ends the run.
constexpr double kCollectiveTimeoutSeconds = 600.0;

// One process: size 1, every collective the identity.
std::unique_ptr<Comm> single_process();

// Whether this process was started by a launcher (mpirun, srun, mpiexec): its environment
// holds a rank (OMPI_COMM_WORLD_RANK, PMIX_RANK, PMI_RANK, SLURM_PROCID with SLURM_NTASKS > 1).
bool launched_by_mpi();

// The run's communicator: MPI's world when launched_by_mpi() and this build has MPI, else
// single_process(). Launched by MPI in a build without it is an error that says how to build
// with it. Initialises MPI once; MPI is finalised when the last communicator goes.
// timeout_seconds: the watchdog's limit for one collective.
std::unique_ptr<Comm> world(double timeout_seconds = kCollectiveTimeoutSeconds);

// Whether this build has MPI (MELGRAPH_HAVE_MPI).
bool built_with_mpi();

}  // namespace mg::dist
