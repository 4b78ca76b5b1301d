#include "kernels/bf16_cpu.h"

#include <cstddef>
#include <vector>

#include "kernels/linear_cpu.h"

namespace mg {

namespace {

std::vector<float> rounded(const float* x, int64_t n) {
  std::vector<float> r(x, x + n);
  round_bf16_cpu(r.data(), n);
  return r;
}

// db[c] += the sum of dy[b, c, :] over every b: from the float32 gradient, as the CUDA side's
// bias gradient reads it.
void add_bias_grad(const float* dy, float* db, int64_t B, int C, int64_t T) {
  for (int c = 0; c < C; ++c) {
    float s = 0;
    for (int64_t b = 0; b < B; ++b) {
      const float* r = dy + (b * C + c) * T;
      for (int64_t t = 0; t < T; ++t) s += r[t];
    }
    db[c] += s;
  }
}

}  // namespace

void round_bf16_cpu(float* x, int64_t n) {
#pragma omp parallel for schedule(static) if (n > (int64_t{1} << 16))
  for (int64_t i = 0; i < n; ++i) x[i] = round_bf16(x[i]);
}

void conv1d_forward_bf16_cpu(const float* x, const float* w, const float* b, float* y, const Conv1dDims& d) {
  const int64_t Tout = d.Tout(), ny = int64_t{d.B} * d.Cout * Tout;
  const auto xr = rounded(x, int64_t{d.B} * d.Cin * d.Tin), wr = rounded(w, int64_t{d.Cout} * d.Cin * d.K);
  const std::vector<float> no_bias(static_cast<size_t>(d.Cout), 0.0f);
  conv1d_forward_cpu(xr.data(), wr.data(), no_bias.data(), y, d);
#pragma omp parallel for schedule(static) if (ny > (int64_t{1} << 16))
  for (int64_t i = 0; i < ny; ++i) y[i] = round_bf16(y[i]) + b[(i / Tout) % d.Cout];
}

void conv1d_backward_bf16_cpu(const float* dy, const float* x, const float* w, float* dx, float* dw, float* db,
                              const Conv1dDims& d) {
  const int64_t Tout = d.Tout(), nx = int64_t{d.B} * d.Cin * d.Tin, nw = int64_t{d.Cout} * d.Cin * d.K;
  const auto dyr = rounded(dy, int64_t{d.B} * d.Cout * Tout), xr = rounded(x, nx), wr = rounded(w, nw);
  std::vector<float> dw_sum(static_cast<size_t>(nw), 0.0f), db_unused(static_cast<size_t>(d.Cout), 0.0f);
  conv1d_backward_cpu(dyr.data(), xr.data(), wr.data(), dx, dw_sum.data(), db_unused.data(), d);
  if (dx) round_bf16_cpu(dx, nx);
  for (int64_t i = 0; i < nw; ++i) dw[i] += round_bf16(dw_sum[static_cast<size_t>(i)]);
  add_bias_grad(dy, db, d.B, d.Cout, Tout);
}

void linear_forward_bf16_cpu(const float* x, const float* w, const float* b, float* y, int B, int C, int E) {
  const auto xr = rounded(x, int64_t{B} * C), wr = rounded(w, int64_t{E} * C);
  linear_forward_cpu(xr.data(), wr.data(), b, y, B, C, E);
}

void linear_backward_bf16_cpu(const float* dy, const float* x, const float* w, float* dx, float* dw, float* db, int B,
                              int C, int E) {
  const auto dyr = rounded(dy, int64_t{B} * E), xr = rounded(x, int64_t{B} * C), wr = rounded(w, int64_t{E} * C);
  std::vector<float> db_unused(static_cast<size_t>(E), 0.0f);
  linear_backward_cpu(dyr.data(), xr.data(), wr.data(), dx, dw, db_unused.data(), B, C, E);
  add_bias_grad(dy, db, B, E, 1);
}

}  // namespace mg
