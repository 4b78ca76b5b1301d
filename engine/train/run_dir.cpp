#include "engine/train/run_dir.h"

#include <filesystem>
#include <stdexcept>

namespace mg::train {

namespace fs = std::filesystem;

std::string locate_run_path(const std::string& path, const std::string& run_dir) {
  if (path.empty() || fs::path(path).is_absolute() || fs::exists(path)) return path;
  const fs::path beside = fs::path(run_dir).parent_path() / path;
  return fs::exists(beside) ? beside.lexically_normal().string() : path;
}

bool is_run_directory(const std::string& dir) {
  const fs::path d(dir);
  return fs::is_regular_file(d / kRunConfigFile) &&
         (fs::is_regular_file(d / kBestCheckpointFile) || fs::is_regular_file(d / kLastCheckpointFile));
}

RunDirectory open_run_directory(const std::string& dir) {
  const fs::path d(dir);
  if (!fs::is_directory(d))
    throw std::invalid_argument(dir + ": no such run directory (melgraph train's data.run_dir)");
  const fs::path config = d / kRunConfigFile;
  if (!fs::is_regular_file(config))
    throw std::invalid_argument(dir + ": not a training run directory: it has no " + kRunConfigFile +
                                " (melgraph train writes one into data.run_dir when it starts)");
  RunDirectory r;
  r.dir = dir;
  r.config = load_config(config.string());
  for (std::string* p : {&r.config.data.catalog, &r.config.data.edges, &r.config.data.cache})
    *p = locate_run_path(*p, dir);
  for (const char* name : {kBestCheckpointFile, kLastCheckpointFile})
    if (fs::is_regular_file(d / name)) {
      r.checkpoint = (d / name).string();
      break;
    }
  if (r.checkpoint.empty())
    throw std::invalid_argument(dir + ": the run has no checkpoint yet (" + kBestCheckpointFile + " or " +
                                kLastCheckpointFile + "): let it reach its first validation");
  r.cache = r.config.data.cache.empty() ? (d / "cache").string() : r.config.data.cache;
  return r;
}

}  // namespace mg::train
