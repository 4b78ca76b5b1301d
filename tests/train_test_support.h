// A small training run on a generated collection (engine/demo/demo_collection.h), shared by the
// trainer tests and the kill tests: its config, run_training on it, and its last checkpoint.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "engine/backend.h"
#include "engine/checkpoint.h"
#include "engine/config.h"
#include "engine/demo/demo_collection.h"
#include "engine/model.h"
#include "engine/optimizer.h"
#include "engine/train/trainer.h"
#include "tests/test_support.h"

namespace mg::test {

// A checkpoint of an untrained model of config `c` (parameters from `seed`, no optimizer state).
inline void save_untrained(const Config& c, uint64_t seed, const std::string& path) {
  const auto be = make_cpu_backend(1);
  Model m(c, *be, 4);
  m.init_params(seed);
  save_checkpoint(path, m, nullptr, TrainState{});
}

struct TrainRun {
  TempDir dir;
  Config cfg;

  explicit TrainRun(int steps, uint64_t seed = 3) {
    demo::DemoCollectionOptions d;
    d.clips = 48;
    d.styles = 4;
    d.clip_seconds = 2.0;
    d.sample_rate = 8000;
    d.seed = seed;
    d.threads = 2;
    demo::make_demo_collection(dir.file("collection"), d);
    cfg = small_config();  // 8 kHz, 1 s clips, 16 mels, 3 x 8 channels, 8-d embedding
    cfg.audio.excerpt = Excerpt::Start;
    cfg.audio.excerpt_seconds = 2.0;
    cfg.model.channels = {16, 16, 16};
    cfg.model.embedding = 16;
    cfg.optim.adam.lr = 3e-3;
    cfg.train.batch_triplets = 8;
    cfg.train.steps = steps;
    cfg.train.warmup_steps = 2;
    cfg.train.validate_every = steps;
    cfg.train.checkpoint_every = 4;
    cfg.train.seed = seed;
    cfg.train.loader_threads = 2;
    cfg.data.edges = dir.file("collection/edges.csv");
    cfg.data.catalog = dir.file("collection/catalog.csv");
    cfg.data.run_dir = dir.file("run");
    cfg.data.val_items = 0.2;
    cfg.data.recall_k = 5;
    validate_config(cfg);
  }

  train::TrainResult train(bool resume = false, int64_t stop_after = 0) const {
    train::TrainOptions o;
    o.config_path = "test.toml";
    o.backend.device = DeviceChoice::Cpu;
    o.backend.threads = 2;
    o.prepare_threads = 2;
    o.quiet = true;
    o.resume = resume;
    o.stop_after = stop_after;
    return train::run_training(cfg, o);
  }
  std::string last() const { return dir.file("run/last.safetensors"); }
  // last.safetensors loaded into a model and optimizer of this run's config: the checkpoint's
  // state and the optimizer's own step count.
  struct Loaded {
    TrainState state;
    int64_t optimizer_steps = 0;
  };
  Loaded load_last() const {
    auto be = make_cpu_backend(1);
    Model m(cfg, *be, 24);
    Optimizer opt(*be, Model::param_layout(cfg), cfg.optim);
    const TrainState st = load_checkpoint(last(), m, &opt);
    return {st, opt.step_count()};
  }
};

}  // namespace mg::test
