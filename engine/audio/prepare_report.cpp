// format_summary and summary_json (prepare.h): the end-of-run report of melgraph prepare.
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "engine/audio/prepare.h"
#include "engine/io/json_text.h"

namespace mg::audio {

namespace {

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::string bytes_text(int64_t b) {
  const double v = static_cast<double>(b);
  if (b < 1024) return std::to_string(b) + " B";
  if (b < 1024 * 1024) return fmt("%.1f KiB", v / 1024.0);
  if (b < int64_t{1024} * 1024 * 1024) return fmt("%.1f MiB", v / (1024.0 * 1024.0));
  return fmt("%.2f GiB", v / (1024.0 * 1024.0 * 1024.0));
}

std::string hours(double seconds) { return fmt("%.3f h", seconds / 3600.0); }

void list(std::string& o, const std::vector<PrepareIssue>& issues, size_t max_listed) {
  for (size_t i = 0; i < issues.size() && i < max_listed; ++i) {
    const PrepareIssue& p = issues[i];
    o += "  " + p.id + "  " + p.path + ": " + p.message + (p.earlier ? "  (recorded earlier; file unchanged)" : "") +
         "\n";
  }
  if (issues.size() > max_listed) o += "  ... and " + std::to_string(issues.size() - max_listed) + " more\n";
}

}  // namespace

std::string format_summary(const PrepareSummary& s, size_t max_listed) {
  const CacheSettings& c = s.settings;
  std::string o;
  o += "cache: " + s.dir + " (" + std::to_string(c.sample_rate) + " Hz, " + dtype_name(c.dtype) + ", excerpt " +
       excerpt_name(c.excerpt) + " " + fmt("%g", c.excerpt_seconds) + " s)\n";
  if (s.truncated_on_open > 0)
    o += "interrupted run: cut " + bytes_text(s.truncated_on_open) + " of uncommitted PCM from pcm.bin\n";
  o += "catalog: " + std::to_string(s.catalog_items) + " items, " + std::to_string(s.usable) + " usable\n";
  o += "decoded: " + std::to_string(s.decoded) + " (" + hours(s.decoded_seconds) + " of audio)\n";
  o += "skipped (unchanged): " + std::to_string(s.unchanged) + "\n";
  o += "failed: " + std::to_string(s.failed_total());
  if (s.failed_earlier > 0) o += " (" + std::to_string(s.failed_earlier) + " recorded by an earlier run, not retried)";
  o += "\n";
  list(o, s.failures, max_listed);
  o += "warnings: " + std::to_string(s.warnings.size()) + "\n";
  list(o, s.warnings, max_listed);
  o += "wall time: " + fmt("%.1f s", s.wall_seconds);
  o += s.decoded > 0 ? ", " + fmt("%.0fx", s.realtime()) + " realtime\n" : std::string("\n");
  o += "cache size: " + std::to_string(s.usable + s.not_in_catalog) + " items, " + hours(s.cache_seconds) + ", " +
       bytes_text(s.pcm_bytes) + " of PCM, dead space " + bytes_text(s.dead_bytes) +
       (s.dead_bytes > 0 ? " (--compact removes it)" : "") + "\n";
  if (s.compacted_bytes > 0) o += "compacted: freed " + bytes_text(s.compacted_bytes) + "\n";
  if (s.not_in_catalog > 0)
    o += "not in the catalog: " + std::to_string(s.not_in_catalog) + " cached items (kept; --rebuild drops them)\n";
  return o;
}

namespace {

nlohmann::json issues_json(const std::vector<PrepareIssue>& issues) {
  nlohmann::json a = nlohmann::json::array();
  for (const PrepareIssue& p : issues)
    a.push_back({{"id", p.id}, {"path", p.path}, {"message", p.message}, {"earlier", p.earlier}});
  return a;
}

}  // namespace

std::string summary_json(const PrepareSummary& s) {
  const nlohmann::json j{{"cache", s.dir},
                         {"catalog_items", s.catalog_items},
                         {"usable", s.usable},
                         {"decoded", s.decoded},
                         {"unchanged", s.unchanged},
                         {"failed", s.failed},
                         {"failed_earlier", s.failed_earlier},
                         {"failure_ratio", s.failure_ratio()},
                         {"not_in_catalog", s.not_in_catalog},
                         {"decoded_hours", s.decoded_seconds / 3600.0},
                         {"cache_hours", s.cache_seconds / 3600.0},
                         {"wall_seconds", s.wall_seconds},
                         {"realtime", s.realtime()},
                         {"pcm_bytes", s.pcm_bytes},
                         {"dead_bytes", s.dead_bytes},
                         {"compacted_bytes", s.compacted_bytes},
                         {"failures", issues_json(s.failures)},
                         {"warnings", issues_json(s.warnings)}};
  // Paths and decoder messages are not always UTF-8; JSON must be.
  return json_text(j);
}

}  // namespace mg::audio
