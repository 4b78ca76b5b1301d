#include "engine/io/file_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace mg {

namespace {

int open_lock_file(const std::string& path, int flags) { return ::open(path.c_str(), flags | O_CLOEXEC, 0644); }

// The pid the last exclusive holder wrote, or "unknown".
std::string recorded_holder(int fd) {
  char buf[32] = {};
  const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
  std::string holder = n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string("unknown");
  while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
  return holder.empty() ? "unknown" : holder;
}

// A lock is busy for an exclusive waiter either because of a writer or because of readers; only
// a writer's pid is in the file. A shared probe that succeeds means readers only.
std::string current_holder(int fd, LockMode wanted) {
  if (wanted == LockMode::kExclusive && ::flock(fd, LOCK_SH | LOCK_NB) == 0) {
    ::flock(fd, LOCK_UN);
    return "readers";
  }
  return "process " + recorded_holder(fd);
}

void record_pid(int fd) {
  // A failed write only makes the next one's message vaguer.
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) == 0) {
    [[maybe_unused]] const ssize_t wrote = ::pwrite(fd, pid.data(), pid.size(), 0);
  }
}

}  // namespace

FileLock::FileLock(const std::string& path, const std::string& what) {
  fd_ = open_lock_file(path, O_RDWR | O_CREAT);
  if (fd_ < 0) throw std::runtime_error(path + ": cannot open the lock file: " + std::strerror(errno));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    const std::string holder = err == EWOULDBLOCK ? recorded_holder(fd_) : "";
    ::close(fd_);
    fd_ = -1;
    if (err != EWOULDBLOCK) throw std::runtime_error(path + ": cannot lock: " + std::strerror(err));
    throw FileLockBusy(path + " is held by process " + holder + " (" + what + ")");
  }
  record_pid(fd_);
}

FileLock::FileLock(const std::string& path, LockMode mode, const WaitNotice& waiting) {
  const bool exclusive = mode == LockMode::kExclusive;
  fd_ = open_lock_file(path, O_RDWR | O_CREAT);
  if (fd_ < 0 && !exclusive) {
    const int err = errno;
    fd_ = open_lock_file(path, O_RDONLY);                                       // flock needs no write access
    if (fd_ < 0 && (err == EROFS || err == EACCES) && errno == ENOENT) return;  // see the header
  }
  if (fd_ < 0) throw std::runtime_error(path + ": cannot open the lock file: " + std::strerror(errno));
  const int op = exclusive ? LOCK_EX : LOCK_SH;
  int rc = ::flock(fd_, op | LOCK_NB);
  if (rc != 0 && errno == EWOULDBLOCK) {
    if (waiting) waiting(current_holder(fd_, mode));
    do rc = ::flock(fd_, op);
    while (rc != 0 && errno == EINTR);
  }
  if (rc != 0) {
    const int err = errno;
    ::close(fd_);
    fd_ = -1;
    throw std::runtime_error(path + ": cannot lock: " + std::strerror(err));
  }
  if (exclusive) record_pid(fd_);
}

FileLock::~FileLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the flock
}

}  // namespace mg
