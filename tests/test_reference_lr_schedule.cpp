// The LR schedule against PyTorch's LambdaLR warm-up + CosineAnnealingLR
// (tests/reference/ref_lr_schedule.py states the exact scheduler setup). torch's
// CosineAnnealingLR uses its recursive ("chainable") form, so it differs from our closed form
// by accumulated float64 rounding only: bound 1e-12 relative to the peak rate.
#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

#include "engine/train/lr_schedule.h"
#include "tests/reference_harness.h"

namespace mg {
namespace {

TEST(ReferenceLrSchedule, MatchesTorchSchedulers) {
  MG_REQUIRE_TORCH();
  // Warm-up + decay to 0; no warm-up with a floor; a one-step decay; warm-up only.
  const std::vector<LrSchedulePlan> plans = {
      {1e-3, 10, 200, LrSchedule::Cosine, 0.0},
      {3e-4, 0, 57, LrSchedule::Cosine, 0.1},
      {2e-3, 25, 26, LrSchedule::Cosine, 0.5},
      {1e-2, 7, 7, LrSchedule::Cosine, 0.0},
  };
  std::ostringstream cmd;
  cmd.precision(17);
  cmd << test::python_exe() << " " << test::reference_script("ref_lr_schedule.py");
  for (const LrSchedulePlan& p : plans) cmd << " " << p.lr << " " << p.warmup_steps << " " << p.total_steps << " " << p.min_lr_ratio;
  std::string out;
  ASSERT_EQ(test::run_command(cmd.str(), &out), 0) << cmd.str() << "\n" << out;

  std::istringstream lines(out);
  for (const LrSchedulePlan& p : plans) {
    std::string line;
    ASSERT_TRUE(std::getline(lines, line)) << "missing output line in:\n" << out;
    std::istringstream values(line);
    int64_t step = 0;
    for (double want; values >> want;) {
      ++step;
      EXPECT_NEAR(lr_at(p, step), want, 1e-12 * p.lr)
          << "W " << p.warmup_steps << " T " << p.total_steps << " step " << step;
    }
    EXPECT_EQ(step, p.total_steps) << "torch gave a different number of steps";
  }
}

}  // namespace
}  // namespace mg
