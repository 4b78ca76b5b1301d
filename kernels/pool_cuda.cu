// Max-pool 1d, window = stride, floor mode: the CUDA twin of kernels/pool_cpu.h, with the CPU's
// rules (the first maximum of a window wins, the first NaN counts as its maximum) in forward
// and backward. cuDNN documents no tie rule for its pooling, and after a ReLU half of all
// windows tie among zeros, so the gradient's destination must be ours to define.
//
// One thread per window: it reads the window's `window` consecutive floats (a warp reads one
// contiguous span) and picks the same element as the CPU's scan, so y is a copy of that
// element (bit-identical, NaN and signed zeros included) and dx puts dy exactly there.
#include <stdexcept>
#include <string>

#include "kernels/cuda_check.h"
#include "kernels/cuda_kernels.cuh"
#include "kernels/cuda_launch.cuh"

namespace mg {

namespace {

// The CPU's choice within one window: the first NaN if there is one, else the first maximum
// (a strict comparison, so a later equal value never replaces an earlier one).
__device__ __forceinline__ int window_argmax(const float* w, int window) {
  int arg = 0;
  float m = w[0];
  if (m != m) return 0;
  for (int k = 1; k < window; ++k) {
    const float v = w[k];
    if (v != v) return k;
    if (v > m) {
      m = v;
      arg = k;
    }
  }
  return arg;
}

__global__ void maxpool_forward_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t n_windows, int Tin,
                                       int Tout, int window) {
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n_windows; i += stride) {
    const int64_t r = i / Tout;
    const int t = static_cast<int>(i - r * Tout);
    const float* w = x + r * Tin + static_cast<int64_t>(t) * window;
    y[i] = w[window_argmax(w, window)];
  }
}

// Work item i < rows * Tout: window i writes its `window` gradients; the rows * has_tail items
// after them zero one row's Tin % window dropped columns each.
__global__ void maxpool_backward_kernel(const float* __restrict__ dy, const float* __restrict__ x,
                                        float* __restrict__ dx, int64_t rows, int Tin, int Tout, int window) {
  const int64_t n_windows = rows * Tout;
  const int tail_start = Tout * window;
  const int64_t n_items = n_windows + (tail_start < Tin ? rows : 0);
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n_items; i += stride) {
    if (i >= n_windows) {
      float* d = dx + (i - n_windows) * Tin;
      for (int c = tail_start; c < Tin; ++c) d[c] = 0.0f;
      continue;
    }
    const int64_t r = i / Tout;
    const int t = static_cast<int>(i - r * Tout);
    const int64_t off = r * Tin + static_cast<int64_t>(t) * window;
    const int arg = window_argmax(x + off, window);
    const float g = dy[i];
    for (int k = 0; k < window; ++k) dx[off + k] = k == arg ? g : 0.0f;
  }
}

void check_pool_shape(const char* who, int64_t rows, int Tin, int window) {
  if (rows < 0 || Tin < 0 || window < 1)
    throw std::invalid_argument(std::string(who) + ": invalid shape rows=" + std::to_string(rows) +
                                " Tin=" + std::to_string(Tin) + " window=" + std::to_string(window) +
                                ": need rows >= 0, Tin >= 0, window >= 1");
}

}  // namespace

void maxpool1d_forward_cuda(const float* x, float* y, int64_t rows, int Tin, int window, cudaStream_t stream) {
  check_pool_shape("maxpool1d_forward_cuda", rows, Tin, window);
  const int Tout = Tin / window;
  const int64_t n = rows * Tout;
  if (n == 0) return;  // y is empty
  maxpool_forward_kernel<<<grid_for(n), kBlockThreads, 0, stream>>>(x, y, n, Tin, Tout, window);
  MG_CUDA_CHECK_LAUNCH();
}

void maxpool1d_backward_cuda(const float* dy, const float* x, float* dx, int64_t rows, int Tin, int window,
                             cudaStream_t stream) {
  check_pool_shape("maxpool1d_backward_cuda", rows, Tin, window);
  const int Tout = Tin / window;
  const int64_t n = rows * Tout + (Tout * window < Tin ? rows : 0);
  if (n == 0) return;  // dx is empty
  maxpool_backward_kernel<<<grid_for(n), kBlockThreads, 0, stream>>>(dy, x, dx, rows, Tin, Tout, window);
  MG_CUDA_CHECK_LAUNCH();
}

}  // namespace mg
