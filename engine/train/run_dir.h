// A training run's directory, as `melgraph train` leaves it (trainer.h), read by the commands
// that follow a run: export (its checkpoint, catalog, edge list and audio cache), eval and
// report. The files:
//   config.toml        the run's resolved config (data paths as the run saw them)
//   best.safetensors   the checkpoint of the best validation; last.safetensors the latest
//   runs.sqlite        runs and metrics (run_db.h); metrics.jsonl the same as JSON lines
//   held_out_items.txt the ids never trained on, one per line
//   cache/             the audio cache, unless data.cache puts it elsewhere
#pragma once
#include <string>

#include "engine/config.h"

namespace mg::train {

inline constexpr const char* kRunConfigFile = "config.toml";
inline constexpr const char* kBestCheckpointFile = "best.safetensors";
inline constexpr const char* kLastCheckpointFile = "last.safetensors";
inline constexpr const char* kRunsDbFile = "runs.sqlite";
inline constexpr const char* kMetricsJsonlFile = "metrics.jsonl";
inline constexpr const char* kHeldOutItemsFile = "held_out_items.txt";

struct RunDirectory {
  std::string dir;
  Config config;           // config.toml, its data paths located (locate_run_path)
  std::string checkpoint;  // best.safetensors, or last.safetensors before the first validation
  std::string cache;       // data.cache, or <dir>/cache
};

// A data path of a run's config.toml as the run resolved it: absolute, or relative to the folder
// `melgraph train` ran in. From elsewhere, a relative path that does not exist here is tried
// relative to the run directory's parent (where a config beside its run directory points
// from); the path as given when neither exists (the error that follows names it).
std::string locate_run_path(const std::string& path, const std::string& run_dir);

// Whether `dir` holds a training run's config.toml and a checkpoint.
bool is_run_directory(const std::string& dir);
// Reads the run in `dir`. std::invalid_argument naming what is missing when `dir` is no run
// directory (no config.toml, or no checkpoint yet); ConfigError for a damaged config.toml.
RunDirectory open_run_directory(const std::string& dir);

}  // namespace mg::train
