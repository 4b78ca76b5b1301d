#include "kernels/fft_cpu.h"

#include <cmath>
#include <cstddef>
#include <numbers>
#include <utility>

namespace mg {

namespace {

// One pass of length len and stride s: for p < len/4, the four legs x[(p + k len/4) s + q]
// (q < s) combine into y[(4p + k) s + q]. Each leg is s * kFftLanes contiguous floats.
MG_SIMD_CLONES void radix4_pass(int len, int s, const float* tw, const float* __restrict xr,
                                const float* __restrict xi, float* __restrict yr, float* __restrict yi) {
  const int m = len / 4;
  const size_t run = static_cast<size_t>(s) * kFftLanes;
  const size_t leg = static_cast<size_t>(m) * run;
  for (int p = 0; p < m; ++p) {
    const float w1r = tw[6 * p], w1i = tw[6 * p + 1], w2r = tw[6 * p + 2], w2i = tw[6 * p + 3];
    const float w3r = tw[6 * p + 4], w3i = tw[6 * p + 5];
    const size_t in0 = static_cast<size_t>(p) * run;
    const size_t out0 = static_cast<size_t>(4 * p) * run;
    const float *ar = xr + in0, *ai = xi + in0, *br = ar + leg, *bi = ai + leg;
    const float *cr = br + leg, *ci = bi + leg, *dr = cr + leg, *di = ci + leg;
    float *y0r = yr + out0, *y0i = yi + out0, *y1r = y0r + run, *y1i = y0i + run;
    float *y2r = y1r + run, *y2i = y1i + run, *y3r = y2r + run, *y3i = y2i + run;
    // The legs never overlap, but the compiler cannot prove it for a runtime stride.
#pragma omp simd
    for (size_t t = 0; t < run; ++t) {
      const float apcr = ar[t] + cr[t], apci = ai[t] + ci[t];
      const float amcr = ar[t] - cr[t], amci = ai[t] - ci[t];
      const float bpdr = br[t] + dr[t], bpdi = bi[t] + di[t];
      const float jbmdr = di[t] - bi[t], jbmdi = br[t] - dr[t];  // i * (b - d)
      y0r[t] = apcr + bpdr;
      y0i[t] = apci + bpdi;
      const float u1r = amcr - jbmdr, u1i = amci - jbmdi;
      y1r[t] = w1r * u1r - w1i * u1i;
      y1i[t] = w1r * u1i + w1i * u1r;
      const float u2r = apcr - bpdr, u2i = apci - bpdi;
      y2r[t] = w2r * u2r - w2i * u2i;
      y2i[t] = w2r * u2i + w2i * u2r;
      const float u3r = amcr + jbmdr, u3i = amci + jbmdi;
      y3r[t] = w3r * u3r - w3i * u3i;
      y3i[t] = w3r * u3i + w3i * u3r;
    }
  }
}

MG_SIMD_CLONES void radix2_pass(int s, const float* __restrict xr, const float* __restrict xi,
                                float* __restrict yr, float* __restrict yi) {
  const size_t run = static_cast<size_t>(s) * kFftLanes;
#pragma omp simd
  for (size_t t = 0; t < run; ++t) {
    yr[t] = xr[t] + xr[t + run];
    yi[t] = xi[t] + xi[t + run];
    yr[t + run] = xr[t] - xr[t + run];
    yi[t + run] = xi[t] - xi[t + run];
  }
}

}  // namespace

LaneFft::LaneFft(int n) : n_(n) {
  for (int len = n; len >= 4; len /= 4) {
    for (int p = 0; p < len / 4; ++p) {
      for (int r = 1; r <= 3; ++r) {
        // Each twiddle from its own angle in double: no error build-up from recurrences.
        const double a = -2.0 * std::numbers::pi * static_cast<double>(r * p) / static_cast<double>(len);
        tw_.push_back(static_cast<float>(std::cos(a)));
        tw_.push_back(static_cast<float>(std::sin(a)));
      }
    }
  }
}

bool LaneFft::run(float* xr, float* xi, float* yr, float* yi) const {
  bool in_y = false;
  const float* tw = tw_.data();
  int s = 1;
  int len = n_;
  for (; len >= 4; len /= 4, s *= 4) {
    radix4_pass(len, s, tw, xr, xi, yr, yi);
    tw += 6 * (len / 4);
    std::swap(xr, yr);
    std::swap(xi, yi);
    in_y = !in_y;
  }
  if (len == 2) {
    radix2_pass(s, xr, xi, yr, yi);
    in_y = !in_y;
  }
  return in_y;
}

}  // namespace mg
