// The model's shapes, derived from the config and a batch size before any memory is touched:
//
//   audio   [B, S]                      S = clip_samples
//   mel     [B, n_mels, F]              F = 1 + S / hop
//   stage i: conv_i [B, C_i, Tc_i]      Tc_i = T_{i-1} + pad - K + 1   (T_0 = F, C_0 = n_mels)
//            relu in place
//            pool_i [B, C_i, Tc_i / P]  (every stage but the last)
//   mean    [B, C_last]
//   linear  [B, E]
//   emb     [B, E]                      L2-normalised
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
  int64_t samples = 0;  // S
  int frames = 0;       // F
  int n_mels = 0;
  std::vector<StagePlan> stages;
  int embedding = 0;

  int64_t param_count() const;
  // Human-readable table: every layer with its output shape and parameter count.
  std::string describe(const Config& c) const;
};

// Throws ConfigError on shapes that cannot work (clip too short: names the shortest clip).
ModelPlan make_model_plan(const Config& c, int batch);

// The shortest clip, in samples, for which every stage has at least one output step.
int64_t min_clip_samples(const Config& c);

}  // namespace mg
