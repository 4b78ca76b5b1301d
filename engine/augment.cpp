#include "engine/augment.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <stdexcept>
#include <string>

#include "kernels/philox.h"

namespace mg {
namespace {

constexpr uint64_t kGainIndex = 0, kShiftIndex = 1, kNoiseIndex = 2;

// Philox block `block` of this clip's stream: elements 4 * block .. 4 * block + 3, the same
// words philox_u32(key, stream, 4 * block + lane) returns, computed once for all four lanes.
Philox4x32 block_of(uint64_t key, uint64_t stream, uint64_t block) {
  const Philox4x32 ctr{{static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32),
                        static_cast<uint32_t>(stream), static_cast<uint32_t>(stream >> 32)}};
  return philox4x32_10(ctr, static_cast<uint32_t>(key), static_cast<uint32_t>(key >> 32));
}

uint64_t stream_of(uint64_t step, uint64_t clip) {
  if (step >> 32 || clip >> 32)
    throw std::invalid_argument("augment: step (" + std::to_string(step) + ") and clip index (" +
                                std::to_string(clip) + ") must each be < 2^32");
  return step << 32 | clip;
}

int64_t max_shift(const AugmentConfig& cfg, int sample_rate, int64_t S) {
  const auto m = static_cast<int64_t>(std::llround(cfg.shift_seconds * sample_rate));
  return std::clamp<int64_t>(m, 0, S - 1);
}

// Box-Muller on two words: u1 in (0, 1] keeps the log finite, u2 in [0, 1).
void gaussian_pair(uint32_t w1, uint32_t w2, float* z0, float* z1) {
  constexpr float kScale = 1.0f / 16777216.0f;
  const float u1 = static_cast<float>((w1 >> 8) + 1) * kScale;
  const float u2 = static_cast<float>(w2 >> 8) * kScale;
  const float r = std::sqrt(-2.0f * std::log(u1));
  const float theta = 2.0f * std::numbers::pi_v<float> * u2;
  *z0 = r * std::cos(theta);
  *z1 = r * std::sin(theta);
}

}  // namespace

bool augment_enabled(const AugmentConfig& cfg) {
  return cfg.gain_db > 0 || cfg.noise_snr_db > 0 || cfg.shift_seconds > 0;
}

AugmentDraw augment_draw(const AugmentConfig& cfg, int sample_rate, int64_t S, uint64_t seed, uint64_t step,
                         uint64_t clip) {
  if (S < 1) throw std::invalid_argument("augment: a clip needs at least one sample (got " + std::to_string(S) + ")");
  const uint64_t key = seed ^ kAugmentKey, stream = stream_of(step, clip);
  AugmentDraw d;
  if (cfg.gain_db > 0) {
    const double u = static_cast<double>(philox_u32(key, stream, kGainIndex) >> 8) / 16777216.0;
    d.gain_db = cfg.gain_db * (2 * u - 1);
  }
  const int64_t m = max_shift(cfg, sample_rate, S);
  if (m > 0) {
    // floor(u * (2m + 1)) with u = word / 2^32: uniform over 2m + 1 values up to a bias of
    // (2m + 1) / 2^32.
    const auto span = static_cast<uint64_t>(2 * m + 1);
    d.shift = static_cast<int64_t>((static_cast<uint64_t>(philox_u32(key, stream, kShiftIndex)) * span) >> 32) - m;
  }
  return d;
}

void augment_clip(float* x, int64_t S, const AugmentConfig& cfg, int sample_rate, uint64_t seed, uint64_t step,
                  uint64_t clip) {
  if (!augment_enabled(cfg)) return;
  const AugmentDraw d = augment_draw(cfg, sample_rate, S, seed, step, clip);
  if (d.gain_db != 0) {
    const auto g = static_cast<float>(std::pow(10.0, d.gain_db / 20));
    for (int64_t i = 0; i < S; ++i) x[i] *= g;
  }
  if (cfg.noise_snr_db > 0) {
    double power = 0;
    for (int64_t i = 0; i < S; ++i) power += static_cast<double>(x[i]) * x[i];
    const auto sigma = static_cast<float>(std::sqrt(power / static_cast<double>(S)) * std::pow(10.0, -cfg.noise_snr_db / 20));
    if (sigma > 0) {
      const uint64_t key = seed ^ kAugmentKey, stream = stream_of(step, clip);
      // Pair j takes elements 2 + 2j and 3 + 2j: lanes 2-3 (j even) or 0-1 (j odd) of block
      // (j + 1) / 2, so each Philox block is computed once for its two pairs.
      const int64_t pairs = (S + 1) / 2;
      for (int64_t j = 0; j < pairs;) {
        const uint64_t first = kNoiseIndex + 2 * static_cast<uint64_t>(j);
        const Philox4x32 b = block_of(key, stream, first >> 2);
        for (uint64_t lane = first & 3; lane < 4 && j < pairs; lane += 2, ++j) {
          float z0, z1;
          gaussian_pair(b.v[lane], b.v[lane + 1], &z0, &z1);
          x[2 * j] += sigma * z0;
          if (2 * j + 1 < S) x[2 * j + 1] += sigma * z1;
        }
      }
    }
  }
  if (d.shift != 0) {
    // x'[i] = x[(i - k) mod S]: the element at (S - k) mod S becomes the first.
    const int64_t k = ((d.shift % S) + S) % S;
    std::rotate(x, x + (S - k) % S, x + S);
  }
}

}  // namespace mg
