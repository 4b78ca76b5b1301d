// Waveform augmentation: reproducible and order/thread independent, gain within +-gain_db,
// noise at the configured SNR and white, shifts that are exact rotations, the documented
// Philox indices, and steps that do not disturb each other's draws.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numbers>
#include <stdexcept>
#include <thread>
#include <vector>

#include "engine/train/augment.h"
#include "kernels/philox.h"
#include "tests/test_support.h"

namespace mg {
namespace {

constexpr int kRate = 8000;

AugmentConfig cfg_of(double gain_db, double snr_db, double shift_seconds) {
  AugmentConfig c;
  c.gain_db = gain_db;
  c.noise_snr_db = snr_db;
  c.shift_seconds = shift_seconds;
  return c;
}

std::vector<float> augmented(std::vector<float> x, const AugmentConfig& c, uint64_t seed, uint64_t step,
                             uint64_t clip) {
  augment_clip(x.data(), static_cast<int64_t>(x.size()), c, kRate, seed, step, clip);
  return x;
}

TEST(Augment, OffLeavesTheClipUntouched) {
  const std::vector<float> x = test::random_audio(1, 4000, 1);
  EXPECT_FALSE(augment_enabled(AugmentConfig{}));
  EXPECT_EQ(augmented(x, AugmentConfig{}, 7, 1, 0), x);
}

TEST(Augment, ReproducibleAndIndependentOfThreadsAndOrder) {
  const AugmentConfig c = cfg_of(6, 15, 0.1);
  const int B = 16;
  const int64_t S = 8000;
  const std::vector<float> clips = test::random_audio(B, S, 2);
  // Sequential, clip 0..B-1.
  std::vector<float> seq = clips;
  for (int b = 0; b < B; ++b) augment_clip(seq.data() + b * S, S, c, kRate, 42, 9, static_cast<uint64_t>(b));
  // Four threads, each taking clips in reverse order.
  std::vector<float> par = clips;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int b = B - 1 - t; b >= 0; b -= 4)
        augment_clip(par.data() + b * S, S, c, kRate, 42, 9, static_cast<uint64_t>(b));
    });
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(seq, par);
  // Any change of seed, step or clip index changes the result.
  const std::vector<float> one(clips.begin(), clips.begin() + S);
  const std::vector<float> base = augmented(one, c, 42, 9, 0);
  EXPECT_EQ(base, std::vector<float>(seq.begin(), seq.begin() + S));
  EXPECT_NE(base, augmented(one, c, 43, 9, 0));
  EXPECT_NE(base, augmented(one, c, 42, 10, 0));
  EXPECT_NE(base, augmented(one, c, 42, 9, 1));
}

TEST(Augment, GainIsUniformWithinRange) {
  const AugmentConfig c = cfg_of(6, 0, 0);
  const int n = 2000;
  const std::vector<float> x = test::random_audio(1, 256, 3);
  double lo = 1e9, hi = -1e9, sum = 0;
  for (int i = 0; i < n; ++i) {
    const AugmentDraw d = augment_draw(c, kRate, 256, 5, 1, static_cast<uint64_t>(i));
    ASSERT_GE(d.gain_db, -6.0);
    ASSERT_LT(d.gain_db, 6.0);
    EXPECT_EQ(d.shift, 0);
    lo = std::min(lo, d.gain_db);
    hi = std::max(hi, d.gain_db);
    sum += d.gain_db;
    // The clip is scaled by exactly that gain (float32 product: 1 ulp).
    const std::vector<float> y = augmented(x, c, 5, 1, static_cast<uint64_t>(i));
    const double g = std::pow(10.0, d.gain_db / 20);
    for (size_t s = 0; s < x.size(); ++s)
      ASSERT_NEAR(y[s], g * x[s], 2e-7 * std::abs(g * x[s]) + 1e-30) << "clip " << i << " sample " << s;
  }
  // 2000 uniform draws on [-6, 6): the extremes come within 0.1 dB of the ends (probability of
  // missing one: (1 - 0.1/12)^2000 ~ 5e-8) and the mean is 0 within 5 standard errors.
  EXPECT_LT(lo, -5.9);
  EXPECT_GT(hi, 5.9);
  EXPECT_NEAR(sum / n, 0.0, 5 * 12 / std::sqrt(12.0 * n));
}

