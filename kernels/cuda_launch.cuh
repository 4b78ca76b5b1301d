// Launch helpers shared by our CUDA kernels: the default block size, the grid cap for
// grid-stride loops, and the warp reduction every row kernel uses.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

namespace mg {

constexpr int kBlockThreads = 256;
constexpr int64_t kMaxGridBlocks = 4096;  // grid-stride loops cover the rest
constexpr unsigned kFullWarpMask = 0xffffffffu;

// Blocks for `work_items` items at `per_block` items per block, capped; 0 items gives 0
// blocks, so callers return before launching.
inline int grid_for(int64_t work_items, int per_block = kBlockThreads) {
  return static_cast<int>(std::min<int64_t>((work_items + per_block - 1) / per_block, kMaxGridBlocks));
}

// Butterfly sum over a full warp: partners add the same two values (commutative), so every
// lane ends with identical bits, and the order is fixed (deterministic).
__device__ __forceinline__ double warp_sum(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullWarpMask, v, o);
  return v;
}

}  // namespace mg
