// The progress of a long run on one line: redrawn in place (\r) when the stream is a
// terminal, else printed as a new line every few seconds so logs stay readable.
#pragma once
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace mg {

class ProgressLine {
 public:
  explicit ProgressLine(FILE* out);  // null: prints nothing
  // Shows `text` if enough time has passed since the last line (or `force`).
  void update(const std::string& text, bool force = false);
  void finish();  // ends a redrawn line with a newline

 private:
  FILE* out_;
  bool tty_ = false;
  bool drawn_ = false;
  size_t last_width_ = 0;
  std::chrono::steady_clock::time_point last_{};
};

// "42s", "3m07s", "2h05m": a duration rounded to the second, for progress lines.
std::string format_duration(double seconds);

// "12.5 items/s, ETA 3m07s": the rate of `done` units in `seconds`, and the time the remaining
// total - done would take at it ("ETA ?" before there is a rate to go by).
std::string rate_and_eta(int64_t done, int64_t total, double seconds, const char* unit);

}  // namespace mg
