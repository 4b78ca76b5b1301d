#include "engine/io/progress_line.h"

#include <unistd.h>

#include <cmath>

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

std::string format_duration(double seconds) {
  char buf[32];
  const long long t = std::llround(seconds);
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", t / 3600, t / 60 % 60);
  else if (t >= 60)
    std::snprintf(buf, sizeof buf, "%lldm%02llds", t / 60, t % 60);
  else
    std::snprintf(buf, sizeof buf, "%llds", t);
  return buf;
}

std::string rate_and_eta(int64_t done, int64_t total, double seconds, const char* unit) {
  char buf[96];
  if (done <= 0 || seconds <= 0) {
    std::snprintf(buf, sizeof buf, "0 %s/s, ETA ?", unit);
    return buf;
  }
  const double rate = static_cast<double>(done) / seconds;
  const double left = static_cast<double>(total > done ? total - done : 0) / rate;
  std::snprintf(buf, sizeof buf, rate >= 10 ? "%.0f %s/s, ETA %s" : "%.1f %s/s, ETA %s", rate, unit,
                format_duration(left).c_str());
  return buf;
}

}  // namespace mg
