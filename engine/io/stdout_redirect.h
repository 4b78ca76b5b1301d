// Standard output set aside for a scope: while a StdoutToStderr is active, whatever the process
// writes to file descriptor 1 (printf, iostreams, libraries) goes to standard error instead. A
// command with --json prints its progress and reports this way, and its one JSON object on the
// real standard output afterwards, so that `melgraph train --json ... | jq` reads only JSON.
#pragma once

namespace mg {

class StdoutToStderr {
 public:
  // active = false: does nothing (the command without --json). std::runtime_error when the
  // descriptors cannot be duplicated.
  explicit StdoutToStderr(bool active);
  ~StdoutToStderr();  // restore()
  StdoutToStderr(const StdoutToStderr&) = delete;
  StdoutToStderr& operator=(const StdoutToStderr&) = delete;
  // Flushes what was written meanwhile (to stderr) and gives descriptor 1 back. Idempotent.
  void restore();

 private:
  int saved_ = -1;  // the real standard output while set aside
};

}  // namespace mg
