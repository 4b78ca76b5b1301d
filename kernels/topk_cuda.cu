// Exact top-k selection on the GPU for the CUDA backend's topk_cosine (the similarities come
// from cuBLAS in the backend; the order is engine/retrieval_metrics.h topk_cosine's).
//
// Keys. Each candidate becomes one uint64 whose unsigned order is the ranking order:
//   bits 63..32  the similarity's float bits made monotonic (sign flipped for positives, all
//                bits flipped for negatives), after NaN -> -inf and -0 -> +0, so that NaN ties
//                with -inf and -0 with +0 exactly as the CPU's float comparisons do;
//   bits 31..1   0x7fffffff - item: among equal similarities the lower item has the larger key;
//   bit 0        1 when the similarity was NaN (so the decoded similarity is NaN again).
// Items are distinct, so keys are distinct: the top k is unique and any selection order gives
// it. Key 0 is "no candidate" (an excluded item, a position past the end); every real key is
// above it (the smallest, -inf with the last item, has 0x007fffff in its high half).
//
// Selection. A tile of kTopkTile keys is sorted in shared memory by a bitonic network
// (descending) and its first k keys are written out. The first pass reads similarities [rows, n]
// (one tile per block, blockIdx.y = row); later passes read the previous pass's outputs, tiles
// of k-key runs, until one run of k keys is left. k <= kTopkTile / 2, so every pass at least
// halves the candidates.
#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/cuda_check.h"
#include "kernels/cuda_kernels.cuh"

namespace mg {

namespace {

constexpr int kThreads = 256;
static_assert(kTopkTile % (2 * kThreads) == 0, "the bitonic network gives each thread whole pairs");

__device__ __forceinline__ uint64_t make_key(float s, int64_t item) {
  const bool nan = isnan(s);
  float v = nan ? -INFINITY : s;
  if (v == 0.0f) v = 0.0f;  // -0 -> +0
  const uint32_t b = __float_as_uint(v);
  const uint32_t ord = (b & 0x80000000u) ? ~b : (b | 0x80000000u);
  const uint32_t low = (0x7fffffffu - static_cast<uint32_t>(item)) << 1 | (nan ? 1u : 0u);
  return static_cast<uint64_t>(ord) << 32 | low;
}

// Sorts s [kTopkTile] descending. Every thread of the block takes part.
__device__ void bitonic_sort_desc(uint64_t* s) {
  for (int size = 2; size <= kTopkTile; size <<= 1) {
    for (int stride = size >> 1; stride > 0; stride >>= 1) {
      __syncthreads();
      for (int t = threadIdx.x; t < kTopkTile / 2; t += kThreads) {
        const int lo = 2 * t - (t & (stride - 1));
        const int hi = lo + stride;
        const uint64_t a = s[lo], b = s[hi];
        // Runs whose bit `size` is clear end up descending; at size = kTopkTile all of them.
        const bool desc = (lo & size) == 0;
        if (desc ? a < b : a > b) {
          s[lo] = b;
          s[hi] = a;
        }
      }
    }
  }
  __syncthreads();
}

// Tile blockIdx.x of row blockIdx.y of sims [rows, n] (row stride n): items item0 + j.
__global__ void __launch_bounds__(kThreads)
    topk_sims_kernel(const float* __restrict__ sims, int64_t n, int64_t item0, const int32_t* __restrict__ exclude,
                     int k, uint64_t* __restrict__ out, int64_t ld_out) {
  __shared__ uint64_t s[kTopkTile];
  const int64_t row = blockIdx.y;
  const int64_t j0 = static_cast<int64_t>(blockIdx.x) * kTopkTile;
  const int64_t skip = exclude ? static_cast<int64_t>(exclude[row]) : -1;
  const float* r = sims + row * n;
  for (int i = threadIdx.x; i < kTopkTile; i += kThreads) {
    const int64_t j = j0 + i;
    s[i] = j < n && item0 + j != skip ? make_key(r[j], item0 + j) : 0ull;
  }
  bitonic_sort_desc(s);
  uint64_t* o = out + row * ld_out + static_cast<int64_t>(blockIdx.x) * k;
  for (int i = threadIdx.x; i < k; i += kThreads) o[i] = s[i];
}

// Tile blockIdx.x of row blockIdx.y of keys [rows, m] (row stride ld_in).
__global__ void __launch_bounds__(kThreads)
    topk_keys_kernel(const uint64_t* __restrict__ in, int64_t ld_in, int64_t m, int k, uint64_t* __restrict__ out,
                     int64_t ld_out) {
  __shared__ uint64_t s[kTopkTile];
  const int64_t row = blockIdx.y;
  const int64_t j0 = static_cast<int64_t>(blockIdx.x) * kTopkTile;
  const uint64_t* r = in + row * ld_in;
  for (int i = threadIdx.x; i < kTopkTile; i += kThreads) {
    const int64_t j = j0 + i;
    s[i] = j < m ? r[j] : 0ull;
  }
  bitonic_sort_desc(s);
  uint64_t* o = out + row * ld_out + static_cast<int64_t>(blockIdx.x) * k;
  for (int i = threadIdx.x; i < k; i += kThreads) o[i] = s[i];
}

__global__ void topk_decode_kernel(const uint64_t* __restrict__ keys, int64_t ld, int64_t rows, int k,
                                   int32_t* __restrict__ out_items, float* __restrict__ out_sims) {
  const int64_t total = rows * k;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = e / k, r = e % k;
    const uint64_t key = keys[row * ld + r];
    if (key == 0) {
      out_items[e] = -1;
      out_sims[e] = -INFINITY;
      continue;
    }
    const auto ord = static_cast<uint32_t>(key >> 32);
    const auto low = static_cast<uint32_t>(key);
    const uint32_t b = (ord & 0x80000000u) ? (ord & 0x7fffffffu) : ~ord;
    out_items[e] = static_cast<int32_t>(0x7fffffffu - (low >> 1));
    out_sims[e] = (low & 1u) ? __uint_as_float(0x7fc00000u) : __uint_as_float(b);
  }
}

void check_rows_k(int64_t rows, int k, const char* what) {
  if (rows < 0 || rows > 65535)
    throw std::invalid_argument(std::string(what) + ": rows must be in [0, 65535] (got " + std::to_string(rows) + ")");
  if (k < 1 || k > kTopkTile / 2)
    throw std::invalid_argument(std::string(what) + ": k must be in [1, " + std::to_string(kTopkTile / 2) + "] (got " +
                                std::to_string(k) + ")");
}

}  // namespace

