#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/cuda_check.h"
#include "kernels/cuda_kernels.cuh"
#include "kernels/cuda_launch.cuh"
#include "kernels/reduce_cpu.h"

namespace mg {

namespace {

constexpr int kWarpsPerBlock = kBlockThreads / 32;

// Index in y of row r's result (RowOut's layout, kernels/reduce_cpu.h).
__device__ __forceinline__ int64_t out_index(int64_t r, int C, int64_t ld) { return (r / C) * ld + r % C; }

// ---- mean over time ----

// Short rows (the model's last conv leaves ~23 frames): one thread per row summing in order in
// double, exactly as mean_time_forward_cpu, so y is bit-identical to the CPU's. The block first
// stages its rows (one contiguous span of x) through shared memory with coalesced loads, since
// a thread walking its own row would stride across the warp's accesses.
constexpr int kSmallT = 64;
constexpr int kRowsPerBlock = 128;  // = the block size of the kernel below

__global__ void __launch_bounds__(kRowsPerBlock)
    mean_time_small_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t rows, int Tn, int C,
                           int64_t ld) {
  __shared__ float tile[kRowsPerBlock * kSmallT];
  const int64_t step = static_cast<int64_t>(gridDim.x) * kRowsPerBlock;
  for (int64_t r0 = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock; r0 < rows; r0 += step) {
    const int nr = rows - r0 < kRowsPerBlock ? static_cast<int>(rows - r0) : kRowsPerBlock;
    const int count = nr * Tn;
    const float* src = x + r0 * Tn;
    for (int k = threadIdx.x; k < count; k += blockDim.x) tile[k] = src[k];
    __syncthreads();
    if (static_cast<int>(threadIdx.x) < nr) {
      const float* t = tile + threadIdx.x * Tn;
      double s = 0;
      for (int k = 0; k < Tn; ++k) s += static_cast<double>(t[k]);
      y[out_index(r0 + threadIdx.x, C, ld)] = static_cast<float>(s / Tn);
    }
    __syncthreads();  // the tile is rewritten by the next iteration
  }
}

// Long rows: one warp per row, lane-strided partial sums in double and a butterfly. Not the
// CPU's sequential order; the difference is a few ulps of double, below float rounding.
__global__ void mean_time_warp_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t rows, int Tn, int C,
                                      int64_t ld) {
  const int lane = threadIdx.x & 31;
  const int64_t nwarps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5); r < rows;
       r += nwarps) {
    const float* xr = x + r * Tn;
    double s = 0;
    for (int t = lane; t < Tn; t += 32) s += static_cast<double>(xr[t]);
    s = warp_sum(s);
    if (lane == 0) y[out_index(r, C, ld)] = static_cast<float>(s / Tn);
  }
}

__global__ void mean_time_backward_kernel(const float* __restrict__ dy, float* __restrict__ dx, int64_t total, int Tn,
                                          float inv, int C, int64_t ld, bool accumulate) {
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    // Rounded as the CPU rounds: the product, then the sum (no FMA contraction).
    const float g = __fmul_rn(dy[out_index(i / Tn, C, ld)], inv);
    dx[i] = accumulate ? __fadd_rn(dx[i], g) : g;
  }
}

// ---- max over time: one warp per row ----
// These kernels and the L2 ones below take the rows' geometry (rows, Tn, C, ld) first, in the
// order launch_warp_per_row passes it.

// A row's maximum as the CPU finds it (max_time_forward_cpu): the first NaN if there is one,
// else the first maximum. Each lane scans its strided share with that rule, then a butterfly
// keeps the better of two candidates by a total order (NaN before numbers, then larger value,
// then smaller index), so every lane ends with the same winner: the CPU's. t = -1: no candidate
// (a lane past the row's end), below everything.
struct MaxCandidate {
  float v;
  int t;
};

__device__ __forceinline__ bool better(const MaxCandidate& a, const MaxCandidate& b) {
  if (a.t < 0) return false;
  if (b.t < 0) return true;
  const bool an = a.v != a.v, bn = b.v != b.v;
  if (an || bn) return an && (!bn || a.t < b.t);
  return a.v > b.v || (a.v == b.v && a.t < b.t);
}

__device__ __forceinline__ MaxCandidate warp_row_argmax(const float* __restrict__ xr, int Tn, int lane) {
  MaxCandidate c{0.0f, -1};
  for (int t = lane; t < Tn; t += 32) {
    const float v = xr[t];
    if (c.t < 0 || (c.v == c.v && (v > c.v || v != v))) c = MaxCandidate{v, t};
  }
  for (int o = 16; o > 0; o >>= 1) {
    const MaxCandidate other{__shfl_xor_sync(kFullWarpMask, c.v, o), __shfl_xor_sync(kFullWarpMask, c.t, o)};
    if (better(other, c)) c = other;
  }
  return c;
}

