// The model's shapes, derived from the config and a batch size before any memory is touched:
//
//   audio   [B, S]                      S = clip_samples
//   mel     [B, n_mels, F]              F = 1 + S / hop
//   (band)  [B, n_mels, F]              model.input_norm = band: standardised per band
//   stage i: conv_i [B, C_i, Tc_i]      Tc_i = T_{i-1} + pad - K + 1   (T_0 = F, C_0 = n_mels)
//            relu in place
//            pool_i [B, C_i, Tc_i / P]  (every stage but the last)
//   (the tensors from pooled on have head_batch >= B rows: a data-parallel step gathers every
//   rank's pooled rows there and runs the head over the global batch)
//   pooled  [B, D]                      global pooling over time, per clip row [mean | max | l2]:
//                                       k = 1 (mean), 2 (mean_max), 3 (mean_max_l2); D = k C_last,
//                                       or with model.pool_stages = all one such block per stage,
//                                       in stage order: D = k (C_0 + C_1 + ...)
//   norm    [B, D]                      model.head_norm = batch: batch normalisation per feature
//   dropout [B, D]                      training only, model.dropout > 0
//   linear  [B, E]                      fan-in D
//   emb     [B, E]                      L2-normalised
//   features [B, D]                     model.embedding_from = features: the L2-normalised
//                                       pooled (and normalised) features, the item embedding
//
// Building a plan validates the shapes: a clip too short for the stack is an error that names
// the shortest clip (in samples and seconds) that works.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/config.h"
#include "kernels/conv1d_cpu.h"

namespace mg {

struct StagePlan {
  Conv1dDims conv;   // B, Cin, Cout, Tin, K, padding
  int t_conv = 0;    // conv output length
  bool pool = false;
  int t_out = 0;     // after pooling (== t_conv when no pool)
};

struct ModelPlan {
  int batch = 0;
  // Rows of the head's tensors (pooled .. features): batch, or the global batch of a
  // data-parallel run, whose head runs over every rank's rows (engine/train_step.h).
  int head_batch = 0;
  int64_t samples = 0;  // S
  int frames = 0;       // F
  int n_mels = 0;
  std::vector<StagePlan> stages;
  GlobalPool pooling = GlobalPool::Mean;
  bool input_norm = false;  // per-band standardisation of the log-mel
  bool head_norm = false;  // batch normalisation of the pooled features
  double dropout = 0;  // probability before the linear layer (training only)
  int embedding = 0;

  bool pool_all_stages = false;  // model.pool_stages = all

  int channels_last() const { return stages.empty() ? 0 : stages.back().conv.Cout; }
  int pooled_features() const { return mg::pooled_features(pooling); }
  // The stages the global pooling reads: [first_pooled_stage(), stages.size()).
  size_t first_pooled_stage() const { return pool_all_stages || stages.empty() ? 0 : stages.size() - 1; }
  // Where stage i's block [mean | max | l2] starts in a pooled row (i >= first_pooled_stage()).
  int pooled_offset(size_t i) const;
  int head_width() const { return pooled_offset(stages.size()); }  // D: the linear layer's fan-in
  bool features_out = false;  // model.embedding_from = features
  int output_dim() const { return features_out ? head_width() : embedding; }  // an item embedding's width

  int64_t param_count() const;
  // Human-readable table: every layer with its output shape and parameter count.
  std::string describe(const Config& c) const;
};

// Throws ConfigError on shapes that cannot work (clip too short: names the shortest clip).
ModelPlan make_model_plan(const Config& c, int batch);

// The width of the model's item embeddings (ModelPlan::output_dim without building a plan).
int embedding_dim(const Config& c);

// The width D of the pooled features, the head's fan-in (ModelPlan::head_width without
// building a plan).
int pooled_width(const Config& c);

// The shortest clip, in samples, for which every stage has at least one output step.
int64_t min_clip_samples(const Config& c);

}  // namespace mg