int64_t topk_tiles(int64_t n) { return (n + kTopkTile - 1) / kTopkTile; }

void topk_select_sims_cuda(const float* sims, int64_t rows, int64_t n, int64_t item0, const int32_t* exclude, int k,
                           uint64_t* out, int64_t ld_out, cudaStream_t stream) {
  check_rows_k(rows, k, "topk_select_sims_cuda");
  if (rows == 0 || n == 0) return;
  const dim3 grid(static_cast<unsigned>(topk_tiles(n)), static_cast<unsigned>(rows));
  topk_sims_kernel<<<grid, kThreads, 0, stream>>>(sims, n, item0, exclude, k, out, ld_out);
  MG_CUDA_CHECK_LAUNCH();
}

void topk_select_keys_cuda(const uint64_t* in, int64_t ld_in, int64_t rows, int64_t m, int k, uint64_t* out,
                           int64_t ld_out, cudaStream_t stream) {
  check_rows_k(rows, k, "topk_select_keys_cuda");
  if (rows == 0 || m == 0) return;
  const dim3 grid(static_cast<unsigned>(topk_tiles(m)), static_cast<unsigned>(rows));
  topk_keys_kernel<<<grid, kThreads, 0, stream>>>(in, ld_in, m, k, out, ld_out);
  MG_CUDA_CHECK_LAUNCH();
}

void topk_decode_cuda(const uint64_t* keys, int64_t ld, int64_t rows, int k, int32_t* out_items, float* out_sims,
                      cudaStream_t stream) {
  const int64_t total = rows * k;
  if (total == 0) return;
  const int blocks = static_cast<int>(std::min<int64_t>((total + kThreads - 1) / kThreads, 4096));
  topk_decode_kernel<<<blocks, kThreads, 0, stream>>>(keys, ld, rows, k, out_items, out_sims);
  MG_CUDA_CHECK_LAUNCH();
}

}  // namespace mg
