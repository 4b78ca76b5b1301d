// What `export --run` and `report` read of a run directory (engine/train/run_dir.h): the
// checkpoint (best, else last), the cache (data.cache, else <dir>/cache), data paths found from
// another working directory, and the refusals that name what is missing.
#include "engine/train/run_dir.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "engine/config.h"
#include "engine/io/atomic_file.h"
#include "tests/test_support.h"

namespace mg::train {
namespace {

namespace fs = std::filesystem;

void touch(const fs::path& p) { std::ofstream(p) << "x"; }

TEST(RunDir, RefusalsNameWhatIsMissing) {
  test::TempDir dir;
  const std::string run = dir.file("run");
  test::expect_error<std::invalid_argument>([&] { open_run_directory(run); }, run + ": no such run directory");
  fs::create_directories(run);
  test::expect_error<std::invalid_argument>([&] { open_run_directory(run); }, "it has no config.toml");
  write_file_atomic(run + "/config.toml", to_toml(default_config()));
  EXPECT_FALSE(is_run_directory(run));
  test::expect_error<std::invalid_argument>([&] { open_run_directory(run); }, "the run has no checkpoint yet");
}

TEST(RunDir, BestCheckpointFirstAndTheCacheOfTheConfig) {
  test::TempDir dir;
  const fs::path run = dir.file("run");
  fs::create_directories(run);
  Config c = default_config();
  write_file_atomic((run / kRunConfigFile).string(), to_toml(c));
  touch(run / kLastCheckpointFile);
  ASSERT_TRUE(is_run_directory(run.string()));
  RunDirectory r = open_run_directory(run.string());
  EXPECT_EQ(r.checkpoint, (run / kLastCheckpointFile).string());
  EXPECT_EQ(r.cache, (run / "cache").string());
  touch(run / kBestCheckpointFile);
  c.data.cache = "/elsewhere/cache";
  write_file_atomic((run / kRunConfigFile).string(), to_toml(c));
  r = open_run_directory(run.string());
  EXPECT_EQ(r.checkpoint, (run / kBestCheckpointFile).string());
  EXPECT_EQ(r.cache, "/elsewhere/cache");
}

// A run trained from its parent folder with relative paths, opened from another folder: the
// paths are found beside the run directory; absolute and missing paths stay as they are.
TEST(RunDir, RelativeDataPathsAreFoundBesideTheRun) {
  test::TempDir dir;
  const fs::path project = dir.file("project");
  fs::create_directories(project / "run");
  fs::create_directories(project / "music");
  touch(project / "music/catalog.csv");
  Config c = default_config();
  c.data.catalog = "music/catalog.csv";
  c.data.edges = "music/no-such-edges.csv";
  write_file_atomic((project / "run" / kRunConfigFile).string(), to_toml(c));
  touch(project / "run" / kBestCheckpointFile);
  const RunDirectory r = open_run_directory((project / "run").string());
  EXPECT_EQ(r.config.data.catalog, (project / "music/catalog.csv").string());
  EXPECT_EQ(r.config.data.edges, "music/no-such-edges.csv");
  EXPECT_EQ(locate_run_path("/abs/x.csv", (project / "run").string()), "/abs/x.csv");
}

}  // namespace
}  // namespace mg::train
