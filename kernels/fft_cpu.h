// Batched complex FFT of the CPU mel front end (kernels/mel_cpu.cpp).
//
// kissfft (a portable scalar FFT) costs ~5.5 us per 1024-point real transform here, more than
// torchaudio's whole per-frame cost. For power-of-two n_fft the frames are instead transformed
// kFftLanes at a time with the lanes interleaved (element j of lane l at
// [j * kFftLanes + l]), so every butterfly is a loop over contiguous floats with one scalar
// twiddle, which `omp simd` turns into SIMD code. Other n_fft fall back to kissfft, one frame
// at a time.
//
// The build targets baseline x86-64 (SSE2); the hot loops are also compiled for x86-64-v3
// (AVX2, FMA) and picked at load time by the CPU they run on (GCC function multiversioning).
#pragma once
#include <vector>

#include "kernels/simd_dispatch.h"

namespace mg {

// Signals transformed together, one per SIMD lane.
constexpr int kFftLanes = 8;

// Complex FFT of length N = 2^k on kFftLanes signals: Stockham autosort (no bit-reversal
// pass), radix 4, plus a final radix-2 pass when k is odd. Forward transform,
// exp(-2 pi i jk / N). Lane l of element j lives at [j * kFftLanes + l].
class LaneFft {
 public:
  explicit LaneFft(int n);
  // x (re, im) is the input and is overwritten; y is scratch of the same size. Returns true
  // when the result ended in y, false when in x.
  bool run(float* xr, float* xi, float* yr, float* yi) const;

 private:
  int n_;
  std::vector<float> tw_;  // per radix-4 pass: [len / 4][w1, w2, w3 as (re, im)]
};

}  // namespace mg
