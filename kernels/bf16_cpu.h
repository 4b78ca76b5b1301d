// bf16 mixed precision, the CPU oracle: the conv1d and linear ops of train.precision = "bf16",
// emulated in float32 by rounding to bf16 exactly where the CUDA path (kernels/bf16_cuda.cu,
// the cuDNN and cuBLAS calls) holds a bf16 value. Everything else (mel, norms, pooling, loss,
// the optimizer, master weights, gradients) stays float32.
//
// bf16 = the upper 16 bits of a float32 (8-bit exponent, 8-bit significand); rounding is to
// nearest, ties to even, as CUDA's __float2bfloat16_rn; overflow gives infinity, NaN stays NaN.
//
// Where each op rounds (r = round to bf16; sums of products in float32):
//   conv1d forward   y  = r(conv(r(x), r(w))) + b          cuDNN writes y in bf16; the bias is
//                                                          added in float32 after it
//   conv1d backward  dx = r(conv^T(r(dy), r(w)))           overwritten
//                    dw += r(corr(r(x), r(dy)))            cuDNN writes dw in bf16
//                    db += sum of dy                       float32 dy
//   linear forward   y  = r(x) r(w)^T + b                  cuBLAS writes float32 (no rounding)
//   linear backward  dx = r(dy) r(w), dw += r(dy)^T r(x)   float32 results
//                    db += sum of dy                       float32 dy
// The two sides sum in different orders, so a sum a hair from a rounding boundary may round
// to neighbouring bf16 values: conv1d results agree to about one bf16 step (2^-8 relative),
// linear results to float32 rounding.
#pragma once
#include <cstdint>
#include <cstring>

#include "kernels/conv1d_cpu.h"

namespace mg {

inline float round_bf16(float x) {
  uint32_t u = 0;
  std::memcpy(&u, &x, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) {
    u = (u | 0x00400000u) & 0xffff0000u;  // NaN: quiet, and the payload's top bits kept
  } else {
    u += 0x7fffu + ((u >> 16) & 1u);  // to nearest, ties to even; carries into the exponent
    u &= 0xffff0000u;
  }
  float r = 0;
  std::memcpy(&r, &u, sizeof r);
  return r;
}

// x[i] = round_bf16(x[i]) for i < n (OpenMP threads for large n).
void round_bf16_cpu(float* x, int64_t n);

void conv1d_forward_bf16_cpu(const float* x, const float* w, const float* b, float* y, const Conv1dDims& d);
// dx skipped when null, as conv1d_backward_cpu.
void conv1d_backward_bf16_cpu(const float* dy, const float* x, const float* w, float* dx, float* dw, float* db,
                              const Conv1dDims& d);
void linear_forward_bf16_cpu(const float* x, const float* w, const float* b, float* y, int B, int C, int E);
void linear_backward_bf16_cpu(const float* dy, const float* x, const float* w, float* dx, float* dw, float* db, int B,
                              int C, int E);

}  // namespace mg
