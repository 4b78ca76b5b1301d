// Kill tests (issue 17): the real melgraph binary is killed with SIGKILL while it trains, exports
// and prepares, at moments chosen by its stop points (engine/io/stop_point.h: the process stops
// itself there with SIGSTOP, and the test kills the stopped process, so a moment is exact on
// any machine load), and then rerun. What each kill must leave:
//   train    the resumed run bit-identical to an uninterrupted one (checkpoints byte for byte)
//            and every metric row of it exactly once, with the same value;
//   export   the previous index byte for byte and answering queries as before; the next export
//            completes and leaves no temporary file;
//   prepare  a cache that opens, whose items are those of an uninterrupted run; a rerun
//            completes it and export reads it.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <bit>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "engine/audio/audio_cache.h"
#include "engine/audio/cache_writer.h"
#include "engine/backend.h"
#include "engine/checkpoint.h"
#include "engine/demo/demo_collection.h"
#include "engine/index/index_format.h"
#include "engine/io/atomic_file.h"
#include "engine/io/safetensors.h"
#include "engine/model.h"
#include "engine/train/run_db.h"
#include "tests/test_support.h"
#include "tests/train_test_support.h"

extern char** environ;

namespace mg {
namespace {

namespace fs = std::filesystem;

// Far above what any run here takes (a few seconds): a process that has not stopped or ended by
// then hangs, and the test fails instead of blocking.
constexpr int kTimeoutSeconds = 120;

std::string command_line(const std::vector<std::string>& args) {
  std::string s = "melgraph";
  for (const std::string& a : args) s += " " + a;
  return s;
}

// Starts melgraph with `args`, its stdout and stderr into the file `log`, and with
// MELGRAPH_STOP_AT=stop_at in its environment (none when empty). Everything the child needs is
// built before fork: after it, the child only calls what is safe in a copy of a threaded process.
pid_t spawn(const std::vector<std::string>& args, const std::string& stop_at, const std::string& log) {
  std::vector<std::string> argv_s = {MELGRAPH_EXE};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  argv.reserve(argv_s.size() + 1);
  for (std::string& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_s;
  for (char** e = environ; *e; ++e)
    if (std::strncmp(*e, "MELGRAPH_STOP_AT=", 17) != 0) env_s.emplace_back(*e);
  if (!stop_at.empty()) env_s.push_back("MELGRAPH_STOP_AT=" + stop_at);
  std::vector<char*> envp;
  envp.reserve(env_s.size() + 1);
  for (std::string& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid != 0) return pid;
  const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) ::_exit(126);
  ::dup2(fd, 1);
  ::dup2(fd, 2);
  ::execve(argv[0], argv.data(), envp.data());
  ::_exit(127);
}

struct Ending {
  enum { Stopped, Exited, Signalled, Hung } how = Hung;
  int code = 0;  // the exit status or the signal
  std::string describe() const {
    switch (how) {
      case Stopped: return "stopped itself";
      case Exited: return "exited with status " + std::to_string(code);
      case Signalled: return "was ended by signal " + std::to_string(code);
      case Hung: return "neither stopped nor ended in " + std::to_string(kTimeoutSeconds) + " s (killed)";
    }
    return "";
  }
};

// Waits for the child to stop itself or end; one that does neither in kTimeoutSeconds is killed.
Ending wait_for(pid_t pid) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(kTimeoutSeconds);
  for (;;) {
    int st = 0;
    const pid_t r = ::waitpid(pid, &st, WNOHANG | WUNTRACED);
    if (r == pid) {
      if (WIFSTOPPED(st)) return {Ending::Stopped, WSTOPSIG(st)};
      if (WIFEXITED(st)) return {Ending::Exited, WEXITSTATUS(st)};
      return {Ending::Signalled, WTERMSIG(st)};
    }
    if (r < 0 && errno != EINTR) return {Ending::Exited, -1};
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &st, 0);
      return {Ending::Hung, 0};
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

// The test's melgraph processes: each one's output goes to a numbered log in `dir`.
struct Melgraph {
  std::string dir;
  int count = 0;

  std::string next_log() { return (fs::path(dir) / ("melgraph-" + std::to_string(++count) + ".log")).string(); }

