// One process at a time in a directory: an exclusive flock on a lock file, held while the
// FileLock lives and released by the kernel when the process dies (a kill -9 leaves no stale
// lock behind). The holder's pid is written into the file so that the next one can name it.
#pragma once
#include <stdexcept>
#include <string>

namespace mg {

struct FileLockBusy : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class FileLock {
 public:
  // Creates `path` if needed and locks it without waiting. FileLockBusy when another open file
  // holds the lock: "<path> is held by process <pid> (<what>)" with `what` saying what to do;
  // std::runtime_error naming the call when the file cannot be opened.
  FileLock(const std::string& path, const std::string& what);
  ~FileLock();
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace mg
