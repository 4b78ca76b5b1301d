// `melgraph prepare`: decode every item of a catalog into an audio cache for training
// (engine/audio/prepare.h: parallel decode, incremental, crash-safe).
//
// Exit status: 0 when the cache holds audio for at least one catalog item and the share of
// failed items is at most --max-failure-ratio; 1 otherwise (the summary still lists what
// failed); 2 for bad input (missing catalog, bad config, a cache made for other settings).
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "apps/commands.h"
#include "engine/audio/prepare.h"
#include "engine/config.h"
#include "engine/io/stdout_redirect.h"
#include "graph/catalog.h"

namespace mg::cli {

namespace {

struct PrepareCliOptions {
  std::string catalog, config_path, out;
  int threads = 0;
  double max_failure_ratio = 1.0;
  bool rebuild = false;
  bool compact = false;
  bool skip_bad_lines = false;
  bool json = false;
};

void run_prepare(const PrepareCliOptions& o) {
  StdoutToStderr aside(o.json);  // --json: stdout is the summary's alone
  const Config c = o.config_path.empty() ? default_config() : load_config(o.config_path);
  const graph::Catalog catalog = graph::load_catalog(o.catalog, o.skip_bad_lines);
  if (const std::string note = graph::skipped_rows_note(catalog); !note.empty()) std::printf("%s\n", note.c_str());
  std::vector<audio::PrepareItem> items;
  items.reserve(catalog.items.size());
  // Absolute paths: the index matches files by path, and the same catalog read from another
  // working directory must name the same files.
  for (const auto& it : catalog.items)
    items.push_back({it.id, it.path});

  audio::PrepareOptions po;
  po.threads = o.threads;
  po.rebuild = o.rebuild;
  po.compact = o.compact;
  po.progress = stderr;
  audio::PrepareSummary s;
  try {
    s = audio::prepare_cache(items, c.audio, o.out, po);
  } catch (const audio::CacheMismatchError& e) {
    throw UsageError(e.what());
  }
  aside.restore();
  std::fputs(o.json ? (audio::summary_json(s) + "\n").c_str() : audio::format_summary(s).c_str(), stdout);
  std::fflush(stdout);

  if (s.usable == 0)
    throw std::runtime_error("nothing usable: none of the " + std::to_string(s.catalog_items) +
                             " catalog items has audio in the cache " + o.out + " (the failures are listed above)");
  if (s.failure_ratio() > o.max_failure_ratio) {
    char buf[160];
    std::snprintf(buf, sizeof buf, "failure ratio %.3f (%lld of %lld items) is above --max-failure-ratio %g",
                  s.failure_ratio(), static_cast<long long>(s.failed_total()),
                  static_cast<long long>(s.catalog_items), o.max_failure_ratio);
    throw std::runtime_error(std::string(buf) + "; the cache keeps what was decoded");
  }
}

}  // namespace

void register_prepare(CLI::App& app) {
  auto opts = std::make_shared<PrepareCliOptions>();
  CLI::App* cmd = app.add_subcommand(
      "prepare", "Decode every catalog item into an audio cache (PCM at the model's rate + index) for training");
  cmd->add_option("--catalog", opts->catalog, "Catalog CSV with columns id,path[,...]")->required();
  cmd->add_option("--config", opts->config_path,
                  "Run config (TOML): [audio] sample_rate, excerpt, excerpt_seconds, cache_dtype; default: built-in");
  cmd->add_option("--out", opts->out, "Cache directory (created; a second run only decodes new or changed files)")
      ->required();
  cmd->add_option("--threads", opts->threads, "Decoding threads (0: all cores)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--max-failure-ratio", opts->max_failure_ratio,
                  "Exit with status 1 when more than this share of the catalog failed to decode "
                  "(default 1: only when nothing usable was produced)")
      ->capture_default_str()->check(CLI::Range(0.0, 1.0));
  cmd->add_flag("--skip-bad-lines", opts->skip_bad_lines,
                "Skip and count malformed catalog rows and repeated ids instead of stopping at the first");
  cmd->add_flag("--json", opts->json, "Print the summary as one JSON object on stdout (every failure listed)");
  cmd->add_flag("--rebuild", opts->rebuild, "Delete the cache's files in --out and decode everything again");
  cmd->add_flag("--compact", opts->compact,
                "Rewrite pcm.bin without the dead space of re-decoded items (done automatically above 50%)");
  cmd->callback([opts] { run_prepare(*opts); });
}

}  // namespace mg::cli
