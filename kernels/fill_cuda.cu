#include <algorithm>
#include <cstdint>

#include "kernels/cuda_check.h"
#include "kernels/cuda_kernels.cuh"
#include "kernels/cuda_launch.cuh"
#include "kernels/philox.h"

namespace mg {

namespace {

__global__ void fill_kernel(float* __restrict__ p, int64_t n, float value) {
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) p[i] = value;
}

__global__ void fill_uniform_kernel(float* __restrict__ p, int64_t n, float lo, float hi, uint64_t seed,
                                    uint64_t stream_id) {
  // The explicit _rn intrinsics forbid nvcc's default fmul+fadd -> FMA contraction: the CPU
  // (x86-64 baseline, no FMA) rounds the product and the sum separately, and init must be
  // bit-identical across backends.
  const float range = __fsub_rn(hi, lo);
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    p[i] = __fadd_rn(lo, __fmul_rn(range, philox_uniform(seed, stream_id, static_cast<uint64_t>(i))));
}

}  // namespace

void fill_cuda(float* p, int64_t n, float value, cudaStream_t stream) {
  if (n <= 0) return;
  fill_kernel<<<grid_for(n), kBlockThreads, 0, stream>>>(p, n, value);
  MG_CUDA_CHECK_LAUNCH();
}

void fill_uniform_cuda(float* p, int64_t n, float lo, float hi, uint64_t seed, uint64_t stream_id,
                       cudaStream_t stream) {
  if (n <= 0) return;
  fill_uniform_kernel<<<grid_for(n), kBlockThreads, 0, stream>>>(p, n, lo, hi, seed, stream_id);
  MG_CUDA_CHECK_LAUNCH();
}

}  // namespace mg