// The noise of one clip: y - g * x (shift off).
std::vector<double> noise_of(const std::vector<float>& x, const std::vector<float>& y, double g) {
  std::vector<double> n(x.size());
  for (size_t i = 0; i < x.size(); ++i) n[i] = static_cast<double>(y[i]) - g * x[i];
  return n;
}

TEST(Augment, NoiseHasTheConfiguredSnrAndIsWhiteGaussian) {
  // S = 80000 Gaussian samples: the measured noise power has a relative standard deviation of
  // sqrt(2 / S) = 0.5%, so 0.15 dB (3.5%) is 7 standard deviations; lag-1 correlation and mean
  // have standard errors 1 / sqrt(S), excess kurtosis sqrt(24 / S) = 0.017.
  const int64_t S = 80000;
  for (double snr : {3.0, 20.0, 40.0}) {
    for (uint64_t clip = 0; clip < 3; ++clip) {
      const AugmentConfig c = cfg_of(6, snr, 0);
      const std::vector<float> x = test::random_audio(1, S, static_cast<unsigned>(10 + clip));
      const std::vector<float> y = augmented(x, c, 11, 3, clip);
      const double g = std::pow(10.0, augment_draw(c, kRate, S, 11, 3, clip).gain_db / 20);
      const std::vector<double> n = noise_of(x, y, g);
      double ps = 0, pn = 0, mean = 0, lag1 = 0, m4 = 0;
      for (int64_t i = 0; i < S; ++i) {
        ps += g * x[static_cast<size_t>(i)] * g * x[static_cast<size_t>(i)];
        pn += n[static_cast<size_t>(i)] * n[static_cast<size_t>(i)];
        mean += n[static_cast<size_t>(i)];
        if (i > 0) lag1 += n[static_cast<size_t>(i)] * n[static_cast<size_t>(i - 1)];
        m4 += std::pow(n[static_cast<size_t>(i)], 4);
      }
      const double var = pn / S, sd = std::sqrt(var);
      EXPECT_NEAR(10 * std::log10(ps / pn), snr, 0.15) << "snr " << snr << " clip " << clip;
      EXPECT_NEAR(mean / S / sd, 0.0, 5 / std::sqrt(double(S))) << "snr " << snr;
      EXPECT_NEAR(lag1 / pn, 0.0, 5 / std::sqrt(double(S))) << "snr " << snr;
      EXPECT_NEAR(m4 / S / (var * var), 3.0, 5 * std::sqrt(24.0 / S)) << "snr " << snr;
    }
  }
}

TEST(Augment, NoiseUsesTheDocumentedPhiloxElements) {
  // Odd lengths (the last pair has one sample); 1001 samples span four of the noise loop's
  // chunks of 256 Philox words (engine/train/augment.cpp), so chunk edges are covered too, and 500
  // pairs reach every quadrant of the angle.
  for (const int64_t S : {int64_t{11}, int64_t{1001}}) {
    const AugmentConfig c = cfg_of(0, 10, 0);
    std::vector<float> x(static_cast<size_t>(S));
    for (int64_t i = 0; i < S; ++i) x[static_cast<size_t>(i)] = 0.1f * static_cast<float>(i % 5) - 0.15f;
    const uint64_t seed = 3, step = 77, clip = 5;
    const std::vector<float> y = augmented(x, c, seed, step, clip);
    double power = 0;
    for (float v : x) power += double(v) * v;
    const double sigma = std::sqrt(power / double(S)) * std::pow(10.0, -1.0 / 2);
    const uint64_t key = seed ^ kAugmentKey, stream = step << 32 | clip;
    for (int64_t i = 0; i < S; ++i) {
      const uint64_t j = static_cast<uint64_t>(i) / 2;
      const double u1 = ((philox_u32(key, stream, 2 + 2 * j) >> 8) + 1) / 16777216.0;
      const double u2 = (philox_u32(key, stream, 3 + 2 * j) >> 8) / 16777216.0;
      const double r = std::sqrt(-2 * std::log(u1)), th = 2 * std::numbers::pi * u2;
      const double z = i % 2 ? r * std::sin(th) : r * std::cos(th);
      // float32 Box-Muller (own log and sin/cos) and sum vs float64 here: 1e-5 of the noise scale.
      ASSERT_NEAR(y[static_cast<size_t>(i)], x[static_cast<size_t>(i)] + sigma * z, 1e-5 * sigma)
          << "S " << S << " sample " << i;
    }
  }
}