__global__ void max_time_forward_kernel(int64_t rows, int Tn, int C, int64_t ld, const float* __restrict__ x,
                                        float* __restrict__ y) {
  const int lane = threadIdx.x & 31;
  const int64_t nwarps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5); r < rows;
       r += nwarps) {
    const MaxCandidate c = warp_row_argmax(x + r * Tn, Tn, lane);
    if (lane == 0) y[out_index(r, C, ld)] = c.v;
  }
}

// dx must not alias x (other lanes still read the row while one writes).
__global__ void max_time_backward_kernel(int64_t rows, int Tn, int C, int64_t ld, const float* __restrict__ dy,
                                         const float* __restrict__ x, float* __restrict__ dx, bool accumulate) {
  const int lane = threadIdx.x & 31;
  const int64_t nwarps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5); r < rows;
       r += nwarps) {
    const int arg = warp_row_argmax(x + r * Tn, Tn, lane).t;
    const float g = dy[out_index(r, C, ld)];
    float* dxr = dx + r * Tn;
    if (accumulate) {
      if (lane == 0) dxr[arg] += g;
    } else {
      for (int t = lane; t < Tn; t += 32) dxr[t] = t == arg ? g : 0.0f;
    }
  }
}

// ---- L2 norm over time: one warp per row ----

// sqrt(sum x^2) in double; every lane gets the same bits. The CPU sums in order, so the two
// differ by a few ulps of double, below float rounding of the result.
__device__ __forceinline__ double warp_row_l2(const float* __restrict__ xr, int Tn, int lane) {
  double s = 0;
  for (int t = lane; t < Tn; t += 32) s += static_cast<double>(xr[t]) * static_cast<double>(xr[t]);
  return sqrt(warp_sum(s));
}

__global__ void l2_time_forward_kernel(int64_t rows, int Tn, int C, int64_t ld, const float* __restrict__ x,
                                       float* __restrict__ y) {
  const int lane = threadIdx.x & 31;
  const int64_t nwarps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5); r < rows;
       r += nwarps) {
    const double n = warp_row_l2(x + r * Tn, Tn, lane);
    if (lane == 0) y[out_index(r, C, ld)] = static_cast<float>(n);
  }
}

// dx must not alias x (declared __restrict__).
__global__ void l2_time_backward_kernel(int64_t rows, int Tn, int C, int64_t ld, const float* __restrict__ dy,
                                        const float* __restrict__ x, float* __restrict__ dx, bool accumulate) {
  const int lane = threadIdx.x & 31;
  const int64_t nwarps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5); r < rows;
       r += nwarps) {
    const float* xr = x + r * Tn;
    float* dxr = dx + r * Tn;
    const double n = warp_row_l2(xr, Tn, lane);  // warp-uniform
    const double g = static_cast<double>(dy[out_index(r, C, ld)]);
    for (int t = lane; t < Tn; t += 32) {
      // _rn: the CPU rounds the product before the division (exact here: two floats' product
      // fits a double, but keep the CPU's order explicit).
      const float d = n == 0.0 ? 0.0f : static_cast<float>(__dmul_rn(g, static_cast<double>(xr[t])) / n);
      dxr[t] = accumulate ? dxr[t] + d : d;
    }
  }
}

// ---- L2 normalisation: one warp per row (E is the embedding size, ~128) ----

// |x| of one row, in double with a fixed order; every lane of the warp gets the same bits.
// Products of floats are exact in double, so FMA contraction cannot change them.
__device__ __forceinline__ double warp_row_norm(const float* __restrict__ xr, int E, int lane) {
  double s = 0;
  for (int e = lane; e < E; e += 32) s += static_cast<double>(xr[e]) * static_cast<double>(xr[e]);
  return sqrt(warp_sum(s));
}

__global__ void l2norm_forward_kernel(const float* __restrict__ x, float* __restrict__ y, int B, int E, double eps) {
  const int lane = threadIdx.x & 31;
  const int64_t nwarps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (int64_t b = static_cast<int64_t>(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5); b < B; b += nwarps) {
    const int64_t o = b * E;
    const double n = warp_row_norm(x + o, E, lane);
    const double inv = 1.0 / (n < eps ? eps : n);  // std::max's rule: a NaN norm stays NaN
    for (int e = lane; e < E; e += 32) y[o + e] = static_cast<float>(static_cast<double>(x[o + e]) * inv);
  }
}

// dx may alias dy: every dx element is written by the thread that read its dy, after the row's
// reductions, so no __restrict__ on them.
__global__ void l2norm_backward_kernel(const float* dy, const float* __restrict__ x, const float* __restrict__ y,
                                       float* dx, int B, int E, double eps) {
  const int lane = threadIdx.x & 31;
  const int64_t nwarps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (int64_t b = static_cast<int64_t>(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5); b < B; b += nwarps) {
    const int64_t o = b * E;
    const double n = warp_row_norm(x + o, E, lane);
    if (n >= eps) {  // warp-uniform (every lane holds the same n); clamp_min passes at equality
      double ydy = 0;
      for (int e = lane; e < E; e += 32) ydy += static_cast<double>(y[o + e]) * static_cast<double>(dy[o + e]);
      ydy = warp_sum(ydy);
      // _rn intrinsics: no FMA contraction, the CPU rounds the product before the difference.
      for (int e = lane; e < E; e += 32)
        dx[o + e] = static_cast<float>(
            __dsub_rn(static_cast<double>(dy[o + e]), __dmul_rn(static_cast<double>(y[o + e]), ydy)) / n);
    } else {
      for (int e = lane; e < E; e += 32) dx[o + e] = static_cast<float>(static_cast<double>(dy[o + e]) / eps);
    }
  }
}

