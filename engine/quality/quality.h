// `melgraph quality`: what a recipe learns, measured the way users meet it. For each seed:
//
//   train    run_training with data.holdout_by (whole groups, e.g. albums, never trained on)
//   export   the run's last checkpoint (a fixed schedule: the held-out items never choose the
//            checkpoint they are scored with) into an index of every catalog item, `crops` clips
//   eval     the held-out items as queries, ranked among all items of the index: recall@k,
//            nDCG@k, nDCG@wide_k, mAP@k, and the spread of the vectors
//   beside   the untrained model (the same config and seed, weights as initialised), the
//            centred mean-log-mel vector and chance, scored on the same queries and crops
//
// then means and standard deviations over the seeds. Every run keeps its directory
// (<out>/seed-<s>: the run, its index) and the seeds share one audio cache (<out>/cache).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/config.h"
#include "engine/embed/embedder.h"
#include "engine/retrieval_metrics.h"
#include "engine/train/trainer.h"

namespace mg::quality {

struct QualityOptions {
  Config recipe;                 // data.edges, data.catalog and data.holdout_by set; paths resolved
  std::vector<uint64_t> seeds = {0, 1, 2};
  std::string out_dir = "quality";
  int crops = embed::kDefaultCrops;  // clips per item in the index (export --crops)
  int k = 10, wide_k = 200;
  train::TrainOptions train;     // backend, threads, quiet
};

// The four ranking numbers of one embedding on the held-out queries.
struct Scores {
  double recall = 0, ndcg = 0, ndcg_wide = 0, map = 0;
};

struct SeedResult {
  uint64_t seed = 0;
  int64_t queries = 0;           // held-out items with a relevant item in the index
  int64_t held_out_groups = 0;
  std::string held_out;          // the held-out groups, comma-separated
  int64_t steps = 0;
  double train_seconds = 0;
  Scores trained, untrained, mel;
  double chance_recall = 0;
  SimilaritySpread spread_trained, spread_untrained;
};

struct QualityReport {
  std::string catalog, holdout_by;
  int k = 10, wide_k = 200, crops = embed::kDefaultCrops;
  int64_t items = 0;             // in the index
  std::vector<SeedResult> seeds;
  // The table: one row per embedding (mean +- sd over seeds), then one line per seed.
  std::string format() const;
  std::string json() const;
};

// Throws ConfigError / std::invalid_argument for a recipe that cannot run (no holdout_by, no
// seeds), and whatever training, export or evaluation throws.
QualityReport run_quality(const QualityOptions& options);

}  // namespace mg::quality
