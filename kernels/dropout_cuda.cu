#include <cstdint>

#include "kernels/cuda_check.h"
#include "kernels/cuda_kernels.cuh"
#include "kernels/cuda_launch.cuh"
#include "kernels/dropout_cpu.h"
#include "kernels/philox.h"

namespace mg {

namespace {

// rng = {seed, stream} is read from device memory by every thread, so a captured launch draws
// the mask of the step uploaded before each replay. Same Philox element and the same float
// products as dropout_forward_cpu: bit-identical. y may alias x, dx may alias dy (each
// element is read and written by one thread).
__global__ void dropout_forward_kernel(const float* x, float* y, float* __restrict__ mask, int64_t n, double p,
                                       float scale, const uint64_t* __restrict__ rng) {
  const uint64_t seed = rng[0], stream = rng[1];
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const double u = philox_uniform(seed, stream, static_cast<uint64_t>(i));
    const float m = u < p ? 0.0f : scale;
    mask[i] = m;
    y[i] = x[i] * m;
  }
}

__global__ void dropout_backward_kernel(const float* dy, const float* __restrict__ mask, float* dx, int64_t n) {
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    dx[i] = dy[i] * mask[i];
}

}  // namespace

void dropout_forward_cuda(const float* x, float* y, float* mask, int64_t n, double p, const uint64_t* rng,
                          cudaStream_t stream) {
  check_dropout_p("dropout_forward_cuda", p);
  if (n <= 0) return;
  dropout_forward_kernel<<<grid_for(n), kBlockThreads, 0, stream>>>(x, y, mask, n, p, dropout_scale<float>(p), rng);
  MG_CUDA_CHECK_LAUNCH();
}

void dropout_backward_cuda(const float* dy, const float* mask, float* dx, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  dropout_backward_kernel<<<grid_for(n), kBlockThreads, 0, stream>>>(dy, mask, dx, n);
  MG_CUDA_CHECK_LAUNCH();
}

}  // namespace mg
