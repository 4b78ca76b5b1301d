// The trainer end to end on a small generated collection (engine/demo/demo_collection.h): it learns,
// a resumed run is bit-identical to an uninterrupted one on the CPU, the non-finite guard
// stops or skips, a signal stops the real binary with a loadable checkpoint, and the results
// database records it all.
#include "engine/train/trainer.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "engine/audio/audio_cache.h"
#include "engine/audio/prepare.h"
#include "engine/checkpoint.h"
#include "engine/demo/demo_collection.h"
#include "engine/io/atomic_file.h"
#include "engine/io/file_lock.h"
#include "engine/io/safetensors.h"
#include "engine/train/batch_loader.h"
#include "engine/train/run_db.h"
#include "engine/train/training_data.h"
#include "kernels/blas.h"
#include "tests/reference_harness.h"
#include "tests/test_support.h"
#include "tests/train_test_support.h"

namespace mg {
namespace {

using test::TrainRun;

std::vector<double> metric(const std::string& db_path, int64_t run, const std::string& name) {
  RunDb db(db_path);
  std::vector<double> v;
  for (const MetricRow& m : db.metrics(run, name)) v.push_back(m.value);
  return v;
}

double mean(const std::vector<double>& v, size_t from, size_t to) {
  double s = 0;
  for (size_t i = from; i < to; ++i) s += v[i];
  return s / static_cast<double>(to - from);
}

TEST(Trainer, LearnsOnGeneratedData) {
  TrainRun r(60);
  const train::TrainResult res = r.train();
  ASSERT_EQ(res.status, train::TrainStatus::Finished) << res.message;
  EXPECT_EQ(res.steps, 60);
  const std::vector<double> loss = metric(r.dir.file("run/runs.sqlite"), res.run_id, "train.loss");
  ASSERT_EQ(loss.size(), 60u);
  // Mean loss of the last 15 steps below that of the first 15: a margin to spare, seeded run.
  EXPECT_LT(mean(loss, 45, 60), 0.8 * mean(loss, 0, 15));
  ASSERT_TRUE(res.initial && res.last);
  const auto& fit0 = res.initial->sets.back();  // training fit
  const auto& fit1 = res.last->sets.back();
  EXPECT_EQ(fit0.name, "training fit");
  EXPECT_GT(fit1.model.recall, fit0.model.recall) << "training raised recall on training items";
  EXPECT_GT(res.last->sets.front().model.recall, res.initial->sets.front().chance_recall)
      << "held-out items are retrieved better than chance";
  // The run is recorded: status, step 0 and final validation metrics.
  RunDb db(r.dir.file("run/runs.sqlite"));
  const auto run = db.run(res.run_id);
  ASSERT_TRUE(run);
  EXPECT_EQ(run->status, RunStatus::Finished);
  EXPECT_EQ(metric(r.dir.file("run/runs.sqlite"), res.run_id, "val.held-out_items.recall@5").size(), 2u);
  EXPECT_EQ(metric(r.dir.file("run/runs.sqlite"), res.run_id, "train.clips_per_second").size(), 60u);
  EXPECT_TRUE(std::ifstream(r.dir.file("run/best.safetensors")).good());

  // metrics.jsonl: the run's begin and end around every metric of runs.sqlite, one per line.
  std::ifstream jsonl(r.dir.file("run/metrics.jsonl"));
  std::vector<nlohmann::json> lines;
  for (std::string line; std::getline(jsonl, line);) lines.push_back(nlohmann::json::parse(line));
  const std::vector<MetricRow> rows = db.metrics(res.run_id);
  ASSERT_EQ(lines.size(), rows.size() + 2);
  EXPECT_EQ(lines.front()["event"], "begin");
  EXPECT_EQ(lines.back()["event"], "end");
  EXPECT_EQ(lines.back()["status"], "finished");
  std::multiset<std::pair<std::string, int64_t>> in_db, in_jsonl;
  for (const MetricRow& m : rows) in_db.insert({m.name, m.step});
  for (size_t i = 1; i + 1 < lines.size(); ++i)
    in_jsonl.insert({lines[i]["name"].get<std::string>(), lines[i]["step"].get<int64_t>()});
  EXPECT_EQ(in_db, in_jsonl);
}

TEST(Trainer, ResumedRunIsBitIdenticalOnCpu) {
  TrainRun straight(16), split(16);
  ASSERT_EQ(straight.train().status, train::TrainStatus::Finished);
  const train::TrainResult first = split.train(false, 7);
  ASSERT_EQ(first.status, train::TrainStatus::Interrupted) << first.message;
  EXPECT_EQ(first.steps, 7);
  EXPECT_NE(first.message.find("--resume"), std::string::npos) << first.message;
  const train::TrainResult second = split.train(true);
  ASSERT_EQ(second.status, train::TrainStatus::Finished) << second.message;
  EXPECT_EQ(second.run_id, first.run_id) << "a resumed run continues the same runs row";

  const StFile a = read_safetensors(straight.last()), b = read_safetensors(split.last());
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (const auto& [name, t] : a.tensors) {
    ASSERT_TRUE(b.has(name)) << name;
    EXPECT_EQ(t.bytes, b.tensors.at(name).bytes) << name << " differs after resume";
  }
  EXPECT_EQ(metric(straight.dir.file("run/runs.sqlite"), 1, "train.loss"),
            metric(split.dir.file("run/runs.sqlite"), 1, "train.loss"));
  // A second resume of a finished run has nothing to do, and leaves the run's own ending in
  // runs.sqlite (issue 17, D13: it used to overwrite the final message).
  const std::string ended = RunDb(split.dir.file("run/runs.sqlite")).run(second.run_id)->message;
  const train::TrainResult again = split.train(true);
  EXPECT_EQ(again.steps, 16);
  EXPECT_NE(again.message.find("nothing to do"), std::string::npos) << again.message;
  const std::optional<RunRecord> row = RunDb(split.dir.file("run/runs.sqlite")).run(second.run_id);
  EXPECT_EQ(row->status, RunStatus::Finished);
  EXPECT_EQ(row->message, ended);
  EXPECT_NE(ended.find("finished 16 steps"), std::string::npos) << ended;
}

TEST(Trainer, RefusesToOverwriteARunOrResumeNothing) {
  TrainRun r(4);
  EXPECT_THROW(r.train(true), std::invalid_argument);  // nothing to resume
  ASSERT_EQ(r.train().status, train::TrainStatus::Finished);
  try {
    r.train();
    FAIL() << "a second run into the same directory was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("--resume"), std::string::npos) << e.what();
  }
  r.cfg.optim.adam.lr = 1e-4;
  try {
    r.train(true);
    FAIL() << "resume under a changed config was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("config differs"), std::string::npos) << e.what();
  }
}

// Issue 17, D3: a second training process on a run directory is refused at once, naming the
// process that holds it (here this one, through a lock taken as another process would).
TEST(Trainer, ARunDirectoryInUseIsRefused) {
  TrainRun r(4);
  std::filesystem::create_directories(r.cfg.data.run_dir);
  {
    const FileLock other((std::filesystem::path(r.cfg.data.run_dir) / "train.lock").string(), "a test");
    try {
      r.train();
      FAIL() << "a second train on a run directory in use was accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("train.lock is held by process " + std::to_string(::getpid())),
                std::string::npos)
          << e.what();
      EXPECT_NE(std::string(e.what()).find("another melgraph train is using"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(std::filesystem::exists(r.last()));
  }
  // Released (the holder ended): the run goes ahead.
  EXPECT_EQ(r.train().status, train::TrainStatus::Finished);
}

// Issue 17, D12: a run left "running" by a killed process (no checkpoint yet, so the next
// train starts a new run) is closed as failed by the next process that holds the directory.
TEST(Trainer, ARunLeftRunningByAKillIsClosedByTheNext) {
  TrainRun r(4);
  std::filesystem::create_directories(r.cfg.data.run_dir);
  int64_t abandoned = 0;
  {
    RunDb db(r.dir.file("run/runs.sqlite"));
    RunInfo info;
    info.name = "killed";
    abandoned = db.begin_run(info);  // what a train killed before its first checkpoint leaves
  }
  const train::TrainResult res = r.train();
  ASSERT_EQ(res.status, train::TrainStatus::Finished) << res.message;
  RunDb db(r.dir.file("run/runs.sqlite"));
  const std::optional<RunRecord> old = db.run(abandoned);
  ASSERT_TRUE(old.has_value());
  EXPECT_EQ(old->status, RunStatus::Failed);
  EXPECT_NE(old->message.find("killed or crashed"), std::string::npos) << old->message;
  EXPECT_EQ(db.run(res.run_id)->status, RunStatus::Finished);
}

// Issue 17, D13: an empty edge list is named as what is wrong (it used to blame the catalog).
TEST(Trainer, EmptyEdgeListIsNamed) {
  TrainRun r(4);
  r.cfg.data.edges = r.dir.file("empty.csv");
  std::ofstream(r.cfg.data.edges) << "# no edges\n";
  try {
    r.train();
    FAIL() << "an empty edge list was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(r.cfg.data.edges + ": the edge list has no edges"), std::string::npos)
        << e.what();
  }
}

struct PoisonStep {
  explicit PoisonStep(int step) { setenv("MELGRAPH_TRAIN_POISON_STEP", std::to_string(step).c_str(), 1); }
  ~PoisonStep() { unsetenv("MELGRAPH_TRAIN_POISON_STEP"); }
};

TEST(Trainer, NonFiniteLossStopsBeforeTheUpdate) {
  TrainRun r(12);
  const PoisonStep poison(6);
  const train::TrainResult res = r.train();
  ASSERT_EQ(res.status, train::TrainStatus::Diverged);
  EXPECT_EQ(res.steps, 5);
  // The NaN sample enters the first conv's input: ReLU maps a NaN to 0 in the forward pass
  // (x > 0 is false), so the loss stays finite and the first conv's weight gradient is what
  // goes bad; the message names it.
  EXPECT_NE(res.message.find("step 6: the gradient of conv.0.weight ["), std::string::npos) << res.message;
  EXPECT_NE(res.message.find("is not finite; stopped before updating"), std::string::npos) << res.message;
  // The last checkpoint is the one of step 4 (checkpoint_every = 4), finite, and it loads.
  const TrainState st = [&] {
    auto be = make_cpu_backend(1);
    const Config c = read_checkpoint_config(r.last());
    Model m(c, *be, 24);
    return load_checkpoint(r.last(), m, nullptr);
  }();
  EXPECT_EQ(st.step, 4);
  RunDb db(r.dir.file("run/runs.sqlite"));
  EXPECT_EQ(db.run(res.run_id)->status, RunStatus::Diverged);
}

TEST(Trainer, NonFiniteStepIsSkippedWhenAsked) {
  TrainRun r(10);
  r.cfg.train.nonfinite = NonFinite::Skip;
  const PoisonStep poison(3);
  const train::TrainResult res = r.train();
  ASSERT_EQ(res.status, train::TrainStatus::Finished) << res.message;
  EXPECT_EQ(res.skipped_steps, 1);
  EXPECT_NE(res.message.find("1 non-finite steps skipped"), std::string::npos) << res.message;
  // Nine updates: the optimizer's own step count in the checkpoint says so.
  EXPECT_EQ(r.load_last().optimizer_steps, 9);
}

// Issue 17, D2: a skipped step still validates, checkpoints and stops when its step says so.
// Here the poisoned step is the last: the run ends with the checkpoint of step 10 and a
// validation at step 10 (before, the skip jumped past both and last.safetensors stayed at 8).
TEST(Trainer, SkippedLastStepStillValidatesAndCheckpoints) {
  TrainRun r(10);
  r.cfg.train.nonfinite = NonFinite::Skip;
  const PoisonStep poison(10);
  const train::TrainResult res = r.train();
  ASSERT_EQ(res.status, train::TrainStatus::Finished) << res.message;
  EXPECT_EQ(res.skipped_steps, 1);
  const TrainRun::Loaded last = r.load_last();
  EXPECT_EQ(last.state.step, 10);
  EXPECT_EQ(last.optimizer_steps, 9);
  RunDb db(r.dir.file("run/runs.sqlite"));
  const std::vector<MetricRow> all = db.metrics(res.run_id, "");
  EXPECT_TRUE(std::any_of(all.begin(), all.end(), [](const MetricRow& row) {
    return row.step == 10 && row.name.find("recall") != std::string::npos;
  })) << "no validation at the last step";
  // The skipped step logs no training metrics of its own.
  EXPECT_EQ(metric(r.dir.file("run/runs.sqlite"), res.run_id, "train.loss").size(), 9u);
}

// Issue 17, D13: a non-finite first step names no checkpoint that was never written.
TEST(Trainer, NonFiniteFirstStepNamesNoMissingCheckpoint) {
  TrainRun r(6);
  const PoisonStep poison(1);
  const train::TrainResult res = r.train();
  ASSERT_EQ(res.status, train::TrainStatus::Diverged);
  EXPECT_NE(res.message.find("No checkpoint was written before it"), std::string::npos) << res.message;
  EXPECT_EQ(res.message.find("last.safetensors"), std::string::npos) << res.message;
}

// The largest magnitude in every tensor of a checkpoint (parameters and Adam moments).
double largest_value(const std::string& checkpoint) {
  const StFile f = read_safetensors(checkpoint);
  double largest = 0;
  for (const auto& [name, t] : f.tensors)
    for (float x : t.to_f32()) largest = std::max(largest, std::isfinite(x) ? std::fabs(double{x}) : HUGE_VAL);
  return largest;
}

// Issue 17, D15: a learning rate far too large makes the parameters explode while every loss
// and gradient stays finite. The run ends as diverged, naming the tensor, and no checkpoint
// holds the exploded values (before, the run "finished" and saved them as the last good one).
TEST(Trainer, ExplodedParametersAreNeverCheckpointed) {
  TrainRun r(12);
  r.cfg.optim.adam.lr = 1e6;  // Adam moves a weight by about lr a step (half at step 1, warmup)
  r.cfg.train.validate_every = 4;
  r.cfg.train.checkpoint_every = 1;
  const train::TrainResult res = r.train();
  ASSERT_EQ(res.status, train::TrainStatus::Diverged) << res.message;
  EXPECT_NE(res.message.find("has exploded"), std::string::npos) << res.message;
  EXPECT_NE(res.message.find("lower optim.lr (1e+06)"), std::string::npos) << res.message;
  ASSERT_GE(res.steps, 2) << res.message;
  EXPECT_NE(res.message.find("The last good checkpoint is " + r.last() + " (step " + std::to_string(res.steps - 1)),
            std::string::npos)
      << res.message;
  EXPECT_EQ(r.load_last().state.step, res.steps - 1);
  for (const char* name : {"run/last.safetensors", "run/best.safetensors"}) {
    if (std::filesystem::exists(r.dir.file(name))) {
      EXPECT_LE(largest_value(r.dir.file(name)), 1e6) << name;
    }
  }
  RunDb db(r.dir.file("run/runs.sqlite"));
  EXPECT_EQ(db.run(res.run_id)->status, RunStatus::Diverged);
  EXPECT_EQ(metric(r.dir.file("run/runs.sqlite"), res.run_id, "train.exploded").size(), 1u);
}

// Issue 17 (found by the kill tests): resuming a run that early stopping ended, cleanly or killed
// before it closed the run, is a run with nothing left to do; it trained on past its stop.
TEST(Trainer, EarlyStoppedRunResumesToNothing) {
  TrainRun r(12);
  r.cfg.optim.adam.lr = 1e-9;  // the recall cannot change: the second validation stops the run
  r.cfg.train.validate_every = 2;
  r.cfg.train.early_stopping = 1;
  const train::TrainResult first = r.train();
  ASSERT_EQ(first.status, train::TrainStatus::EarlyStopped) << first.message;
  ASSERT_EQ(first.steps, 4);
  const std::string db_path = r.dir.file("run/runs.sqlite");
  const std::string message = RunDb(db_path).run(first.run_id)->message;

  const train::TrainResult again = r.train(true);
  EXPECT_EQ(again.status, train::TrainStatus::EarlyStopped) << again.message;
  EXPECT_EQ(again.steps, 4);
  EXPECT_NE(again.message.find("nothing to do: early stopping ended this run at step 4"), std::string::npos)
      << again.message;
  EXPECT_EQ(r.load_last().state.step, 4);
  EXPECT_EQ(metric(db_path, first.run_id, "train.loss").size(), 4u) << "it trained on";
  RunDb db(db_path);
  EXPECT_EQ(db.run(first.run_id)->status, RunStatus::Finished);
  EXPECT_EQ(db.run(first.run_id)->message, message) << "the run's ending was rewritten";
}

// Issue 17, D13: a damaged last checkpoint is bad input (exit code 2 in the CLI) found before
// any audio is decoded; it failed as a runtime error after preparing the whole cache.
TEST(Trainer, DamagedCheckpointIsRefusedBeforeDecoding) {
  TrainRun r(8);
  ASSERT_EQ(r.train(false, 4).status, train::TrainStatus::Interrupted);
  const std::string last = test::read_bytes(r.last());
  std::ofstream(r.last(), std::ios::binary | std::ios::trunc)
      .write(last.data(), static_cast<std::streamsize>(last.size() - 64));
  std::filesystem::remove_all(r.dir.file("run/cache"));
  try {
    r.train(true);
    FAIL() << "a truncated checkpoint was resumed from";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("--resume: " + r.last()), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("cannot be resumed from"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(r.dir.file("run/cache"))) << "audio was decoded first";
}

TEST(Trainer, InBatchMiningTrains) {
  for (Mining mode : {Mining::BatchHard, Mining::SemiHard}) {
    TrainRun r(8);
    r.cfg.train.mining = mode;
    const train::TrainResult res = r.train();
    ASSERT_EQ(res.status, train::TrainStatus::Finished) << res.message;
    const std::vector<double> mined = metric(r.dir.file("run/runs.sqlite"), res.run_id, "train.mined");
    ASSERT_EQ(mined.size(), 8u);
    for (double m : mined) {
      EXPECT_GE(m, 0);
      EXPECT_LE(m, 8);
    }
  }
}

// data.holdout_by: whole groups of a catalog column are held out, and nothing of them reaches
// training: no held-out item in any batch, and the triplet tables' distances are those of the
// graph without the held-out items' edges and without the held-out pairs, recomputed here by a
// breadth-first search of our own over the edge list's ids.
TEST(Trainer, HoldoutByColumnKeepsWholeGroupsAndTheirEdgesOutOfTraining) {
  TrainRun r(2);
  r.cfg.data.holdout_by = "artist";
  r.cfg.data.val_items = 0.25;
  const train::TrainingData d = train::build_training_data(r.cfg, 2, {});
  const graph::Catalog cat = graph::load_catalog(r.cfg.data.catalog);
  const std::vector<std::string> artist = graph::column_values(cat, "artist");
  std::map<std::string, std::string> artist_of;
  for (size_t i = 0; i < cat.items.size(); ++i) artist_of[cat.items[i].id] = artist[i];
  std::set<std::string> groups;
  for (const auto& it : d.items) groups.insert(artist_of.at(it.id));
  const auto want_held = static_cast<size_t>(std::max<long>(1, std::lround(0.25 * static_cast<double>(groups.size()))));
  ASSERT_EQ(d.held_out_groups.size(), want_held) << "of " << groups.size() << " artists";
  const std::set<std::string> held(d.held_out_groups.begin(), d.held_out_groups.end());
  std::set<int32_t> held_items;
  for (const int32_t i : d.val_items) {
    EXPECT_TRUE(held.count(artist_of.at(d.items[static_cast<size_t>(i)].id))) << d.items[static_cast<size_t>(i)].id;
    held_items.insert(i);
  }
  for (const int32_t i : d.train_items)
    EXPECT_FALSE(held.count(artist_of.at(d.items[static_cast<size_t>(i)].id))) << d.items[static_cast<size_t>(i)].id;
  EXPECT_EQ(d.val_items.size() + d.train_items.size(), d.items.size());
  ASSERT_FALSE(d.val_items_set.queries.empty());
  for (const train::Query& q : d.val_items_set.queries) EXPECT_TRUE(held_items.count(q.item));
  EXPECT_EQ(d.val_items_set.candidates.size(), d.items.size()) << "held-out items are ranked among all items";

  // The training graph, by ids: every edge but those touching a held-out item and the pairs
  // held out for the edge validation set.
  std::set<std::string> held_ids;
  for (const int32_t i : d.val_items) held_ids.insert(d.items[static_cast<size_t>(i)].id);
  std::set<std::pair<std::string, std::string>> held_pairs;
  for (const auto& [a, b] : d.held_out_edges) {
    held_pairs.insert({d.items[static_cast<size_t>(a)].id, d.items[static_cast<size_t>(b)].id});
    held_pairs.insert({d.items[static_cast<size_t>(b)].id, d.items[static_cast<size_t>(a)].id});
  }
  std::map<std::string, std::set<std::string>> adj;
  std::ifstream edges(r.cfg.data.edges);
  std::string line;
  std::getline(edges, line);  // header
  int dropped = 0;
  while (std::getline(edges, line)) {
    const size_t c1 = line.find(','), c2 = line.find(',', c1 + 1);
    const std::string a = line.substr(0, c1), b = line.substr(c1 + 1, c2 == std::string::npos ? std::string::npos : c2 - c1 - 1);
    if (a == b) continue;
    if (held_ids.count(a) || held_ids.count(b) || held_pairs.count({a, b})) {
      ++dropped;
      continue;
    }
    adj[a].insert(b);
    adj[b].insert(a);
  }
  ASSERT_GT(dropped, 0) << "the held-out groups have no edges: the test would test nothing";
  const int max_depth = d.tables.max_depth();
  for (int32_t t = 0; t < d.tables.n_items(); ++t) {
    const std::string& from = d.items[static_cast<size_t>(d.train_items[static_cast<size_t>(t)])].id;
    std::map<std::string, int> dist{{from, 0}};
    std::vector<std::string> frontier{from};
    for (int h = 1; h <= max_depth; ++h) {
      std::vector<std::string> next;
      for (const auto& u : frontier)
        for (const auto& v : adj[u])
          if (!dist.count(v)) dist[v] = h, next.push_back(v);
      frontier = next;
    }
    std::map<int32_t, int> want, got;
    for (size_t u = 0; u < d.train_items.size(); ++u) {
      const auto it = dist.find(d.items[static_cast<size_t>(d.train_items[u])].id);
      if (it != dist.end() && it->second >= 1) want[static_cast<int32_t>(u)] = it->second;
    }
    const auto near = d.tables.near(t);
    const auto nd = d.tables.near_distance(t);
    for (size_t j = 0; j < near.size(); ++j) got[near[j]] = nd[j];
    EXPECT_EQ(got, want) << "near set of training item " << from;
  }

  // No batch of the run holds a held-out item.
  auto be = make_cpu_backend(1);
  const std::string cache_dir = r.dir.file("cache");
  std::vector<audio::PrepareItem> prep;
  for (const auto& it : d.items) prep.push_back({it.id, it.path});
  audio::prepare_cache(prep, r.cfg.audio, cache_dir, audio::PrepareOptions{});
  const audio::AudioCache cache = audio::AudioCache::open(cache_dir);
  std::vector<int64_t> train_cache;
  for (const int32_t i : d.train_items) train_cache.push_back(cache.find(d.items[static_cast<size_t>(i)].id));
  train::BatchLoader loader(d, cache, train_cache, r.cfg, *be, 1, 20);
  for (int s = 1; s <= 20; ++s) {
    const train::Batch& b = loader.next();
    for (const int32_t item : b.items) EXPECT_FALSE(held_items.count(item)) << "step " << s;
    loader.release();
  }
}

TEST(Trainer, HoldoutByAnUnknownColumnNamesTheColumns) {
  TrainRun r(2);
  r.cfg.data.holdout_by = "label";
  try {
    train::build_training_data(r.cfg, 2, {});
    FAIL() << "no error for a column the catalog lacks";
  } catch (const graph::GraphInputError& e) {
    EXPECT_NE(std::string(e.what()).find("\"label\""), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("id, path, title, artist, style"), std::string::npos) << e.what();
  }
}

// data.skip_bad_lines (train --skip-bad-lines): a malformed edge line and catalog row stop the
// run with a message that suggests it; with it they are skipped, counted in the summary, and
// the rest of the data is the same.
TEST(Trainer, SkipBadLinesSkipsAndCountsMalformedInput) {
  TrainRun r(2);
  const train::TrainingData clean = train::build_training_data(r.cfg, 2, {});
  std::ofstream(r.cfg.data.edges, std::ios::app) << "only-one-field\n";
  std::ofstream(r.cfg.data.catalog, std::ios::app) << "no-path-here\n";
  try {
    train::build_training_data(r.cfg, 2, {});
    FAIL() << "no error for a malformed edge line";
  } catch (const graph::GraphInputError& e) {
    EXPECT_NE(std::string(e.what()).find("--skip-bad-lines"), std::string::npos) << e.what();
  }
  r.cfg.data.skip_bad_lines = true;
  const train::TrainingData d = train::build_training_data(r.cfg, 2, {});
  EXPECT_EQ(d.skipped_edge_lines, 1);
  EXPECT_EQ(d.skipped_catalog_rows, 1);
  EXPECT_EQ(d.items.size(), clean.items.size());
  EXPECT_EQ(d.graph_edges, clean.graph_edges);
  EXPECT_NE(d.summary().find("skipped (--skip-bad-lines): 1 edge-list lines, 1 catalog rows"), std::string::npos)
      << d.summary();
}

// A selected item whose file no longer decodes is left out, and with data.top_k the next ranks
// with audio take its place: those replacements are decoded into the cache too, and the run
// trains on top_k items.
TEST(Trainer, ReplacesSelectedItemsThatFailToDecode) {
  TrainRun r(2);
  r.cfg.data.top_k = 40;  // of 48 clips
  const train::TrainingData before = train::build_training_data(r.cfg, 2, {});
  ASSERT_EQ(before.items.size(), 40u);
  const train::TrainingData::Item& top = before.items.front();  // rank 1
  std::ofstream(top.path, std::ios::binary | std::ios::trunc) << "not a WAV file any more\n" << std::string(4000, 'x');

  const train::TrainResult res = r.train();
  ASSERT_EQ(res.status, train::TrainStatus::Finished) << res.message;
  EXPECT_EQ(res.steps, 2);
  // The selection the run trained on: the same ranking without the broken item.
  const train::TrainingData after = train::build_training_data(r.cfg, 2, {top.id});
  ASSERT_EQ(after.items.size(), 40u);
  const audio::AudioCache cache = audio::AudioCache::open(r.dir.file("run/cache"));
  EXPECT_LT(cache.find(top.id), 0) << "the broken file has audio in the cache";
  int replacements = 0;
  for (const auto& item : after.items) {
    EXPECT_NE(item.id, top.id);
    EXPECT_GE(cache.find(item.id), 0) << item.id << " was selected but not decoded";
    const bool was_selected = std::any_of(before.items.begin(), before.items.end(),
                                          [&](const train::TrainingData::Item& b) { return b.id == item.id; });
    replacements += was_selected ? 0 : 1;
  }
  EXPECT_EQ(replacements, 1);
}

// Validation's triplet accuracy (float32 GEMM rows, in blocks of queries) against a float64
// count of every (query, relevant, irrelevant) pair on random unit vectors. The counts may
// differ only on pairs whose float64 similarities lie within 1e-5 of a tie (the float32 dot
// products of 16-d unit vectors are off by ~1e-6 at most): the difference is bounded by the
// number of those near ties, which the test also requires to be under 0.1% of the pairs, so the
// accuracy's relative error is below 1e-3.
TEST(Validation, TripletAccuracyMatchesFloat64Count) {
  blas_set_threads(1);  // BLAS inside OpenMP threads
  constexpr int kItems = 500, kDim = 16, kQueries = 70;
  std::mt19937 rng(11);
  std::normal_distribution<float> gauss;
  std::vector<float> vecs(static_cast<size_t>(kItems) * kDim);
  for (int i = 0; i < kItems; ++i) {
    float* v = vecs.data() + static_cast<size_t>(i) * kDim;
    double norm = 0;
    for (int j = 0; j < kDim; ++j) {
      v[j] = gauss(rng);
      norm += static_cast<double>(v[j]) * v[j];
    }
    for (int j = 0; j < kDim; ++j) v[j] = static_cast<float>(v[j] / std::sqrt(norm));
  }
  train::ValidationSet set;
  for (int i = 0; i < kItems; ++i)
    if (i % 5 != 4) set.candidates.push_back(i);  // some queries and relevant items are not candidates
  std::uniform_int_distribution<int> item(0, kItems - 1), count(1, 12), hops(1, 3);
  for (int q = 0; q < kQueries; ++q) {
    train::Query query;
    query.item = item(rng);
    std::vector<std::pair<uint8_t, int32_t>> rel;  // (hops, item), distinct items
    for (int n = count(rng); static_cast<int>(rel.size()) < n;) {
      const int32_t it = item(rng);
      const bool seen = std::any_of(rel.begin(), rel.end(), [&](const auto& p) { return p.second == it; });
      if (it != query.item && !seen) rel.emplace_back(static_cast<uint8_t>(hops(rng)), it);
    }
    std::sort(rel.begin(), rel.end());
    for (const auto& [h, it] : rel) {
      query.relevant.push_back(it);
      query.hops.push_back(h);
    }
    set.queries.push_back(query);
  }

  int64_t pairs = 0, correct = 0, near_ties = 0;
  auto sim = [&](int32_t a, int32_t b) {
    double dot = 0;
    for (int j = 0; j < kDim; ++j)
      dot += static_cast<double>(vecs[static_cast<size_t>(a) * kDim + j]) * vecs[static_cast<size_t>(b) * kDim + j];
    return dot;
  };
  for (const train::Query& q : set.queries) {
    auto relevant = [&](int32_t c) { return std::find(q.relevant.begin(), q.relevant.end(), c) != q.relevant.end(); };
    for (const int32_t r : set.candidates) {
      if (r == q.item || !relevant(r)) continue;
      for (const int32_t n : set.candidates) {
        if (n == q.item || relevant(n)) continue;
        const double sr = sim(q.item, r), sn = sim(q.item, n);
        ++pairs;
        correct += sr > sn ? 1 : 0;
        near_ties += std::abs(sr - sn) <= 1e-5 ? 1 : 0;
      }
    }
  }
  ASSERT_GT(pairs, 10000);
  EXPECT_LT(near_ties * 1000, pairs) << near_ties << " near ties: the bound below would say little";
  const double expected = static_cast<double>(correct) / static_cast<double>(pairs);
  // One block of every query, and blocks of 37 queries (two chunks of 16 and one of 5 each).
  const size_t bytes_37 = 37 * set.candidates.size() * sizeof(float);
  for (const size_t block_bytes : {train::kSimilarityBlockBytes, bytes_37}) {
    const TripletAccuracy got = train::validation_triplet_accuracy(vecs, kDim, set, block_bytes);
    EXPECT_EQ(got.triplets, pairs) << block_bytes;
    EXPECT_LE(std::abs(got.correct - correct), near_ties) << block_bytes;
    EXPECT_LE(std::abs(got.fraction() - expected) / expected, 1e-3) << block_bytes;
  }
}

// Exact similarities (sums of products of 0, 0.5 and 1): a tie is a miss, the query itself is
// neither relevant nor irrelevant, a relevant item that is not a candidate does not count.
TEST(Validation, TripletAccuracyCountsTiesAsMissesAndSkipsTheQuery) {
  blas_set_threads(1);
  const std::vector<float> vecs = {
      1, 0, 0, 0,              // 0: query
      1, 0, 0, 0,              // 1: relevant, similarity 1
      1, 0, 0, 0,              // 2: irrelevant, similarity 1: a tie with 1
      0, 1, 0, 0,              // 3: irrelevant, similarity 0 (and a query)
      0.5f, 0.5f, 0.5f, 0.5f,  // 4: relevant, similarity 0.5
      0, 0, 1, 0,              // 5: relevant, not a candidate
  };
  train::ValidationSet set;
  set.candidates = {0, 1, 2, 3, 4};
  train::Query a;
  a.item = 0;
  a.relevant = {4, 5, 1};  // sorted by (hops, item)
  a.hops = {1, 1, 2};
  train::Query b;
  b.item = 3;
  b.relevant = {4};
  b.hops = {1};
  set.queries = {a, b};
  // Query 0: pairs (1, 2) tie, (1, 3) right, (4, 2) wrong, (4, 3) right. Query 3: 4 above
  // each of 0, 1, 2 (similarity 0.5 against 0).
  const TripletAccuracy got = train::validation_triplet_accuracy(vecs, 4, set);
  EXPECT_EQ(got.triplets, 7);
  EXPECT_EQ(got.correct, 5);
}

TEST(Trainer, InputBoundAdviceNamesWhatToChange) {
  Config c = default_config();
  c.train.loader_threads = 3;
  train::LoaderStats ls;
  ls.wait_seconds = 0.9;
  EXPECT_EQ(train::input_bound_advice(ls, 10.0, c), "") << "9% waiting is not input-bound";
  EXPECT_EQ(train::input_bound_advice(ls, 0.0, c), "") << "no loop time yet";
  ls.wait_seconds = 2.5;
  std::string a = train::input_bound_advice(ls, 10.0, c);
  EXPECT_NE(a.find("25%"), std::string::npos) << a;
  EXPECT_NE(a.find("train.loader_threads (now 3)"), std::string::npos) << a;
  EXPECT_EQ(a.find("noise"), std::string::npos) << a;
  c.augment.noise_snr_db = 20;
  c.audio.cache_dtype = CacheDtype::Float16;
  a = train::input_bound_advice(ls, 10.0, c);
  EXPECT_NE(a.find("augment.noise_snr_db"), std::string::npos) << a;
  EXPECT_NE(a.find("int16"), std::string::npos) << a;
}

// Issue 17, D1: the binary killed inside a checkpoint (between its two writes: the metrics
// and last.safetensors) and resumed has every step's metrics exactly once.
TEST(Trainer, KillInsideACheckpointLosesNoMetric) {
  TrainRun r(12);
  const std::string config = r.dir.file("run.toml");
  write_file_atomic(config, to_toml(r.cfg));
  const std::string cmd = std::string(MELGRAPH_EXE) + " train --quiet --device cpu --threads 2 --config " + config;
  std::string out;
  EXPECT_EQ(test::run_command("MELGRAPH_TRAIN_CRASH_IN_CHECKPOINT=8 " + cmd, &out), 137) << out;
  ASSERT_EQ(test::run_command(cmd + " --resume", &out), 0) << out;
  RunDb db(r.dir.file("run/runs.sqlite"));
  std::vector<int64_t> steps;
  for (const MetricRow& row : db.metrics(1, "train.loss")) steps.push_back(row.step);
  std::vector<int64_t> want(12);
  std::iota(want.begin(), want.end(), 1);
  EXPECT_EQ(steps, want) << "train.loss rows lost or duplicated across the kill";
  EXPECT_EQ(db.run(1)->status, RunStatus::Finished);
}

// The real binary, stopped by SIGINT while it trains: exit 0, a message naming --resume,
// and a checkpoint from which --resume finishes the run.
TEST(Trainer, SigintStopsTheBinaryWithALoadableCheckpoint) {
  // Far more steps than the test waits for: the signal always lands mid-run.
  TrainRun r(100000);
  r.cfg.train.validate_every = 100000;
  r.cfg.train.checkpoint_every = 100000;
  const std::string config = r.dir.file("run.toml");
  {
    std::ofstream out(config);
    out << to_toml(r.cfg);
  }
  int out_pipe[2];
  ASSERT_EQ(pipe(out_pipe), 0);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    dup2(out_pipe[1], 1);
    dup2(out_pipe[1], 2);
    close(out_pipe[0]);
    execl(MELGRAPH_EXE, MELGRAPH_EXE, "train", "--config", config.c_str(), "--device", "cpu", "--threads", "2",
          static_cast<char*>(nullptr));
    _exit(127);
  }
  close(out_pipe[1]);
  FILE* out = fdopen(out_pipe[0], "r");
  std::string text;
  char line[4096];
  bool sent = false;
  while (std::fgets(line, sizeof line, out)) {
    text += line;
    // "run 1 in ..." comes right before the step-0 validation and the loop: the signal lands
    // there or in the first steps, and the run stops after the step it is in.
    if (!sent && std::string(line).rfind("run 1 in ", 0) == 0) {
      kill(pid, SIGINT);
      sent = true;
    }
  }
  fclose(out);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(sent) << "training never printed progress:\n" << text;
  ASSERT_TRUE(WIFEXITED(status)) << text;
  EXPECT_EQ(WEXITSTATUS(status), 0) << text;
  EXPECT_NE(text.find("Resume with: melgraph train --config"), std::string::npos) << text;
  const TrainState st = r.load_last().state;
  EXPECT_GT(st.step, 0);
  EXPECT_LT(st.step, 100000);
  RunDb db(r.dir.file("run/runs.sqlite"));
  EXPECT_EQ(db.run(1)->status, RunStatus::Interrupted);
}

}  // namespace
}  // namespace mg
