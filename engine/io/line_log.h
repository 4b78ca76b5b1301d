// A file that grows by whole lines, for readers that tail it while it is written (a run's
// metrics.jsonl): each line goes out in one write(2) on a descriptor opened with O_APPEND, so
// a reader, or another appender, never sees half a line of one interleaved with another.
// A crash can lose the lines not yet written, never split one that was.
#pragma once
#include <stdexcept>
#include <string>
#include <string_view>

namespace mg {

struct LineLogError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class LineLog {
 public:
  // Opens `path` for appending, creating it (0644) when missing. LineLogError naming the file.
  explicit LineLog(std::string path);
  ~LineLog();
  LineLog(const LineLog&) = delete;
  LineLog& operator=(const LineLog&) = delete;

  const std::string& path() const { return path_; }
  // Appends `line` and a newline. `line` must not contain a newline (std::invalid_argument).
  // LineLogError naming the file when the write fails (e.g. a full disk); nothing of the line
  // is then left behind unless the system wrote part of it, which the error says.
  void append(std::string_view line);

 private:
  std::string path_;
  int fd_ = -1;
};

}  // namespace mg
