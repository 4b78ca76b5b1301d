// `melgraph prepare`: decode every catalog item into the audio cache (audio_cache.h).
//
// Decoding runs on options.threads threads; one writer (the calling thread) appends to the
// cache, so the cache sees one item at a time and commits in batches (cache_writer.h).
//
// Incremental rule: an item is skipped when the cache already holds it, or holds a failure
// for it, with the same id, path (made absolute and normal, so a relative and an absolute name
// of one file agree), source size and source mtime (ns). Anything else is
// decoded (again): a changed file's new PCM is appended and the old bytes become dead space.
// Items the catalog no longer has stay in the cache and are counted in the summary.
//
// Dead space: when it exceeds kAutoCompactDeadFraction of pcm.bin after a run (or with
// options.compact), pcm.bin is rewritten with the live items only (CacheWriter::compact).
//
// One file's failure is recorded with its reason and the run goes on; what to make of the
// failure ratio is the caller's decision (melgraph prepare --max-failure-ratio).
//
// Test hook, for testing interruption deterministically: with the environment variable
// MELGRAPH_PREPARE_CRASH_AFTER=N, the run commits as soon as N items are done, appends the
// next item's PCM and row without committing them, and ends the process with _exit(137),
// as a kill -9 would. Not for use outside tests.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "engine/audio/audio_cache.h"
#include "engine/config.h"

namespace mg::audio {

constexpr double kAutoCompactDeadFraction = 0.5;

struct PrepareItem {
  std::string id, path;
};

struct PrepareOptions {
  int threads = 0;            // decoding threads; <= 0: std::thread::hardware_concurrency()
  bool rebuild = false;       // delete the cache's files first
  bool compact = false;       // compact even below kAutoCompactDeadFraction
  FILE* progress = nullptr;   // where the progress line goes (stderr in the CLI); null: nowhere
};

// A failed or warned-about item.
struct PrepareIssue {
  std::string id, path, message;
  bool earlier = false;  // a failure recorded by an earlier run for the same unchanged file
};

struct PrepareSummary {
  std::string dir;
  CacheSettings settings;
  int64_t catalog_items = 0;
  int64_t decoded = 0;          // decoded into the cache by this run
  int64_t unchanged = 0;        // already cached from the same file: skipped
  int64_t failed = 0;           // failed in this run
  int64_t failed_earlier = 0;   // failure recorded earlier, file unchanged: skipped
  int64_t usable = 0;           // catalog items that have audio in the cache after the run
  std::vector<PrepareIssue> failures;  // this run's failures, then earlier ones; catalog order
  std::vector<PrepareIssue> warnings;  // this run's items decoded with a warning (truncated, ...)
  int64_t not_in_catalog = 0;   // cached items whose id is not in the catalog (kept)
  double decoded_seconds = 0;   // audio this run decoded, at the model rate
  double cache_seconds = 0;     // all audio in the cache
  double wall_seconds = 0;
  int64_t pcm_bytes = 0, dead_bytes = 0;  // after compaction, if any
  int64_t compacted_bytes = 0;            // dead space this run's compaction freed
  int64_t truncated_on_open = 0;          // an interrupted run's uncommitted bytes, cut off

  int64_t failed_total() const { return failed + failed_earlier; }
  double failure_ratio() const {
    return catalog_items > 0 ? static_cast<double>(failed_total()) / static_cast<double>(catalog_items) : 0.0;
  }
  double realtime() const { return wall_seconds > 0 ? decoded_seconds / wall_seconds : 0.0; }
};

PrepareSummary prepare_cache(const std::vector<PrepareItem>& items, const AudioConfig& audio,
                             const std::string& out_dir, const PrepareOptions& options);

// The end-of-run report, one fact per line ("decoded: 6 (0.12 h of audio)", ...), listing
// at most max_listed failures and warnings (then "... and N more").
std::string format_summary(const PrepareSummary& s, size_t max_listed = 20);
// The same as one JSON object (`melgraph prepare --json`): every count and time above, and every
// failure and warning ({id, path, message, earlier}), none left out.
std::string summary_json(const PrepareSummary& s);

}  // namespace mg::audio
