#include <algorithm>
#include <cstdint>

#include "kernels/cuda_check.h"
#include "kernels/cuda_kernels.cuh"
#include "kernels/cuda_launch.cuh"

namespace mg {

namespace {

constexpr int kWarps = kBlockThreads / 32;
// global_norm_cpu's blocking: each partial covers the same elements as one CPU block sum.
constexpr int64_t kNormBlock = int64_t{1} << 14;

// Block sum with a fixed shape (lane butterflies, then warp totals in order by thread 0);
// the result is valid in thread 0 only. Callers loop block-uniformly, and the trailing
// barrier lets them reuse `scratch` on their next iteration.
__device__ double block_sum(double v, double* scratch) {
  v = warp_sum(v);
  if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = v;
  __syncthreads();
  double t = 0;
  if (threadIdx.x == 0)
    for (int w = 0; w < static_cast<int>(blockDim.x >> 5); ++w) t += scratch[w];
  __syncthreads();
  return t;
}

// ---- Adam / AdamW ----
// adam_step_cpu's arithmetic in double, operation for operation. The _rn intrinsics keep nvcc
// from contracting a*b+c into an FMA, which the CPU (x86-64 baseline) does not do; the only
// remaining difference is pow() (CUDA's is within 2 ulp, glibc's within 1) in the bias
// corrections, far below the float rounding of the results.
__global__ void adam_kernel(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                            float* __restrict__ v, int64_t n, double b1, double b2, double eps, double wd,
                            bool decoupled, const double* __restrict__ scalars) {
  __shared__ double coef[3];  // step_size, sqrt_bc2, decay: per step, from device memory
  if (threadIdx.x == 0) {
    const double lr = scalars[0];
    // The CPU backend truncates the step to int64_t before converting back.
    const double step = static_cast<double>(static_cast<long long>(scalars[1]));
    const double bc1 = 1.0 - pow(b1, step);
    const double bc2 = 1.0 - pow(b2, step);
    coef[0] = lr / bc1;
    coef[1] = sqrt(bc2);
    coef[2] = decoupled ? __dsub_rn(1.0, __dmul_rn(lr, wd)) : 1.0;
  }
  __syncthreads();
  const double step_size = coef[0], sqrt_bc2 = coef[1], decay = coef[2];
  const double l2 = decoupled ? 0.0 : wd;
  const double c1 = 1.0 - b1, c2 = 1.0 - b2;
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const double p0 = static_cast<double>(p[i]);
    const double pi = __dmul_rn(p0, decay);
    const double gi = __dadd_rn(static_cast<double>(g[i]), __dmul_rn(l2, p0));
    const double mi = __dadd_rn(__dmul_rn(b1, static_cast<double>(m[i])), __dmul_rn(c1, gi));
    const double vi = __dadd_rn(__dmul_rn(b2, static_cast<double>(v[i])), __dmul_rn(__dmul_rn(c2, gi), gi));
    m[i] = static_cast<float>(mi);
    v[i] = static_cast<float>(vi);
    const double denom = __dadd_rn(sqrt(vi) / sqrt_bc2, eps);
    p[i] = static_cast<float>(__dsub_rn(pi, __dmul_rn(step_size, mi) / denom));
  }
}

// ---- clip_grad_norm_ ----

// partials[b] = sum of squares of elements [b * kNormBlock, (b + 1) * kNormBlock), one block per
// chunk: threads stride through the chunk (coalesced), then a fixed-shape block sum. The chunk
// boundaries are the CPU's; inside a chunk the order differs from its sequential sum (a
// relative difference of ~1e-15 in double, invisible after the float cast in most cases).
__global__ void __launch_bounds__(kBlockThreads)
    norm_partials_kernel(const float* __restrict__ g, int64_t n, int64_t nparts, double* __restrict__ partials) {
  __shared__ double scratch[kWarps];
  for (int64_t b = blockIdx.x; b < nparts; b += gridDim.x) {
    const int64_t begin = b * kNormBlock;
    const int64_t end = n - begin < kNormBlock ? n : begin + kNormBlock;
    double s = 0;
    for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
      const double x = static_cast<double>(g[i]);
      s += x * x;  // exact product: contraction cannot change it
    }
    s = block_sum(s, scratch);
    if (threadIdx.x == 0) partials[b] = s;
  }
}

// One block: the partials in a fixed order, the norm, and the clip coefficient, which
// overwrites partials[0] (after every thread has read it) for the scale kernel to read
// without a host round trip.
__global__ void __launch_bounds__(kBlockThreads)
    norm_finish_kernel(double* __restrict__ partials, int64_t nparts, double max_norm, float* __restrict__ norm_out) {
  __shared__ double scratch[kWarps];
  double s = 0;
  for (int64_t b = threadIdx.x; b < nparts; b += blockDim.x) s += partials[b];
  s = block_sum(s, scratch);  // its barriers also order the reads above before the write below
  if (threadIdx.x == 0) {
    const double norm = sqrt(s);
    norm_out[0] = static_cast<float>(norm);
    partials[0] = max_norm / (norm + 1e-6);
  }
}

// scale_cpu: the coefficient rounded to float once, then a float multiply. A NaN norm gives a
// NaN coefficient, and `coef < 1` is false, so nothing is scaled, as on the CPU.
__global__ void clip_scale_kernel(float* __restrict__ g, int64_t n, const double* __restrict__ coef_p) {
  const double coef = coef_p[0];
  if (!(coef < 1.0)) return;
  const float s = static_cast<float>(coef);
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) g[i] *= s;
}

}  // namespace

void adam_step_cuda(float* p, const float* g, float* m, float* v, int64_t n, const AdamParams& a,
                    const double* scalars, cudaStream_t stream) {
  if (n <= 0) return;
  adam_kernel<<<grid_for(n), kBlockThreads, 0, stream>>>(p, g, m, v, n, a.beta1, a.beta2, a.eps, a.weight_decay,
                                                     a.decoupled, scalars);
  MG_CUDA_CHECK_LAUNCH();
}

int64_t global_norm_partials_size(int64_t n) {
  return std::max<int64_t>(1, (n + kNormBlock - 1) / kNormBlock);  // >= 1: slot 0 carries the coefficient
}

void clip_grad_norm_cuda(float* g, int64_t n, double max_norm, float* norm_out, double* partials,
                         cudaStream_t stream) {
  if (n <= 0) {  // the norm of nothing is 0, as global_norm_cpu's
    MG_CUDA_CHECK(cudaMemsetAsync(norm_out, 0, sizeof(float), stream));
    return;
  }
  const int64_t nparts = (n + kNormBlock - 1) / kNormBlock;
  const int part_blocks = static_cast<int>(std::min<int64_t>(nparts, kMaxGridBlocks));
  norm_partials_kernel<<<part_blocks, kBlockThreads, 0, stream>>>(g, n, nparts, partials);
  MG_CUDA_CHECK_LAUNCH();
  norm_finish_kernel<<<1, kBlockThreads, 0, stream>>>(partials, nparts, max_norm, norm_out);
  MG_CUDA_CHECK_LAUNCH();
  if (max_norm > 0) {  // max_norm <= 0 only measures (the CPU backend's rule)
    clip_scale_kernel<<<grid_for(n), kBlockThreads, 0, stream>>>(g, n, partials);
    MG_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace mg
