#include <cstdint>

#include "kernels/bf16_cuda.h"
#include "kernels/cuda_check.h"
#include "kernels/cuda_launch.cuh"

namespace mg {

namespace {

// __float2bfloat16_rn: round to nearest, ties to even, overflow to infinity, NaN kept (a
// canonical NaN): round_bf16's rule on the CPU.
__global__ void to_bf16_kernel(const float* __restrict__ x, __nv_bfloat16* __restrict__ y, int64_t n) {
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    y[i] = __float2bfloat16_rn(x[i]);
}

__global__ void from_bf16_kernel(const __nv_bfloat16* __restrict__ x, float* __restrict__ y, int64_t n,
                                 bool accumulate) {
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const float v = __bfloat162float(x[i]);
    y[i] = accumulate ? y[i] + v : v;
  }
}

}  // namespace

void to_bf16_cuda(const float* x, __nv_bfloat16* y, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  to_bf16_kernel<<<grid_for(n), kBlockThreads, 0, stream>>>(x, y, n);
  MG_CUDA_CHECK_LAUNCH();
}

void from_bf16_cuda(const __nv_bfloat16* x, float* y, int64_t n, bool accumulate, cudaStream_t stream) {
  if (n <= 0) return;
  from_bf16_kernel<<<grid_for(n), kBlockThreads, 0, stream>>>(x, y, n, accumulate);
  MG_CUDA_CHECK_LAUNCH();
}

}  // namespace mg
