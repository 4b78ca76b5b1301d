// LR schedule: exact values at the phase boundaries, the closed form in between (recomputed
// here in double), monotonicity, the constant variant and the refusals.
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <stdexcept>

#include "engine/train/lr_schedule.h"

namespace mg {
namespace {

LrSchedulePlan plan(double lr, int64_t W, int64_t T, double r, LrSchedule kind = LrSchedule::Cosine) {
  LrSchedulePlan p;
  p.lr = lr;
  p.warmup_steps = W;
  p.total_steps = T;
  p.min_lr_ratio = r;
  p.kind = kind;
  return p;
}

TEST(LrSchedule, WarmupBoundaries) {
  const LrSchedulePlan p = plan(3e-3, 10, 100, 0.05);
  EXPECT_DOUBLE_EQ(lr_at(p, 1), 3e-3 / 10);
  EXPECT_DOUBLE_EQ(lr_at(p, 5), 3e-3 * 5 / 10);
  EXPECT_DOUBLE_EQ(lr_at(p, 10), 3e-3);  // the peak is reached on the last warm-up step
}

TEST(LrSchedule, CosineBoundariesAndMidpoint) {
  const double lr = 3e-3, r = 0.05;
  const LrSchedulePlan p = plan(lr, 10, 110, r);
  // First decay step: t = 1 of T - W = 100.
  EXPECT_DOUBLE_EQ(lr_at(p, 11), lr * (r + (1 - r) * 0.5 * (1 + std::cos(std::numbers::pi / 100))));
  // Halfway through the decay the rate is halfway between lr and r * lr.
  EXPECT_DOUBLE_EQ(lr_at(p, 60), lr * (r + (1 - r) * 0.5));
  EXPECT_DOUBLE_EQ(lr_at(p, 110), r * lr);  // exactly the floor on the last step
  EXPECT_DOUBLE_EQ(lr_at(p, 111), r * lr);  // and after it
  EXPECT_DOUBLE_EQ(lr_at(p, 5000), r * lr);
}

TEST(LrSchedule, MonotoneUpThenDown) {
  const LrSchedulePlan p = plan(1e-3, 37, 1000, 0.1);
  for (int64_t s = 2; s <= 37; ++s) EXPECT_GT(lr_at(p, s), lr_at(p, s - 1)) << "step " << s;
  for (int64_t s = 38; s <= 1000; ++s) EXPECT_LT(lr_at(p, s), lr_at(p, s - 1)) << "step " << s;
  for (int64_t s = 1; s <= 1000; ++s) {
    EXPECT_GE(lr_at(p, s), s <= 37 ? 1e-3 / 37 : 0.1 * 1e-3 * (1 - 1e-15)) << "step " << s;
    EXPECT_LE(lr_at(p, s), 1e-3) << "step " << s;
  }
}

TEST(LrSchedule, NoWarmupStartsDecayingAtStepOne) {
  const LrSchedulePlan p = plan(1e-3, 0, 4, 0.0);
  // t = s / 4: cos(pi/4), cos(pi/2) = 0, cos(3pi/4), cos(pi) = -1.
  EXPECT_DOUBLE_EQ(lr_at(p, 1), 1e-3 * 0.5 * (1 + std::sqrt(0.5)));
  EXPECT_NEAR(lr_at(p, 2), 0.5e-3, 1e-18);
  EXPECT_DOUBLE_EQ(lr_at(p, 3), 1e-3 * 0.5 * (1 - std::sqrt(0.5)));
  EXPECT_EQ(lr_at(p, 4), 0.0);
}

TEST(LrSchedule, Constant) {
  const LrSchedulePlan p = plan(2e-3, 4, 50, 0.3, LrSchedule::Constant);
  EXPECT_DOUBLE_EQ(lr_at(p, 1), 0.5e-3);
  EXPECT_DOUBLE_EQ(lr_at(p, 4), 2e-3);
  for (int64_t s = 5; s <= 60; ++s) EXPECT_EQ(lr_at(p, s), 2e-3) << "step " << s;  // min_lr_ratio unused
}

TEST(LrSchedule, WarmupAsLongAsTheRun) {
  const LrSchedulePlan p = plan(1e-3, 8, 8, 0.0);
  EXPECT_DOUBLE_EQ(lr_at(p, 8), 1e-3);  // no decay phase: the last step is the peak
}

TEST(LrSchedule, FromConfig) {
  Config c = default_config();
  c.optim.adam.lr = 5e-4;
  c.train.warmup_steps = 20;
  c.train.min_lr_ratio = 0.1;
  const LrSchedulePlan p = make_lr_schedule(c, 300);
  EXPECT_EQ(p.lr, 5e-4);
  EXPECT_EQ(p.warmup_steps, 20);
  EXPECT_EQ(p.total_steps, 300);
  EXPECT_EQ(p.kind, LrSchedule::Cosine);
  EXPECT_DOUBLE_EQ(lr_at(p, 300), 5e-5);
}

TEST(LrSchedule, Refusals) {
  Config c = default_config();  // warmup_steps = 100
  try {
    make_lr_schedule(c, 50);
    FAIL() << "a warm-up longer than the run was accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("train.warmup_steps = 100"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("50 steps"), std::string::npos) << e.what();
  }
  EXPECT_THROW(make_lr_schedule(c, 0), ConfigError);
  const LrSchedulePlan p = plan(1e-3, 2, 10, 0.0);
  EXPECT_THROW(lr_at(p, 0), std::invalid_argument);
  EXPECT_THROW(validate(plan(0.0, 2, 10, 0.0)), std::invalid_argument);
  EXPECT_THROW(validate(plan(1e-3, -1, 10, 0.0)), std::invalid_argument);
  EXPECT_THROW(validate(plan(1e-3, 2, 10, 1.5)), std::invalid_argument);
}

}  // namespace
}  // namespace mg
