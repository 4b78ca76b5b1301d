#include "engine/demo/demo_config.h"

#include <algorithm>

namespace mg::demo {

Config demo_run_config(double clip_seconds, int steps, uint64_t seed) {
  Config c = default_config();
  c.audio.sample_rate = 16000;
  c.mel.sample_rate = 16000;
  c.audio.clip_seconds = 3.0;
  c.audio.excerpt = Excerpt::Start;
  c.audio.excerpt_seconds = clip_seconds;
  c.mel.n_fft = 512;
  c.mel.hop = 256;
  c.mel.n_mels = 64;
  c.model.channels = {64, 64, 64};
  c.model.embedding = 64;
  c.model.pooling = GlobalPool::MeanMax;
  c.optim.adam.lr = 1e-3;
  c.train.neg_hops = 2;
  c.train.batch_triplets = 24;
  c.train.steps = steps;
  c.train.warmup_steps = std::min(20, steps);
  c.train.validate_every = std::max(1, steps / 3);
  c.train.checkpoint_every = std::max(1, steps / 3);
  c.train.seed = seed;
  c.train.loader_threads = 1;
  c.augment.gain_db = 3.0;
  c.data.edges = "collection/edges.csv";
  c.data.catalog = "collection/catalog.csv";
  c.data.run_dir = "run";
  c.data.val_items = 0.2;
  c.data.val_edges = 0.1;
  c.data.recall_k = 10;
  validate_config(c);
  return c;
}

}  // namespace mg::demo