// The launch the max and L2 reductions over time share (forward and backward): the output
// layout's checks, naming `op`; then, when there are rows, one warp per row (grid-stride past the
// grid cap) running kernel(rows, Tn, C, ld, args...). Returns the launch's status rather than
// checking it, so each wrapper's MG_CUDA_CHECK names its own launch and line on failure.
template <typename... KernelArgs, typename... Args>
cudaError_t launch_warp_per_row(const char* op, void (*kernel)(int64_t, int, int, int64_t, KernelArgs...),
                                int64_t rows, int Tn, const RowOut& out, cudaStream_t stream, Args... args) {
  check_row_out(op, rows, Tn, out);
  if (rows <= 0) return cudaSuccess;
  kernel<<<grid_for(rows, kWarpsPerBlock), kBlockThreads, 0, stream>>>(rows, Tn, out.C, out.ld, args...);
  return cudaGetLastError();
}

}  // namespace

void mean_time_forward_cuda(const float* x, float* y, int64_t rows, int Tn, const RowOut& out, cudaStream_t stream) {
  check_row_out("mean_time_forward_cuda", rows, Tn, out);
  if (rows <= 0) return;
  if (Tn <= kSmallT) {
    mean_time_small_kernel<<<grid_for(rows, kRowsPerBlock), kRowsPerBlock, 0, stream>>>(x, y, rows, Tn, out.C,
                                                                                        out.ld);
  } else {
    mean_time_warp_kernel<<<grid_for(rows, kWarpsPerBlock), kBlockThreads, 0, stream>>>(x, y, rows, Tn, out.C,
                                                                                        out.ld);
  }
  MG_CUDA_CHECK_LAUNCH();
}

void mean_time_backward_cuda(const float* dy, float* dx, int64_t rows, int Tn, const RowOut& out, bool accumulate,
                             cudaStream_t stream) {
  check_row_out("mean_time_backward_cuda", rows, Tn, out);
  if (rows <= 0) return;
  const float inv = 1.0f / static_cast<float>(Tn);  // the CPU's float reciprocal, then one multiply
  const int64_t total = rows * Tn;
  mean_time_backward_kernel<<<grid_for(total, kBlockThreads), kBlockThreads, 0, stream>>>(dy, dx, total, Tn, inv, out.C,
                                                                                          out.ld, accumulate);
  MG_CUDA_CHECK_LAUNCH();
}

void max_time_forward_cuda(const float* x, float* y, int64_t rows, int Tn, const RowOut& out, cudaStream_t stream) {
  MG_CUDA_CHECK(launch_warp_per_row("max_time_forward_cuda", max_time_forward_kernel, rows, Tn, out, stream, x, y));
}

void max_time_backward_cuda(const float* dy, const float* x, float* dx, int64_t rows, int Tn, const RowOut& out,
                            bool accumulate, cudaStream_t stream) {
  MG_CUDA_CHECK(launch_warp_per_row("max_time_backward_cuda", max_time_backward_kernel, rows, Tn, out, stream, dy, x,
                                    dx, accumulate));
}

void l2_time_forward_cuda(const float* x, float* y, int64_t rows, int Tn, const RowOut& out, cudaStream_t stream) {
  MG_CUDA_CHECK(launch_warp_per_row("l2_time_forward_cuda", l2_time_forward_kernel, rows, Tn, out, stream, x, y));
}

void l2_time_backward_cuda(const float* dy, const float* x, float* dx, int64_t rows, int Tn, const RowOut& out,
                           bool accumulate, cudaStream_t stream) {
  MG_CUDA_CHECK(launch_warp_per_row("l2_time_backward_cuda", l2_time_backward_kernel, rows, Tn, out, stream, dy, x,
                                    dx, accumulate));
}

void l2norm_forward_cuda(const float* x, float* y, int B, int E, double eps, cudaStream_t stream) {
  if (B <= 0 || E <= 0) return;
  l2norm_forward_kernel<<<grid_for(B, kWarpsPerBlock), kBlockThreads, 0, stream>>>(x, y, B, E, eps);
  MG_CUDA_CHECK_LAUNCH();
}

void l2norm_backward_cuda(const float* dy, const float* x, const float* y, float* dx, int B, int E, double eps,
                          cudaStream_t stream) {
  if (B <= 0 || E <= 0) return;
  l2norm_backward_kernel<<<grid_for(B, kWarpsPerBlock), kBlockThreads, 0, stream>>>(dy, x, y, dx, B, E, eps);
  MG_CUDA_CHECK_LAUNCH();
}

}  // namespace mg
