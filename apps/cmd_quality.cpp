// `melgraph quality --data DIR [--config recipe.toml] [--holdout-by album] [--seeds 0,1,2]`:
// trains a recipe on a dataset with whole groups held out, exports, and scores the held-out
// items against the untrained model, the mean log-mel vector and chance, over several seeds
// (engine/quality/quality.h).
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "apps/commands.h"
#include "engine/quality/quality.h"
#include "engine/config.h"

namespace mg::cli {

namespace {

struct QualityCliOptions {
  std::string data, catalog, edges, config_path, holdout_by, out = "quality";
  std::vector<std::string> overrides;
  std::vector<uint64_t> seeds = {0, 1, 2};
  double holdout = 0.25;
  int crops = embed::kDefaultCrops;
  int threads = 0;
  std::string device = "auto";
  bool json = false;
};

void run_quality_cli(const QualityCliOptions& c) {
  namespace fs = std::filesystem;
  Config cfg = c.config_path.empty() ? default_config() : load_config(c.config_path);
  cfg = apply_overrides(cfg, c.overrides);
  if (!c.config_path.empty()) resolve_paths(cfg, fs::path(c.config_path).parent_path().string());
  // The dataset: a folder with catalog.csv and edges.csv, or the two files named.
  if (!c.data.empty()) {
    cfg.data.catalog = (fs::path(c.data) / "catalog.csv").string();
    cfg.data.edges = (fs::path(c.data) / "edges.csv").string();
  }
  if (!c.catalog.empty()) cfg.data.catalog = c.catalog;
  if (!c.edges.empty()) cfg.data.edges = c.edges;
  if (cfg.data.catalog.empty() || cfg.data.edges.empty())
    throw UsageError("quality: no dataset: give --data DIR (with catalog.csv and edges.csv), or --catalog and --edges");
  for (const std::string& p : {cfg.data.catalog, cfg.data.edges})
    if (!fs::exists(p)) throw UsageError("quality: " + p + " does not exist");
  if (!c.holdout_by.empty()) cfg.data.holdout_by = c.holdout_by;
  cfg.data.val_items = c.holdout;
  validate_config(cfg);

  quality::QualityOptions o;
  o.recipe = cfg;
  o.seeds = c.seeds;
  o.out_dir = c.out;
  o.crops = c.crops;
  o.train.config_path = c.config_path.empty() ? "(built-in defaults)" : c.config_path;
  parse_device(c.device, o.train.backend);
  o.train.backend.threads = c.threads;
  o.train.prepare_threads = c.threads;
  o.train.quiet = true;
  quality::QualityReport r;
  try {
    r = quality::run_quality(o);
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  std::printf("\n%s", c.json ? (r.json() + "\n").c_str() : r.format().c_str());
  std::printf("(results: %s/quality.json)\n", c.out.c_str());
}

}  // namespace

void register_quality(CLI::App& app) {
  auto opts = std::make_shared<QualityCliOptions>();
  CLI::App* cmd = app.add_subcommand(
      "quality", "Measure what a recipe learns: train with whole groups (albums, artists) held out, export, and score "
                 "the held-out items against the untrained model, the mean log-mel vector and chance, over seeds");
  cmd->add_option("--data", opts->data, "Dataset folder holding catalog.csv and edges.csv");
  cmd->add_option("--catalog", opts->catalog, "Catalog (instead of --data)");
  cmd->add_option("--edges", opts->edges, "Edge list (instead of --data)");
  cmd->add_option("--config", opts->config_path, "The recipe (run config TOML); default: the built-in defaults");
  cmd->add_option("--set", opts->overrides, "Override a recipe field: section.key=value (repeatable)");
  cmd->add_option("--holdout-by", opts->holdout_by,
                  "Catalog column whose groups are held out whole (default: the recipe's data.holdout_by)");
  cmd->add_option("--holdout", opts->holdout, "Fraction of the groups held out")
      ->capture_default_str()->check(CLI::Range(0.0, 0.9));
  cmd->add_option("--seeds", opts->seeds, "Seeds: each one splits, initialises and samples anew")
      ->delimiter(',')->capture_default_str();
  cmd->add_option("--out", opts->out, "Folder for the runs, their indexes and quality.json")->capture_default_str();
  cmd->add_option("--crops", opts->crops, "Clips per item in the index (as export --crops)")
      ->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--threads", opts->threads, "CPU threads (0: all cores)")->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--device", opts->device, kDeviceHelp)->capture_default_str()->check(device_check());
  cmd->add_flag("--json", opts->json, "The results as one JSON object instead of a table");
  cmd->callback([opts] { run_quality_cli(*opts); });
}

}  // namespace mg::cli
