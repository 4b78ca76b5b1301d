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

// MELGRAPH_STOP_RANK=<r> arms the stop point in rank r of an mpirun/srun launch only (the rank
// the launcher put in the environment), so that a test can kill one rank of a run.
bool this_rank_stops() {
  const char* want = std::getenv("MELGRAPH_STOP_RANK");
  if (!want) return true;
  for (const char* name : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"})
    if (const char* rank = std::getenv(name)) return std::string(rank) == want;
  return std::string(want) == "0";  // not launched: a single process is rank 0
}

StopAt parse_stop_at() {
  StopAt s;
  const char* v = std::getenv("MELGRAPH_STOP_AT");
  if (!v || !this_rank_stops()) return s;
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
