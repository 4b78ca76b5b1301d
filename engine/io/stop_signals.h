// A long command stopped gracefully: while a StopSignals lives, the first SIGINT or SIGTERM
// sets a flag the work polls (the trainer finishes its step and writes a checkpoint) and prints
// a line saying so; a second signal ends the process at once (the default action). The
// previous handlers come back when it is destroyed. One at a time per process.
#pragma once
#include <atomic>
#include <csignal>

namespace mg {

class StopSignals {
 public:
  // `notice`: the line printed to stderr at the first signal (kept, not copied: a literal).
  explicit StopSignals(const char* notice);
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
  const std::atomic<bool>* flag() const;

 private:
  struct sigaction old_int_ {
  }, old_term_{};
};

}  // namespace mg
