// The GPU collectives of a data-parallel run: NCCL on the CUDA backend's stream, over the ranks
// of a host communicator (MPI's, or one process), which also carries NCCL's unique id from rank
// 0 to the others and every control collective (broadcast, any, abort).
//
// NCCL is loaded when a communicator is made (libnccl.so.2, from the CUDA toolkit or the
// system), not linked: a melgraph without NCCL on the machine still starts and trains on one
// GPU, and says what is missing when asked for more.
#pragma once
#include <memory>
#include <string>

#include "engine/dist/comm.h"

namespace mg::dist {

// Whether this build has the NCCL communicator (CUDA and nccl.h were found at configure).
bool nccl_built();

// A communicator over host's ranks whose allreduce_sum and allgather take device memory of GPU
// `device` and are ordered with the work on `cuda_stream` (a cudaStream_t), returning before
// they complete (so a step that uses them can be captured as a CUDA graph). They run on a
// stream of the communicator's own, forked from `cuda_stream` by an event and joined back:
// allreduce_sum_async's sums overlap the compute until wait_sums().
// A watchdog thread ends every rank of the run (host.abort) when NCCL reports an error, or when
// the work enqueued before a watch_enqueued_work() has not completed after timeout_seconds.
// `host` must outlive it. Throws std::runtime_error naming what failed (no NCCL library, the
// NCCL call and its error).
std::unique_ptr<Comm> nccl_comm(Comm& host, void* cuda_stream, int device,
                                double timeout_seconds = kCollectiveTimeoutSeconds);

}  // namespace mg::dist
