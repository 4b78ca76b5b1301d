// Learning rate per optimizer step: linear warm-up, then cosine decay (or constant).
//
// For 1-based steps s = 1..T (T = total steps of the run), base rate lr, warm-up W steps and
// floor r = min_lr_ratio:
//   s <= W:  lr * s / W                              (lr / W at step 1, lr at step W)
//   s >  W:  cosine:   lr * (r + (1 - r) * (1 + cos(pi * (s - W) / (T - W))) / 2)
//            constant: lr
// so the cosine phase ends at exactly r * lr on the last step T, and W = 0 starts the decay at
// step 1. Steps past T keep r * lr (cosine) or lr (constant).
//
// PyTorch equivalent, with scheduler.step() called after every optimizer.step():
//   warm-up:  LambdaLR(opt, lambda e: (e + 1) / W) for the first W steps (e = s - 1);
//   decay:    CosineAnnealingLR(opt, T_max = T - W, eta_min = r * lr) stepped once before the
//             first decay step, i.e. torch's eta_t with t = s - W.
// SequentialLR([warm-up, cosine], milestones=[W]) restarts the cosine at t = 0, so it uses lr
// once more at step W + 1 and is one step behind this schedule (it never reaches eta_min
// within T steps); tests/reference/ref_lr_schedule.py checks the formula above against torch.
#pragma once
#include <cstdint>

#include "engine/config.h"

namespace mg {

struct LrSchedulePlan {
  double lr = 1e-3;           // base (peak) learning rate
  int64_t warmup_steps = 0;   // W >= 0
  int64_t total_steps = 1;    // T >= 1, T >= W
  LrSchedule kind = LrSchedule::Cosine;
  double min_lr_ratio = 0.0;  // r in [0, 1]
};

// The plan of a run: lr from optim.adam.lr, the rest from [train]; total_steps is what the
// trainer runs (train.steps, or epochs x steps per epoch when train.epochs > 0). Throws
// ConfigError when train.warmup_steps > total_steps (the warm-up would never finish).
LrSchedulePlan make_lr_schedule(const Config& c, int64_t total_steps);

// Throws std::invalid_argument for an inconsistent plan (see the field comments).
void validate(const LrSchedulePlan& p);

// The learning rate of 1-based step `step` (>= 1; throws std::invalid_argument otherwise).
double lr_at(const LrSchedulePlan& p, int64_t step);

}  // namespace mg
