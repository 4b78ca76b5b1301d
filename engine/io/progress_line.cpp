#include "engine/io/progress_line.h"

#include <unistd.h>

namespace mg {

namespace {
constexpr double kTtyInterval = 0.1;  // s between redraws on a terminal
constexpr double kLogInterval = 5.0;  // s between lines in a log file
}  // namespace

ProgressLine::ProgressLine(FILE* out) : out_(out), tty_(out && ::isatty(::fileno(out))) {}

void ProgressLine::update(const std::string& text, bool force) {
  if (!out_) return;
  const auto now = std::chrono::steady_clock::now();
  const double since = std::chrono::duration<double>(now - last_).count();
  if (!force && drawn_ && since < (tty_ ? kTtyInterval : kLogInterval)) return;
  last_ = now;
  if (tty_) {
    // Pad over the rest of a longer previous line.
    const size_t pad = last_width_ > text.size() ? last_width_ - text.size() : 0;
    std::fprintf(out_, "\r%s%*s", text.c_str(), static_cast<int>(pad), "");
    last_width_ = text.size();
  } else {
    std::fprintf(out_, "%s\n", text.c_str());
  }
  std::fflush(out_);
  drawn_ = true;
}

void ProgressLine::finish() {
  if (out_ && tty_ && drawn_) {
    std::fputc('\n', out_);
    std::fflush(out_);
  }
  drawn_ = false;
}

}  // namespace mg