// The radius of Box-Muller is at most sqrt(-2 ln 2^-24) = 5.77 (u1 >= 2^-24): the noise's own
// log must not exceed it anywhere in a long clip, and 2^20 draws must reach 4 sigma (expected
// 66 of them; none with probability e^-66).
TEST(Augment, NoiseStaysWithinTheLargestRadius) {
  const int64_t S = 1 << 20;
  const AugmentConfig c = cfg_of(0, 20, 0);
  std::vector<float> x(static_cast<size_t>(S), 0.25f);
  const std::vector<float> y = augmented(x, c, 9, 1, 0);
  const double sigma = 0.25 * std::pow(10.0, -20.0 / 20);
  double zmax = 0;
  for (int64_t i = 0; i < S; ++i) zmax = std::max(zmax, std::abs((double(y[static_cast<size_t>(i)]) - 0.25) / sigma));
  EXPECT_LT(zmax, std::sqrt(2 * 24 * std::numbers::ln2) * (1 + 1e-4));
  EXPECT_GT(zmax, 4.0) << "2^20 Gaussian draws reach 4 sigma (a miss has probability ~ e^-66)";
}

TEST(Augment, SilentClipGetsNoNoise) {
  const std::vector<float> zeros(1000, 0.0f);
  EXPECT_EQ(augmented(zeros, cfg_of(3, 10, 0), 1, 1, 0), zeros);
}

TEST(Augment, ShiftIsARotationWithinRange) {
  const int64_t S = 1000;  // 0.125 s at 8 kHz; 0.025 s = 200 samples
  const AugmentConfig c = cfg_of(0, 0, 0.025);
  const std::vector<float> x = test::random_audio(1, S, 4);
  int64_t lo = S, hi = -S;
  for (uint64_t clip = 0; clip < 500; ++clip) {
    const int64_t k = augment_draw(c, kRate, S, 8, 2, clip).shift;
    ASSERT_LE(std::abs(k), 200) << "clip " << clip;
    lo = std::min(lo, k);
    hi = std::max(hi, k);
    const std::vector<float> y = augmented(x, c, 8, 2, clip);
    for (int64_t i = 0; i < S; ++i)
      ASSERT_EQ(y[static_cast<size_t>(i)], x[static_cast<size_t>(((i - k) % S + S) % S)]) << "clip " << clip << " i " << i;
  }
  // 500 draws over 401 values: both ends are approached within 20 (miss probability ~ 1e-11).
  EXPECT_LE(lo, -180);
  EXPECT_GE(hi, 180);
}

TEST(Augment, ShiftLongerThanTheClipIsCapped) {
  const AugmentConfig c = cfg_of(0, 0, 10.0);  // 80000 samples on a 100-sample clip
  for (uint64_t clip = 0; clip < 200; ++clip)
    ASSERT_LE(std::abs(augment_draw(c, kRate, 100, 1, 1, clip).shift), 99);
}

TEST(Augment, StepsDoNotDisturbEachOthersDraws) {
  // Turning the shift on only rotates what gain + noise produced (same gain, same noise).
  const int64_t S = 4000;
  const std::vector<float> x = test::random_audio(1, S, 6);
  const AugmentConfig all = cfg_of(4, 12, 0.1), no_shift = cfg_of(4, 12, 0);
  const int64_t k = augment_draw(all, kRate, S, 21, 4, 2).shift;
  ASSERT_NE(k, 0);
  EXPECT_EQ(augment_draw(all, kRate, S, 21, 4, 2).gain_db, augment_draw(no_shift, kRate, S, 21, 4, 2).gain_db);
  std::vector<float> want = augmented(x, no_shift, 21, 4, 2);
  const int64_t kk = (k % S + S) % S;
  std::rotate(want.begin(), want.begin() + (S - kk) % S, want.end());
  EXPECT_EQ(augmented(x, all, 21, 4, 2), want);
}

TEST(Augment, RefusesOutOfRangeCounters) {
  const AugmentConfig c = cfg_of(3, 0, 0);
  float x[4] = {0.1f, 0.2f, 0.3f, 0.4f};
  EXPECT_THROW(augment_clip(x, 4, c, kRate, 1, uint64_t{1} << 32, 0), std::invalid_argument);
  EXPECT_THROW(augment_clip(x, 4, c, kRate, 1, 0, uint64_t{1} << 32), std::invalid_argument);
  EXPECT_THROW(augment_draw(c, kRate, 0, 1, 0, 0), std::invalid_argument);
}

}  // namespace
}  // namespace mg
