#include "engine/io/line_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace mg {

LineLog::LineLog(std::string path) : path_(std::move(path)) {
  fd_ = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) throw LineLogError(path_ + ": cannot open for appending: " + std::strerror(errno));
}

LineLog::~LineLog() {
  if (fd_ >= 0) ::close(fd_);
}

void LineLog::append(std::string_view line) {
  if (line.find('\n') != std::string_view::npos)
    throw std::invalid_argument(path_ + ": a log line must not contain a newline");
  std::string buf;
  buf.reserve(line.size() + 1);
  buf.append(line).push_back('\n');
  // One write for the whole line: with O_APPEND the kernel places it at the end in one piece.
  for (;;) {
    const ssize_t n = ::write(fd_, buf.data(), buf.size());
    if (n == static_cast<ssize_t>(buf.size())) return;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw LineLogError(path_ + ": cannot append a line: " + std::strerror(errno));
    throw LineLogError(path_ + ": only " + std::to_string(n) + " of " + std::to_string(buf.size()) +
                       " bytes of a line were appended (disk full?); the file ends in a partial line");
  }
}

}  // namespace mg
