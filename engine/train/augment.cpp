#include "engine/train/augment.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <numbers>
#include <stdexcept>
#include <string>

#include "kernels/philox.h"
#include "kernels/simd_dispatch.h"

namespace mg {
namespace {

constexpr uint64_t kGainIndex = 0, kShiftIndex = 1, kNoiseIndex = 2;

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

// The noise is the loader's costliest work (one Philox block per two Gaussian pairs, a log,
// a square root and a sine/cosine pair per pair): scalar libm calls made it ~12 ns a sample,
// half a second per reference batch on one thread (bench_pipeline). So it runs in chunks, each
// stage a loop without branches or calls that the compiler vectorises: Philox over a chunk of
// blocks in structure-of-arrays form, then Box-Muller with its own log and sin/cos, accurate
// to a few float ulps (the test compares with float64 Box-Muller to 1e-5 of sigma).
// The Box-Muller loop is built twice on x86-64, for AVX2 (8 lanes) and the baseline (4), and
// picked at load time; neither uses FMA, so both give the same bits. It vectorises only when
// sqrt need not set errno: CMake compiles this file with -fno-math-errno (no value changes).
constexpr int kChunkBlocks = 64;  // Philox blocks per chunk: 256 words, 128 Gaussian pairs

// Words of the clip's Philox elements [4 first_block, 4 (first_block + kChunkBlocks)):
// words[4 b + lane] = element 4 (first_block + b) + lane, as philox_u32 returns them.
void philox_chunk(uint64_t key, uint64_t stream, uint64_t first_block, uint32_t* words) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u, kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  uint32_t c0[kChunkBlocks], c1[kChunkBlocks], c2[kChunkBlocks], c3[kChunkBlocks];
  for (int b = 0; b < kChunkBlocks; ++b) {
    const uint64_t block = first_block + static_cast<uint64_t>(b);
    c0[b] = static_cast<uint32_t>(block);
    c1[b] = static_cast<uint32_t>(block >> 32);
    c2[b] = static_cast<uint32_t>(stream);
    c3[b] = static_cast<uint32_t>(stream >> 32);
  }
  uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
  for (int round = 0; round < 10; ++round) {  // philox4x32_10's rounds, every block at once
    for (int b = 0; b < kChunkBlocks; ++b) {
      const uint64_t p0 = static_cast<uint64_t>(kM0) * c0[b], p1 = static_cast<uint64_t>(kM1) * c2[b];
      const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1[b] ^ k0, n2 = static_cast<uint32_t>(p0 >> 32) ^ c3[b] ^ k1;
      c1[b] = static_cast<uint32_t>(p1);
      c3[b] = static_cast<uint32_t>(p0);
      c0[b] = n0;
      c2[b] = n2;
    }
    k0 += kW0;
    k1 += kW1;
  }
  for (int b = 0; b < kChunkBlocks; ++b) {
    words[4 * b] = c0[b];
    words[4 * b + 1] = c1[b];
    words[4 * b + 2] = c2[b];
    words[4 * b + 3] = c3[b];
  }
}

// ln(u) for u in (0, 1]: u = m 2^e with m in [sqrt(1/2), sqrt(2)), ln m = 2 atanh(s),
// s = (m - 1) / (m + 1), |s| <= 0.172: the series to s^9 leaves 2e-9.
inline float log_unit(float u) {
  const uint32_t bits = std::bit_cast<uint32_t>(u);
  const uint32_t mant = (bits & 0x007fffffu) | 0x3f800000u;  // m in [1, 2)
  const bool high = mant > 0x3fb504f3u;                      // m > sqrt(2): use m / 2
  const float m = std::bit_cast<float>(high ? mant - 0x00800000u : mant);
  const float e = static_cast<float>(static_cast<int32_t>(bits >> 23) - 127 + (high ? 1 : 0));
  const float s = (m - 1.0f) / (m + 1.0f), s2 = s * s;
  const float series = 1.0f + s2 * (1.0f / 3 + s2 * (1.0f / 5 + s2 * (1.0f / 7 + s2 * (1.0f / 9))));
  return e * std::numbers::ln2_v<float> + 2.0f * s * series;
}

// Box-Muller on the pairs of a chunk's words: pair p takes words 2p (u1 in (0, 1], which
// keeps the log finite) and 2p + 1 (u2 in [0, 1)). The angle 2 pi u2 is a quadrant q (u2's
// top two bits) times pi / 2 plus a in [0, pi / 2), where sin and cos are Taylor polynomials to
// a^11 and a^12 (truncation below 6e-8). z[2p] = r cos, z[2p + 1] = r sin.
MG_AVX2_CLONE void gaussian_chunk(const uint32_t* words, float* z) {
  constexpr int kPairs = 2 * kChunkBlocks;
  constexpr float kScale = 1.0f / 16777216.0f, kAngle = std::numbers::pi_v<float> / 2 / 4194304.0f;
  float zc[kPairs], zs[kPairs];
  for (int p = 0; p < kPairs; ++p) {
    const float u1 = static_cast<float>((words[2 * p] >> 8) + 1) * kScale;
    const float r = std::sqrt(-2.0f * log_unit(u1));
    const uint32_t k = words[2 * p + 1] >> 8;  // 24 bits: 2 of quadrant, 22 of angle within it
    const uint32_t q = k >> 22;
    const float a = static_cast<float>(static_cast<int32_t>(k & 0x3fffffu)) * kAngle, a2 = a * a;
    const float sn =
        a * (1 + a2 * (-1.0f / 6 + a2 * (1.0f / 120 + a2 * (-1.0f / 5040 + a2 * (1.0f / 362880 + a2 * (-1.0f / 39916800))))));
    const float cs = 1 + a2 * (-0.5f + a2 * (1.0f / 24 + a2 * (-1.0f / 720 + a2 * (1.0f / 40320 + a2 * (-1.0f / 3628800 +
                                                                                                      a2 * (1.0f / 479001600))))));
    // (cos, sin) of q pi / 2 + a: q 0 (c, s), 1 (-s, c), 2 (-c, -s), 3 (s, -c).
    const bool odd = (q & 1) != 0;
    const float c = odd ? sn : cs, s = odd ? cs : sn;
    zc[p] = r * (((q + 1) & 2) != 0 ? -c : c);
    zs[p] = r * ((q & 2) != 0 ? -s : s);
  }
  for (int p = 0; p < kPairs; ++p) {
    z[2 * p] = zc[p];
    z[2 * p + 1] = zs[p];
  }
}

// Eight running sums instead of one: a single chain of dependent double additions cost about
// 2 ns a sample, as much as the noise itself.
double sum_of_squares(const float* x, int64_t S) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= S; i += 8)
    for (int k = 0; k < 8; ++k) acc[k] += static_cast<double>(x[i + k]) * x[i + k];
  for (; i < S; ++i) acc[0] += static_cast<double>(x[i]) * x[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

// x[i] += sigma * z_i, z_i the Gaussian of sample i: pair j (samples 2j, 2j + 1) from the
// elements 2 + 2j and 3 + 2j. A chunk's elements [e0, e0 + 256) thus serve samples
// [e0 - 2, e0 + 254) (the first chunk's first pair is the gain and shift words: unused).
void add_noise(float* x, int64_t S, float sigma, uint64_t key, uint64_t stream) {
  constexpr int64_t kWords = 4 * kChunkBlocks;
  alignas(64) uint32_t words[kWords];
  alignas(64) float z[kWords];
  for (uint64_t first = 0;; first += kChunkBlocks) {
    const int64_t base = static_cast<int64_t>(4 * first) - static_cast<int64_t>(kNoiseIndex);  // sample of z[0]
    if (base >= S) break;
    philox_chunk(key, stream, first, words);
    gaussian_chunk(words, z);
    const int64_t i0 = std::max<int64_t>(0, base), i1 = std::min<int64_t>(S, base + kWords);
    for (int64_t i = i0; i < i1; ++i) x[i] += sigma * z[i - base];
  }
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
    const double power = sum_of_squares(x, S);
    const auto sigma = static_cast<float>(std::sqrt(power / static_cast<double>(S)) * std::pow(10.0, -cfg.noise_snr_db / 20));
    if (sigma > 0) add_noise(x, S, sigma, seed ^ kAugmentKey, stream_of(step, clip));
  }
  if (d.shift != 0) {
    // x'[i] = x[(i - k) mod S]: the element at (S - k) mod S becomes the first.
    const int64_t k = ((d.shift % S) + S) % S;
    std::rotate(x, x + (S - k) % S, x + S);
  }
}

}  // namespace mg