  // Runs melgraph until it stops at `stop_at` (MELGRAPH_STOP_AT), then kills it with SIGKILL
  // and reaps it (so that its pid is free: the next writer sees its temporary files as stale).
  ::testing::AssertionResult kill_at(const std::vector<std::string>& args, const std::string& stop_at) {
    const std::string log = next_log();
    const pid_t pid = spawn(args, stop_at, log);
    if (pid < 0) return ::testing::AssertionFailure() << "fork failed: " << std::strerror(errno);
    const Ending e = wait_for(pid);
    if (e.how != Ending::Stopped)
      return ::testing::AssertionFailure() << command_line(args) << " with MELGRAPH_STOP_AT=" << stop_at
                                           << " never reached its stop point: it " << e.describe() << "; its output:\n"
                                           << test::read_bytes(log);
    ::kill(pid, SIGKILL);
    int st = 0;
    ::waitpid(pid, &st, 0);
    if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL)
      return ::testing::AssertionFailure() << command_line(args) << " stopped but did not die by SIGKILL";
    return ::testing::AssertionSuccess();
  }

  // Runs melgraph to its end: its exit status (-1 when it hung), its output in *out.
  int run(const std::vector<std::string>& args, std::string* out) {
    const std::string log = next_log();
    const pid_t pid = spawn(args, "", log);
    const Ending e = wait_for(pid);
    *out = command_line(args) + "\n" + test::read_bytes(log);
    if (e.how != Ending::Exited) *out += "\n(it " + e.describe() + ")";
    return e.how == Ending::Exited ? e.code : -1;
  }
};

int64_t checkpoint_step(const std::string& path) { return std::stoll(read_safetensors(path).metadata.at("step")); }

// Files beside `path` named like its writers' temporary files.
int temp_files_of(const std::string& path) {
  const std::string prefix = fs::path(path).filename().string() + ".tmp";
  int n = 0;
  for (const auto& e : fs::directory_iterator(fs::path(path).parent_path()))
    n += e.path().filename().string().rfind(prefix, 0) == 0 ? 1 : 0;
  return n;
}

bool same_bits(double a, double b) {
  return (std::isnan(a) && std::isnan(b)) || std::bit_cast<uint64_t>(a) == std::bit_cast<uint64_t>(b);
}

// The metrics of a run by (step, name); a pair stored twice is named in *twice.
using MetricKey = std::pair<int64_t, std::string>;
std::map<MetricKey, double> metric_rows(const std::string& db_path, int64_t run, std::vector<MetricKey>* twice) {
  std::map<MetricKey, double> rows;
  for (const MetricRow& m : RunDb(db_path).metrics(run))
    if (!rows.emplace(MetricKey{m.step, m.name}, m.value).second) twice->push_back({m.step, m.name});
  return rows;
}

// loader.* and train.clips_per_second measure the machine (clips per second, time waiting):
// stored at the same steps, not with the same values.
bool timing_metric(const std::string& name) {
  return name.rfind("loader.", 0) == 0 || name == "train.clips_per_second";
}

// Every metric row of `want` up to step `up_to` is in `got` exactly once with the same value; with
// `exact`, `got` has no other rows either. Failures name the row lost, added or changed.
void expect_metrics(const std::map<MetricKey, double>& want, const std::map<MetricKey, double>& got,
                    const std::vector<MetricKey>& twice, int64_t up_to, bool exact) {
  for (const MetricKey& k : twice) ADD_FAILURE() << "metric " << k.second << " of step " << k.first << " stored twice";
  for (const auto& [k, v] : want) {
    if (k.first > up_to) continue;
    const auto it = got.find(k);
    if (it == got.end()) {
      ADD_FAILURE() << "metric " << k.second << " of step " << k.first << " lost";
    } else if (!timing_metric(k.second) && !same_bits(it->second, v)) {
      ADD_FAILURE() << "metric " << k.second << " of step " << k.first << " is " << it->second
                    << ", the uninterrupted run stored " << v;
    }
  }
  if (!exact) return;
  for (const auto& [k, v] : got)
    if (!want.count(k)) ADD_FAILURE() << "metric " << k.second << " of step " << k.first << " stored, never logged";
}

// ---- train -------------------------------------------------------------------------------------

// One training run killed at eight moments, each kill followed by `train --resume`, against the
// same run uninterrupted. 20 steps, a checkpoint every 4, a validation every 5 (it stores its
// metrics and may write best.safetensors between checkpoints).
TEST(Kill, TrainResumedAfterEveryKillIsBitIdenticalAndLosesNoMetric) {
  test::TrainRun r(20);
  r.cfg.train.validate_every = 5;
  validate_config(r.cfg);
  const std::string config = r.dir.file("run.toml"), run = r.cfg.data.run_dir, ref = r.dir.file("ref");
  write_file_atomic(config, to_toml(r.cfg));
  Melgraph mg{r.dir.path.string()};
  const std::vector<std::string> train = {"train", "--quiet", "--device", "cpu", "--threads", "2", "--config", config};
  std::vector<std::string> resume = train;
  resume.push_back("--resume");

  // The uninterrupted run, moved aside: the killed one runs in the same directory, so that both
  // name the same paths in their files and those can be compared byte for byte.
  std::string out;
  ASSERT_EQ(mg.run(train, &out), 0) << out;
  fs::rename(run, ref);
  std::vector<MetricKey> twice;
  const std::map<MetricKey, double> want = metric_rows(ref + "/runs.sqlite", 1, &twice);
  ASSERT_TRUE(twice.empty());
  ASSERT_TRUE(want.count({20, "train.loss"}) && want.count({5, "loader.wait_fraction"})) << "metrics not as expected";

  // The hit counts are per process: a resumed one starts counting at the checkpoint's step.
  struct Kill {
    const char* stop_at;  // MELGRAPH_STOP_AT
    int64_t last_step;    // the step of last.safetensors it leaves
    int64_t stored_to;    // the last step with metrics in runs.sqlite: past last_step, the resume redoes them
    const char* moment;
  };
  const Kill kills[] = {
      {"train.step:6", 4, 5, "after step 6's update: its metrics buffered, step 5's validation stored"},
      {"train.checkpoint:1", 4, 8, "in step 8's checkpoint: the metrics stored, last.safetensors not written"},
      {"rename:last.safetensors:1", 4, 8, "in step 8's checkpoint: its temporary file written, not renamed"},
      {"train.checkpointed:1", 8, 8, "in step 8's checkpoint: just renamed into place"},
      {"train.step:3", 8, 10, "after step 11's update: step 10's validation stored"},
      {"train.checkpoint:2", 12, 16, "in step 16's checkpoint: the metrics stored, last.safetensors not written"},
      {"rename:last.safetensors:2", 16, 20,
       "in the final checkpoint (step 20): its temporary file written, not renamed"},
      {"train.checkpointed:1", 20, 20, "after the final checkpoint, before the run was closed"},
  };
  bool first = true;
  for (const Kill& k : kills) {
    SCOPED_TRACE(std::string("kill ") + k.moment + " (MELGRAPH_STOP_AT=" + k.stop_at + ")");
    ASSERT_TRUE(mg.kill_at(first ? train : resume, k.stop_at));
    first = false;
    // The checkpoint is the previous one or the new one, whole (it reads), and every metric up to
    // its step is stored once: that is what the resume continues from.
    ASSERT_EQ(checkpoint_step(run + "/last.safetensors"), k.last_step);
    twice.clear();
    const std::map<MetricKey, double> got = metric_rows(run + "/runs.sqlite", 1, &twice);
    expect_metrics(want, got, twice, k.last_step, false);
    ASSERT_FALSE(got.empty());
    EXPECT_EQ(got.rbegin()->first.first, k.stored_to) << "the kill did not land where the test says";
    if (std::string(k.stop_at).rfind("rename:", 0) == 0) {
      EXPECT_GT(temp_files_of(run + "/last.safetensors"), 0) << "the kill did not land before the rename";
    }
    EXPECT_EQ(RunDb(run + "/runs.sqlite").run(1)->status, RunStatus::Running);
  }
  // The last kill left the run complete but not closed: the resume has no step to take and
  // closes it.
  ASSERT_EQ(mg.run(resume, &out), 0) << out;
  EXPECT_NE(out.find("nothing to do"), std::string::npos) << out;

  for (const char* f : {"last.safetensors", "best.safetensors", "config.toml", "held_out_items.txt"})
    EXPECT_TRUE(test::read_bytes(run + "/" + f) == test::read_bytes(ref + "/" + f))
        << f << " differs from the uninterrupted run's (or is missing)";
  twice.clear();
  expect_metrics(want, metric_rows(run + "/runs.sqlite", 1, &twice), twice, 20, true);
  const std::vector<RunRecord> runs = RunDb(run + "/runs.sqlite").runs();
  ASSERT_EQ(runs.size(), 1u) << "a resume started a new run";
  EXPECT_EQ(runs[0].status, RunStatus::Finished) << runs[0].message;
  EXPECT_EQ(temp_files_of(run + "/last.safetensors"), 0) << "a killed checkpoint's temporary file was left";
  EXPECT_EQ(temp_files_of(run + "/best.safetensors"), 0);
}

// ---- export and prepare ------------------------------------------------------------------------

constexpr int kClips = 24;

// 1 s clips at 8 kHz from the 2 s tracks' starts: 3 crops per item, 72 clips to embed in batches
// of up to 64.
Config small_audio_config() {
  Config c = test::small_config();
  c.audio.excerpt = Excerpt::Start;
  c.audio.excerpt_seconds = 2.0;
  return c;
}

demo::DemoCollectionSummary make_collection(const test::TempDir& d, int clips) {
  demo::DemoCollectionOptions o;
  o.clips = clips;
  o.styles = 3;
  o.clip_seconds = 2.0;
  o.sample_rate = 8000;
  o.seed = 11;
  o.threads = 2;
  return demo::make_demo_collection(d.file("coll"), o);
}

// An index of checkpoint A at --out; exports of checkpoint B into it killed while decoding (into a
// cache of their own), embedding, inserting rows and before the rename; then one that completes.
TEST(Kill, ExportKeepsThePreviousIndexIntact) {
  test::TempDir d;
  const demo::DemoCollectionSummary coll = make_collection(d, kClips);
  test::save_untrained(small_audio_config(), 3, d.file("a.safetensors"));
  test::save_untrained(small_audio_config(), 4, d.file("b.safetensors"));
  Melgraph mg{d.path.string()};
  const std::string out = d.file("index.sqlite");
  auto export_args = [&](const std::string& checkpoint, const std::string& cache, const std::string& to) {
    return std::vector<std::string>{
        "export",        "--device", "cpu",          "--threads", "1",         "--prepare-threads", "2",
        "--crops",       "3",        "--checkpoint", checkpoint,  "--catalog", coll.catalog_path,   "--edges",
        coll.edges_path, "--cache",  cache,          "--out",     to};
  };
  const std::vector<std::string> query = {"query",   "--device", "cpu",    "--threads", "1",
                                          "--index", out,        "--item", coll.ids[5]};
  std::string text;
  ASSERT_EQ(mg.run(export_args(d.file("b.safetensors"), d.file("ref.cache"), d.file("ref.sqlite")), &text), 0) << text;
  ASSERT_EQ(mg.run(export_args(d.file("a.safetensors"), d.file("a.cache"), out), &text), 0) << text;
  const std::string before = test::read_bytes(out);
  std::string answer;
  ASSERT_EQ(mg.run(query, &answer), 0) << answer;

  const std::vector<std::string> export_b = export_args(d.file("b.safetensors"), d.file("b.cache"), out);
  struct Kill {
    const char* stop_at;
    bool temp_left;  // the kill leaves the export's temporary index file
    const char* moment;
  };
  const Kill kills[] = {
      {"prepare.item:6", false, "decoding (the 6th item of a new cache)"},
      {"embed.batch:1", false, "embedding (after the first batch of 64 clips of 72)"},
      {"index.row:10", true, "writing: 9 embedding rows inserted, uncommitted"},
      {"rename:index.sqlite:1", true, "writing: the temporary file complete, not renamed"},
  };
  for (const Kill& k : kills) {
    SCOPED_TRACE(std::string("export killed ") + k.moment + " (MELGRAPH_STOP_AT=" + k.stop_at + ")");
    ASSERT_TRUE(mg.kill_at(export_b, k.stop_at));
    EXPECT_TRUE(test::read_bytes(out) == before) << "the previous index was changed";
    std::string now;
    EXPECT_EQ(mg.run(query, &now), 0) << now;
    EXPECT_EQ(now.substr(now.find('\n')), answer.substr(answer.find('\n'))) << "the previous index answers otherwise";
    if (std::string(k.stop_at).rfind("prepare.", 0) == 0) {
      EXPECT_LT(audio::AudioCache::open(d.file("b.cache")).size(), kClips) << "the kill did not land mid-decoding";
    }
    if (k.temp_left) {
      EXPECT_GT(temp_files_of(out), 0) << "the kill did not land mid-write";
    }
  }
  ASSERT_EQ(mg.run(export_b, &text), 0) << text;
  EXPECT_EQ(temp_files_of(out), 0) << "a killed export's temporary file was left";
  // The same index as the uninterrupted export of B, but for when and with which cache it was made.
  const index::Index got = index::read_index(out), want = index::read_index(d.file("ref.sqlite"));
  EXPECT_TRUE(got.vectors == want.vectors) << "the vectors differ from an uninterrupted export's";
  ASSERT_EQ(got.size(), want.size());
  for (int64_t i = 0; i < got.size(); ++i) EXPECT_EQ(got.items[i].id, want.items[i].id) << "row " << i;
  for (const auto& [key, value] : want.meta) {
    if (key != "created_at" && key != "cache") {
      EXPECT_EQ(got.meta_value(key), value) << "meta " << key;
    }
  }
}

// Every item of `cache` is the uninterrupted run's item of the same id, sample for sample.
void expect_items_of(const audio::AudioCache& cache, const audio::AudioCache& ref) {
  for (int64_t i = 0; i < cache.size(); ++i) {
    const audio::CacheEntry& e = cache.entry(i);
    EXPECT_TRUE(cache.verify(i)) << e.id << ": its PCM does not match its checksum (a half-written item)";
    const int64_t j = ref.find(e.id);
    ASSERT_GE(j, 0) << e.id << " is cached but not by the uninterrupted run";
    ASSERT_EQ(e.length, ref.entry(j).length) << e.id;
    std::vector<float> a(static_cast<size_t>(e.length)), b(a.size());
    cache.read_clip(i, 0, e.length, ShortClip::Zero, a.data());
    ref.read_clip(j, 0, e.length, ShortClip::Zero, b.data());
    EXPECT_TRUE(a == b) << e.id << ": samples differ from the uninterrupted run's";
  }
}

// prepare killed mid-decoding three times (the third after its last item, before the final
// commit), each time rerun; then a rerun completes the cache and export reads it. The writer
// commits every CacheWriter::kBatchItems (64) items or 0.5 s: the first two kills, 6 items past
// that in their runs, leave a batch committed and a few items appended but not committed.
TEST(Kill, PrepareLeavesAUsableCacheThatARerunCompletes) {
  constexpr int kItems = 150;
  constexpr int64_t kBatch = audio::CacheWriter::kBatchItems;
  test::TempDir d;
  const demo::DemoCollectionSummary coll = make_collection(d, kItems);
  const Config cfg = small_audio_config();
  write_file_atomic(d.file("audio.toml"), to_toml(cfg));
  Melgraph mg{d.path.string()};
  auto prepare = [&](const std::string& cache) {
    return std::vector<std::string>{"prepare",   "--catalog", coll.catalog_path, "--config", d.file("audio.toml"),
                                    "--threads", "2",         "--out",           cache};
  };
  const std::string cache = d.file("cache");
  std::string text;
  ASSERT_EQ(mg.run(prepare(d.file("ref.cache")), &text), 0) << text;
  const audio::AudioCache ref = audio::AudioCache::open(d.file("ref.cache"));
  ASSERT_EQ(ref.size(), kItems);

  int64_t cached = 0;
  for (int kill = 1; kill <= 3; ++kill) {
    // The third kill stops at the last item this run has to decode: everything handed to the
    // writer, the final commit not made.
    const int64_t hits = kill < 3 ? kBatch + 6 : kItems - cached;
    const std::string stop_at = "prepare.item:" + std::to_string(hits);
    SCOPED_TRACE("prepare killed mid-decoding, kill " + std::to_string(kill) + " (MELGRAPH_STOP_AT=" + stop_at + ")");
    ASSERT_TRUE(mg.kill_at(prepare(cache), stop_at));
    const audio::AudioCache c = audio::AudioCache::open(cache);
    EXPECT_GE(c.size(), cached) << "items committed before the kill were lost";
    if (kill < 3) {
      EXPECT_GE(c.size(), cached + kBatch) << "the batch committed before the kill was lost";
    }
    cached = c.size();
    EXPECT_LT(cached, kItems);
    expect_items_of(c, ref);
  }
  ASSERT_EQ(mg.run(prepare(cache), &text), 0) << text;
  EXPECT_NE(text.find("decoded: " + std::to_string(kItems - cached) + " "), std::string::npos) << text;
  EXPECT_NE(text.find("skipped (unchanged): " + std::to_string(cached) + "\n"), std::string::npos) << text;
  {
    const audio::AudioCache c = audio::AudioCache::open(cache);
    EXPECT_EQ(c.size(), kItems);
    expect_items_of(c, ref);
    EXPECT_TRUE(c.failures().empty());
  }
  // Export reads the cache as it is: nothing left to decode, every item indexed.
  test::save_untrained(cfg, 3, d.file("model.safetensors"));
  ASSERT_EQ(mg.run({"export", "--device", "cpu", "--threads", "1", "--checkpoint", d.file("model.safetensors"),
                    "--catalog", coll.catalog_path, "--cache", cache, "--out", d.file("index.sqlite")},
                   &text),
            0)
      << text;
  EXPECT_EQ(index::read_index(d.file("index.sqlite")).size(), kItems);
}

}  // namespace
}  // namespace mg
