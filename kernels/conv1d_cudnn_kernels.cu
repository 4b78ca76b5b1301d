#include <cstdint>

#include "kernels/conv1d_cudnn_detail.h"
#include "kernels/cuda_check.h"
#include "kernels/cuda_launch.cuh"

namespace mg::detail {

namespace {

// float32 or bf16 elements (bf16: rounded to nearest even on the way in, as round_bf16).
__device__ __forceinline__ float widen(float v) { return v; }
__device__ __forceinline__ float widen(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ void store(float* p, float v) { *p = v; }
__device__ __forceinline__ void store(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }

// One thread per output element: reads of `full` are contiguous within a row (shifted by
// offset), writes of y are fully coalesced.
template <class In>
__global__ void conv_slice_bias_kernel(const In* __restrict__ full, const float* __restrict__ bias,
                                       float* __restrict__ y, int64_t n, int C, int Tfull, int Tout, int offset) {
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const int64_t r = i / Tout;
    const int t = static_cast<int>(i - r * Tout);
    const int c = static_cast<int>(r % C);
    y[i] = widen(full[r * Tfull + offset + t]) + bias[c];
  }
}

// One thread per element of `full`: every element is written (values or zeros), so the
// scratch needs no separate memset.
template <class Out>
__global__ void conv_pad_grad_kernel(const float* __restrict__ dy, Out* __restrict__ full, int64_t n, int Tout,
                                     int Tfull, int offset) {
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const int64_t r = i / Tfull;
    const int j = static_cast<int>(i - r * Tfull) - offset;
    store(full + i, (j >= 0 && j < Tout) ? dy[r * Tout + j] : 0.0f);
  }
}

template <class In>
void launch_slice_bias(const In* full, const float* bias, float* y, int64_t rows, int C, int Tfull, int Tout,
                       int offset, cudaStream_t stream) {
  const int64_t n = rows * Tout;
  if (n <= 0 || C <= 0) return;
  conv_slice_bias_kernel<<<grid_for(n), kBlockThreads, 0, stream>>>(full, bias, y, n, C, Tfull, Tout, offset);
  MG_CUDA_CHECK_LAUNCH();
}

template <class Out>
void launch_pad_grad(const float* dy, Out* full, int64_t rows, int Tout, int Tfull, int offset, cudaStream_t stream) {
  const int64_t n = rows * Tfull;
  if (n <= 0 || Tout <= 0) return;
  conv_pad_grad_kernel<<<grid_for(n), kBlockThreads, 0, stream>>>(dy, full, n, Tout, Tfull, offset);
  MG_CUDA_CHECK_LAUNCH();
}

}  // namespace

void conv_slice_bias_cuda(const float* full, const float* bias, float* y, int64_t rows, int C, int Tfull, int Tout,
                          int offset, cudaStream_t stream) {
  launch_slice_bias(full, bias, y, rows, C, Tfull, Tout, offset, stream);
}

void conv_slice_bias_cuda(const __nv_bfloat16* full, const float* bias, float* y, int64_t rows, int C, int Tfull,
                          int Tout, int offset, cudaStream_t stream) {
  launch_slice_bias(full, bias, y, rows, C, Tfull, Tout, offset, stream);
}

void conv_pad_grad_cuda(const float* dy, float* full, int64_t rows, int Tout, int Tfull, int offset,
                        cudaStream_t stream) {
  launch_pad_grad(dy, full, rows, Tout, Tfull, offset, stream);
}

void conv_pad_grad_cuda(const float* dy, __nv_bfloat16* full, int64_t rows, int Tout, int Tfull, int offset,
                        cudaStream_t stream) {
  launch_pad_grad(dy, full, rows, Tout, Tfull, offset, stream);
}

}  // namespace mg::detail
