#include <algorithm>
#include <cstdint>

#include "kernels/cuda_check.h"
#include "kernels/cuda_kernels.cuh"
#include "kernels/cuda_launch.cuh"

namespace mg {

namespace {

// No __restrict__: y may alias x (and dx may alias dy); each element is read before it is
// written by the same thread, so in-place use is safe.
__global__ void relu_forward_kernel(const float* x, float* y, int64_t n) {
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const float v = x[i];
    y[i] = v > 0.0f ? v : 0.0f;  // NaN -> 0, as the CPU's comparison
  }
}

__global__ void relu_backward_kernel(const float* dy, const float* y, float* dx, int64_t n) {
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const float g = dy[i];
    dx[i] = y[i] > 0.0f ? g : 0.0f;
  }
}

}  // namespace

void relu_forward_cuda(const float* x, float* y, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  relu_forward_kernel<<<grid_for(n), kBlockThreads, 0, stream>>>(x, y, n);
  MG_CUDA_CHECK_LAUNCH();
}

void relu_backward_cuda(const float* dy, const float* y, float* dx, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  relu_backward_kernel<<<grid_for(n), kBlockThreads, 0, stream>>>(dy, y, dx, n);
  MG_CUDA_CHECK_LAUNCH();
}

}  // namespace mg
