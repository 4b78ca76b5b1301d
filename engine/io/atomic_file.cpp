#include "engine/io/atomic_file.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>

#include "engine/io/stop_point.h"

namespace mg {

namespace {

void write_all(int fd, const void* data, size_t n, const std::string& path) {
  const auto* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      throw AtomicWriteError(path + ": write failed: " + std::strerror(errno));
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
}

// The pid in "<pid>" or "<pid>-<n>" (0 when the name has none).
pid_t pid_of_temp(const std::string& tail) {
  pid_t pid = 0;
  size_t i = 0;
  for (; i < tail.size() && tail[i] >= '0' && tail[i] <= '9' && pid < 100000000; ++i) pid = pid * 10 + (tail[i] - '0');
  return i > 0 && (i == tail.size() || tail[i] == '-') ? pid : 0;
}

}  // namespace

std::string temp_path_for(const std::string& path) {
  static std::atomic<uint64_t> counter{0};
  return path + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter.fetch_add(1));
}

void remove_stale_temps(const std::string& path) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  const std::string prefix = target.filename().string() + ".tmp-";
  const fs::path dir = target.parent_path().empty() ? fs::path(".") : target.parent_path();
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    const pid_t pid = pid_of_temp(name.substr(prefix.size()));
    // kill(pid, 0) fails with ESRCH only when no such process exists (EPERM: it exists).
    if (pid > 0 && pid != ::getpid() && ::kill(pid, 0) != 0 && errno == ESRCH) {
      std::error_code rm;
      fs::remove(it->path(), rm);
    }
  }
}

void write_file_atomic(const std::string& path, std::span<const FilePiece> pieces) {
  write_file_atomic_streamed(path, [pieces](const AppendBytes& append) {
    for (const FilePiece& p : pieces) append(p.data, p.bytes);
  });
}

void write_file_atomic_streamed(const std::string& path, const std::function<void(const AppendBytes&)>& produce) {
  remove_stale_temps(path);
  const std::string tmp = temp_path_for(path);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw AtomicWriteError(tmp + ": cannot create: " + std::strerror(errno));
  try {
    produce([fd, &tmp](const void* data, size_t bytes) { write_all(fd, data, bytes, tmp); });
    if (::fsync(fd) != 0) throw AtomicWriteError(tmp + ": fsync failed: " + std::strerror(errno));
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  if (::close(fd) != 0) {
    ::unlink(tmp.c_str());
    throw AtomicWriteError(tmp + ": close failed: " + std::strerror(errno));
  }
  stop_point("rename:" + std::filesystem::path(path).filename().string());  // kill tests: the temp file complete
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    throw AtomicWriteError(path + ": rename from " + tmp + " failed: " + std::strerror(e));
  }
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  const std::string dir = parent.empty() ? std::string(1, '.') : parent.string();
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace mg
