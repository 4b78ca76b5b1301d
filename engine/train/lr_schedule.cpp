#include "engine/train/lr_schedule.h"

#include <cmath>
#include <numbers>
#include <stdexcept>
#include <string>

namespace mg {

LrSchedulePlan make_lr_schedule(const Config& c, int64_t total_steps) {
  if (total_steps < 1)
    throw ConfigError("the run has " + std::to_string(total_steps) +
                      " steps: set train.steps (or train.epochs) so that it has at least one");
  if (c.train.warmup_steps > total_steps)
    throw ConfigError("train.warmup_steps = " + std::to_string(c.train.warmup_steps) +
                      " is longer than the run (" + std::to_string(total_steps) +
                      " steps): the learning rate would never reach optim.lr; lower it (0 = no warm-up)");
  LrSchedulePlan p;
  p.lr = c.optim.adam.lr;
  p.warmup_steps = c.train.warmup_steps;
  p.total_steps = total_steps;
  p.kind = c.train.lr_schedule;
  p.min_lr_ratio = c.train.min_lr_ratio;
  validate(p);
  return p;
}

void validate(const LrSchedulePlan& p) {
  if (!(p.lr > 0) || !std::isfinite(p.lr))
    throw std::invalid_argument("lr schedule: lr must be finite and > 0 (got " + std::to_string(p.lr) + ")");
  if (p.total_steps < 1)
    throw std::invalid_argument("lr schedule: total_steps must be >= 1 (got " + std::to_string(p.total_steps) + ")");
  if (p.warmup_steps < 0 || p.warmup_steps > p.total_steps)
    throw std::invalid_argument("lr schedule: warmup_steps must be in [0, total_steps = " +
                                std::to_string(p.total_steps) + "] (got " + std::to_string(p.warmup_steps) + ")");
  if (!(p.min_lr_ratio >= 0 && p.min_lr_ratio <= 1))
    throw std::invalid_argument("lr schedule: min_lr_ratio must be in [0, 1] (got " +
                                std::to_string(p.min_lr_ratio) + ")");
}

double lr_at(const LrSchedulePlan& p, int64_t step) {
  if (step < 1) throw std::invalid_argument("lr schedule: steps are 1-based (got step " + std::to_string(step) + ")");
  const int64_t W = p.warmup_steps, T = p.total_steps;
  if (step <= W) return p.lr * static_cast<double>(step) / static_cast<double>(W);
  if (p.kind == LrSchedule::Constant) return p.lr;
  // W < step here, so T - W >= 1 whenever step <= T; past T the decay stays at its floor.
  if (step >= T) return p.lr * p.min_lr_ratio;
  const double progress = static_cast<double>(step - W) / static_cast<double>(T - W);
  const double r = p.min_lr_ratio;
  return p.lr * (r + (1 - r) * 0.5 * (1 + std::cos(std::numbers::pi * progress)));
}

}  // namespace mg
