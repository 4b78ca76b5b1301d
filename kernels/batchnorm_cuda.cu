// Batch normalisation on the GPU (semantics in kernels/batchnorm_cpu.h). x is [B, D] row-major:
// a block takes 32 consecutive features (lane = feature, so every row's load is one coalesced
// 128-byte segment) and its kWarps warps stride over the rows. Each column sum is a fixed tree:
// per warp the rows w, w + kWarps, ... in order, then the warps' partials in warp order; so the
// result is deterministic, and within double rounding of the CPU's sequential sum.
#include <cmath>
#include <cstdint>

#include "kernels/batchnorm_cpu.h"
#include "kernels/cuda_check.h"
#include "kernels/cuda_kernels.cuh"

namespace mg {

namespace {

constexpr int kWarps = 8;
constexpr int kThreads = 32 * kWarps;

// Sums v over the block's warps for this lane's feature; every thread gets the total.
// Must be reached by every thread of the block (barriers).
__device__ double column_sum(double v, double (*shared)[32]) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  shared[warp][lane] = v;
  __syncthreads();
  double total = 0;
  for (int w = 0; w < kWarps; ++w) total += shared[w][lane];
  __syncthreads();  // the buffer is reused by the next sum
  return total;
}

// The batch statistics of column j (kernels/batchnorm_cpu.cpp's column_stats): two passes.
__device__ void column_stats(const float* __restrict__ x, int B, int D, int j, bool on, double eps,
                             double (*s)[32], double* mu, double* var, double* inv) {
  const int warp = threadIdx.x >> 5;
  double acc = 0;
  if (on)
    for (int b = warp; b < B; b += kWarps) acc += static_cast<double>(x[static_cast<int64_t>(b) * D + j]);
  *mu = column_sum(acc, s) / B;
  acc = 0;
  if (on)
    for (int b = warp; b < B; b += kWarps) {
      const double c = static_cast<double>(x[static_cast<int64_t>(b) * D + j]) - *mu;
      acc += c * c;
    }
  *var = column_sum(acc, s) / B;
  *inv = 1.0 / sqrt(*var + eps);
}

__global__ void __launch_bounds__(kThreads)
    batchnorm_train_kernel(const float* __restrict__ x, const float* __restrict__ gamma,
                           const float* __restrict__ beta, float* __restrict__ y, float* __restrict__ running_mean,
                           float* __restrict__ running_var, int B, int D, double eps, double momentum) {
  __shared__ double s[kWarps][32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int j = blockIdx.x * 32 + lane;
  const bool on = j < D;  // guarded columns still take part in the block's barriers
  double mu, var, inv;
  column_stats(x, B, D, j, on, eps, s, &mu, &var, &inv);
  if (!on) return;
  const double g = gamma[j], bt = beta[j];
  for (int b = warp; b < B; b += kWarps) {
    const int64_t i = static_cast<int64_t>(b) * D + j;
    y[i] = static_cast<float>(g * ((static_cast<double>(x[i]) - mu) * inv) + bt);
  }
  if (warp == 0) {
    running_mean[j] = static_cast<float>((1 - momentum) * static_cast<double>(running_mean[j]) + momentum * mu);
    running_var[j] =
        static_cast<float>((1 - momentum) * static_cast<double>(running_var[j]) + momentum * var * B / (B - 1));
  }
}

__global__ void __launch_bounds__(kThreads)
    batchnorm_eval_kernel(const float* __restrict__ x, const float* __restrict__ gamma, const float* __restrict__ beta,
                          const float* __restrict__ running_mean, const float* __restrict__ running_var,
                          float* __restrict__ y, int B, int D, double eps) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int j = blockIdx.x * 32 + lane;
  if (j >= D) return;
  const double inv = 1.0 / sqrt(static_cast<double>(running_var[j]) + eps);
  const double mu = running_mean[j], g = gamma[j], bt = beta[j];
  for (int b = warp; b < B; b += kWarps) {
    const int64_t i = static_cast<int64_t>(b) * D + j;
    y[i] = static_cast<float>(g * ((static_cast<double>(x[i]) - mu) * inv) + bt);
  }
}

__global__ void __launch_bounds__(kThreads)
    batchnorm_backward_kernel(const float* __restrict__ dy, const float* __restrict__ x,
                              const float* __restrict__ gamma, float* __restrict__ dx, float* __restrict__ dgamma,
                              float* __restrict__ dbeta, int B, int D, double eps) {
  __shared__ double s[kWarps][32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int j = blockIdx.x * 32 + lane;
  const bool on = j < D;
  double mu, var, inv;
  column_stats(x, B, D, j, on, eps, s, &mu, &var, &inv);
  double a_dy = 0, a_dyx = 0;
  if (on)
    for (int b = warp; b < B; b += kWarps) {
      const int64_t i = static_cast<int64_t>(b) * D + j;
      const double g = dy[i];
      a_dy += g;
      a_dyx += g * (static_cast<double>(x[i]) - mu) * inv;
    }
  const double sum_dy = column_sum(a_dy, s), sum_dyx = column_sum(a_dyx, s);
  if (!on) return;
  if (warp == 0) {
    dbeta[j] = static_cast<float>(static_cast<double>(dbeta[j]) + sum_dy);
    dgamma[j] = static_cast<float>(static_cast<double>(dgamma[j]) + sum_dyx);
  }
  if (!dx) return;
  const double scale = static_cast<double>(gamma[j]) * inv;
  for (int b = warp; b < B; b += kWarps) {
    const int64_t i = static_cast<int64_t>(b) * D + j;
    const double xhat = (static_cast<double>(x[i]) - mu) * inv;
    dx[i] = static_cast<float>(scale * (static_cast<double>(dy[i]) - sum_dy / B - xhat * sum_dyx / B));
  }
}

int blocks_for(int D) { return (D + 31) / 32; }

}  // namespace

void batchnorm_forward_cuda(const float* x, const float* gamma, const float* beta, float* y, float* running_mean,
                            float* running_var, int B, int D, const BatchNormParams& p, bool training,
                            cudaStream_t stream) {
  check_batchnorm(B, D, p, training);
  if (training)
    batchnorm_train_kernel<<<blocks_for(D), kThreads, 0, stream>>>(x, gamma, beta, y, running_mean, running_var, B, D,
                                                                   p.eps, p.momentum);
  else
    batchnorm_eval_kernel<<<blocks_for(D), kThreads, 0, stream>>>(x, gamma, beta, running_mean, running_var, y, B, D,
                                                                  p.eps);
  MG_CUDA_CHECK_LAUNCH();
}

void batchnorm_backward_cuda(const float* dy, const float* x, const float* gamma, float* dx, float* dgamma,
                             float* dbeta, int B, int D, const BatchNormParams& p, cudaStream_t stream) {
  check_batchnorm(B, D, p, true);
  batchnorm_backward_kernel<<<blocks_for(D), kThreads, 0, stream>>>(dy, x, gamma, dx, dgamma, dbeta, B, D, p.eps);
  MG_CUDA_CHECK_LAUNCH();
}

}  // namespace mg
