// Wall-clock time for progress lines and reports. Benchmarks time with Google Benchmark or
// Backend::Stopwatch instead (a device's work is asynchronous).
#pragma once
#include <chrono>

namespace mg {

using WallClock = std::chrono::steady_clock;

// Seconds from t0 to now.
inline double seconds_since(WallClock::time_point t0) {
  return std::chrono::duration<double>(WallClock::now() - t0).count();
}

}  // namespace mg
