// Locks between melgraph processes: an flock on a lock file, held while the FileLock lives and
// released by the kernel when the process dies (a kill -9 leaves no stale lock behind).
//
// Exclusive: one holder (a training run in its run directory, the writer of an audio cache).
// Its pid is written into the file so that the next one can name it. Shared: any number of
// holders (readers of an audio cache), none while an exclusive one holds it; they write
// nothing, so the file keeps naming the last exclusive holder.
#pragma once
#include <functional>
#include <stdexcept>
#include <string>

namespace mg {

struct FileLockBusy : std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum class LockMode { kShared, kExclusive };

class FileLock {
 public:
  // Who holds the lock that a waiter waits for: "process <pid>" of the exclusive holder, or
  // "readers" when only shared holders are in the way.
  using WaitNotice = std::function<void(const std::string& holder)>;

  // Creates `path` if needed and locks it exclusively without waiting. FileLockBusy when
  // another open file holds the lock: "<path> is held by process <pid> (<what>)" with `what`
  // saying what to do; std::runtime_error naming the call when the file cannot be opened.
  FileLock(const std::string& path, const std::string& what);
  // Creates `path` if needed and waits until the lock is ours; when it must wait, `waiting`
  // (if set) is told by whom first. A shared lock on a file that cannot be created (a
  // read-only directory, where no writer can be either) holds nothing: held() is false.
  FileLock(const std::string& path, LockMode mode, const WaitNotice& waiting);
  ~FileLock();
  FileLock(FileLock&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  FileLock& operator=(FileLock&&) = delete;
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

  bool held() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

}  // namespace mg
