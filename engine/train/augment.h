// Waveform augmentation of one training clip, in place, before the mel front end:
//   1. gain:  x *= 10^(g / 20), g uniform in [-gain_db, +gain_db)             (gain_db > 0)
//   2. noise: x += n, n white Gaussian with sigma = rms(x) * 10^(-noise_snr_db / 20), rms
//             taken after the gain, so the SNR is noise_snr_db whatever the gain  (snr > 0;
//             a silent clip gets no noise: its SNR is undefined)
//   3. shift: circular rotation by k samples, x'[i] = x[(i - k) mod S], k uniform in the
//             integers [-m, m], m = min(round(shift_seconds * sample_rate), S - 1)  (m > 0)
// A zero setting turns its step off and draws nothing.
//
// Randomness. Every draw is Philox (kernels/philox.h) with key = seed ^ kAugmentKey (so the
// augmentation never shares a stream with the run's other uses of the same seed) and stream =
// (step << 32) | clip, one stream per clip per step; index 0 is the gain, index 1 the shift,
// indices 2 + 2j and 3 + 2j the uniforms of noise pair j (Box-Muller, samples 2j and 2j + 1).
// A clip's result is therefore a pure function of (seed, step, clip, its samples): the same on
// any thread, in any order, on resume.
#pragma once
#include <cstdint>

#include "engine/config.h"

namespace mg {

inline constexpr uint64_t kAugmentKey = 0x6175676d656e74ull;  // "augment"

// The random choices for one clip (what augment_clip applies; for logs and tests).
struct AugmentDraw {
  double gain_db = 0;   // 0 when gain is off
  int64_t shift = 0;    // k above; 0 when the shift is off
};

bool augment_enabled(const AugmentConfig& cfg);

// `step` < 2^32 and `clip` < 2^32 (throws std::invalid_argument otherwise); S >= 1.
AugmentDraw augment_draw(const AugmentConfig& cfg, int sample_rate, int64_t S, uint64_t seed, uint64_t step,
                         uint64_t clip);

// x: [S] samples of clip `clip` of training step `step`. Reentrant and allocation-free: the
// loader threads may augment different clips concurrently.
void augment_clip(float* x, int64_t S, const AugmentConfig& cfg, int sample_rate, uint64_t seed, uint64_t step,
                  uint64_t clip);

}  // namespace mg
