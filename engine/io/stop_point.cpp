#include "engine/io/stop_point.h"

#include <signal.h>

#include <atomic>
#include <cstdlib>
#include <string>

namespace mg {

namespace {

struct StopAt {
  std::string point;  // empty: no stop point armed
  long long n = 0;
};

StopAt parse_stop_at() {
  StopAt s;
  const char* v = std::getenv("MELGRAPH_STOP_AT");
  if (!v) return s;
  const std::string spec(v);
  const size_t colon = spec.rfind(':');
  if (colon == std::string::npos || colon == 0) return s;
  char* end = nullptr;
  const long long n = std::strtoll(spec.c_str() + colon + 1, &end, 10);
  if (*end != '\0' || n < 1) return s;
  s.point = spec.substr(0, colon);
  s.n = n;
  return s;
}

}  // namespace

void stop_point(std::string_view point) {
  static const StopAt at = parse_stop_at();
  static std::atomic<long long> hits{0};
  if (at.point.empty() || point != at.point) return;
  if (hits.fetch_add(1) + 1 == at.n) ::raise(SIGSTOP);
}

}  // namespace mg
