#include <algorithm>
#include <cstdint>

#include "kernels/cuda_check.h"
#include "kernels/cuda_kernels.cuh"
#include "kernels/cuda_launch.cuh"

namespace mg {

namespace {

__global__ void bias_broadcast_kernel(const float* __restrict__ b, float* __restrict__ y, int64_t total, int E) {
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride)
    y[i] = b[i % E];
}

// One thread per column, rows summed in order in float: the same operations in the same order
// as linear_backward_cpu's bias loop, so db is bit-identical to the CPU's. Adjacent threads read
// adjacent columns, so every row's loads are coalesced. B is the batch (hundreds), so the
// sequential walk down a column is short.
__global__ void bias_grad_kernel(const float* __restrict__ dy, float* __restrict__ db, int B, int E) {
  const int stride = blockDim.x * gridDim.x;
  for (int e = blockIdx.x * blockDim.x + threadIdx.x; e < E; e += stride) {
    float s = 0.0f;
    for (int i = 0; i < B; ++i) s += dy[static_cast<int64_t>(i) * E + e];
    db[e] += s;
  }
}

}  // namespace

void bias_broadcast_cuda(const float* b, float* y, int B, int E, cudaStream_t stream) {
  if (B <= 0 || E <= 0) return;
  const int64_t total = static_cast<int64_t>(B) * E;
  bias_broadcast_kernel<<<grid_for(total), kBlockThreads, 0, stream>>>(b, y, total, E);
  MG_CUDA_CHECK_LAUNCH();
}

void bias_grad_cuda(const float* dy, float* db, int B, int E, cudaStream_t stream) {
  if (B <= 0 || E <= 0) return;  // B == 0 adds nothing
  bias_grad_kernel<<<grid_for(E), kBlockThreads, 0, stream>>>(dy, db, B, E);
  MG_CUDA_CHECK_LAUNCH();
}

}  // namespace mg
