// A test hook for the kill tests (tests/test_kill.cpp): with MELGRAPH_STOP_AT=<point>:<n> in
// the environment, the process stops itself (SIGSTOP) the n-th time it passes stop_point(<point>),
// so that the test can kill -9 it at exactly that moment rather than after a guessed delay,
// which would land elsewhere on a loaded machine. Without the variable a stop point does
// nothing. With MELGRAPH_STOP_RANK=<r> as well, only rank r of an mpirun/srun launch stops.
// Not for use outside tests.
//
// The points (each documented where it is passed):
//   train.step         engine/train/trainer.cpp: a step's update made and its metrics buffered
//   train.checkpoint   ... save_last: the metrics flushed, the checkpoint not yet written
//   train.checkpointed ... save_last: the checkpoint renamed into place, nothing after it done
//   rename:<file name> engine/io/atomic_file.cpp, engine/index/index_format.cpp: the temporary
//                      file complete and fsync'ed, not yet renamed over <file name>
//   index.row          engine/index/index_format.cpp: before inserting an embedding row
//   embed.batch        engine/embed/embedder.cpp: a batch of clips embedded, more to come
//   prepare.item       engine/audio/prepare.cpp: an item's result handed to the cache writer
#pragma once
#include <string_view>

namespace mg {

void stop_point(std::string_view point);

}  // namespace mg
