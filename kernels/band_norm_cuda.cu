// Per-band standardisation on the GPU (kernels/band_norm_cpu.h): one thread per element in a
// grid-stride loop; the same float subtraction and division as the CPU, so bit-identical.
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/cuda_check.h"
#include "kernels/cuda_kernels.cuh"
#include "kernels/cuda_launch.cuh"

namespace mg {

namespace {

// No __restrict__ on x and y: they may alias (each element is read, then written, by one thread).
__global__ void band_norm_kernel(const float* x, const float* __restrict__ mean, const float* __restrict__ std,
                                 float* y, int C, int64_t Tn, int64_t n) {
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const int c = static_cast<int>((i / Tn) % C);
    y[i] = (x[i] - mean[c]) / std[c];
  }
}

}  // namespace

void band_norm_forward_cuda(const float* x, const float* mean, const float* std, float* y, int64_t B, int C,
                            int64_t Tn, cudaStream_t stream) {
  if (B < 0 || C < 1 || Tn < 0)
    throw std::invalid_argument("band_norm_cuda: need B >= 0, C >= 1, T >= 0 (got B " + std::to_string(B) + ", C " +
                                std::to_string(C) + ", T " + std::to_string(Tn) + ")");
  const int64_t n = B * C * Tn;
  if (n == 0) return;
  band_norm_kernel<<<grid_for(n), kBlockThreads, 0, stream>>>(x, mean, std, y, C, Tn, n);
  MG_CUDA_CHECK_LAUNCH();
}

}  // namespace mg
