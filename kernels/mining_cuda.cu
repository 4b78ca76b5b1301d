// In-batch mining on the GPU (semantics in kernels/mining_cpu.h): one block per anchor.
//
// Block i holds anchor i. Warp 0 first computes d(a, p) for the semi-hard band. Then warp w
// takes the columns j = w, w + kWarps, ... in increasing order; a column the graph mask rejects
// is skipped before any arithmetic (the mask byte is the same for the whole warp, so the skip is
// uniform); for the others the lanes stride over E accumulating a.x in double and warp_sum
// combines the 32 partials: exactly mining_dot's order, so d(a, x) has the CPU's bits. Each warp
// keeps its best (d, j) with a strict < over increasing j (the lowest index of a tie); thread 0
// then takes the minimum (d, j) pair over the warps and writes the triplet row.
//
// Work: B * 2B * E multiply-adds in double at most (B = 300, E = 128: 23 M), spread over B
// blocks. A GEMM for the B x 2B similarities would be faster at large B but would sum in
// another order, and at the batches the trainer uses (<= a few hundred) the kernel takes
// tens of microseconds next to milliseconds for the model.
//
// Counts: the host cannot read anything mid-step, so counts [2] is zeroed by a memset on the
// stream and each block adds its integers with atomicAdd. Integer-valued floats below 2^24
// add exactly in any order, so the counts are deterministic; mine_triplets_cuda refuses
// more than kMaxMiningAnchors anchors (B * 2B < 2^24).
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/cuda_check.h"
#include "kernels/cuda_kernels.cuh"
#include "kernels/cuda_launch.cuh"

namespace mg {

namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

// mining_cpu.cpp's mining_distance: the loss's clamp, NaN propagating.
__device__ __forceinline__ double mining_distance(double dot, double eps) {
  const double s = 2.0 * (1.0 - dot);
  return sqrt(s < eps ? eps : s);
}

// mining_dot's order: lane l sums elements l, l + 32, ... in turn, then the butterfly.
__device__ __forceinline__ double warp_dot(const float* __restrict__ x, const float* __restrict__ y, int E, int lane) {
  double acc = 0;
  for (int e = lane; e < E; e += 32) acc += static_cast<double>(x[e]) * static_cast<double>(y[e]);
  return warp_sum(acc);
}

__global__ void __launch_bounds__(kThreads)
    mine_triplets_kernel(const float* __restrict__ emb, const uint8_t* __restrict__ hops, int B, int E, bool semi,
                         int neg_hops, double margin, double eps, int32_t* __restrict__ triplets,
                         float* __restrict__ counts) {
  __shared__ double s_dap;
  __shared__ double s_best_d[kWarps];
  __shared__ int s_best_j[kWarps];
  __shared__ int s_cand[kWarps];

  const int i = blockIdx.x;  // grid = B
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int N = 2 * B;
  const float* a = emb + static_cast<int64_t>(i) * E;

  if (warp == 0) {
    const double dap = mining_distance(warp_dot(a, emb + static_cast<int64_t>(B + i) * E, E, lane), eps);
    if (lane == 0) s_dap = dap;
  }
  __syncthreads();
  const double dap = s_dap;
  const double hi = dap + margin;

  const uint8_t* row = hops + static_cast<int64_t>(i) * N;
  double best = INFINITY;
  int best_j = -1;
  int cand = 0;
  for (int j = warp; j < N; j += kWarps) {
    if (j == i || row[j] < neg_hops) continue;  // warp-uniform
    ++cand;
    const double d = mining_distance(warp_dot(a, emb + static_cast<int64_t>(j) * E, E, lane), eps);
    if (semi && !(dap < d && d <= hi)) continue;
    if (d < best) {  // every lane holds the same d: the warp agrees
      best = d;
      best_j = j;
    }
  }
  if (lane == 0) {
    s_best_d[warp] = best;
    s_best_j[warp] = best_j;
    s_cand[warp] = cand;
  }
  __syncthreads();

  if (threadIdx.x == 0) {
    double bd = INFINITY;
    int bj = -1;
    int total = 0;
    for (int w = 0; w < kWarps; ++w) {
      total += s_cand[w];
      const int j = s_best_j[w];
      if (j < 0) continue;
      const double d = s_best_d[w];
      if (bj < 0 || d < bd || (d == bd && j < bj)) {
        bd = d;
        bj = j;
      }
    }
    int32_t* t = triplets + 3 * static_cast<int64_t>(i);
    if (bj >= 0) {
      t[0] = i;
      t[1] = B + i;
      t[2] = bj;
      atomicAdd(&counts[0], 1.0f);
    } else {
      t[0] = t[1] = t[2] = -1;
    }
    if (total) atomicAdd(&counts[1], static_cast<float>(total));
  }
}

}  // namespace

void mine_triplets_cuda(const float* emb, const uint8_t* hops, int B, int E, const MiningParams& p, int32_t* triplets,
                        float* counts, cudaStream_t stream) {
  // mine_triplets_cpu's argument checks, plus the exact-count limit.
  if (B < 1)
    throw std::invalid_argument("mine_triplets_cuda: need at least one anchor (B = " + std::to_string(B) + ")");
  if (E < 1)
    throw std::invalid_argument("mine_triplets_cuda: embedding size must be >= 1 (E = " + std::to_string(E) + ")");
  if (p.neg_hops < 1 || p.neg_hops > 255)
    throw std::invalid_argument("mine_triplets_cuda: neg_hops must be in 1..255 (hop distances are bytes), got " +
                                std::to_string(p.neg_hops));
  if (B > kMaxMiningAnchors)
    throw std::invalid_argument("mine_triplets_cuda: " + std::to_string(B) + " anchors; at most " +
                                std::to_string(kMaxMiningAnchors) + " per batch (the float counts must stay exact)");
  MG_CUDA_CHECK(cudaMemsetAsync(counts, 0, 2 * sizeof(float), stream));
  mine_triplets_kernel<<<B, kThreads, 0, stream>>>(emb, hops, B, E, p.rule == NegativeMining::SemiHard, p.neg_hops,
                                                  p.margin, p.eps, triplets, counts);
  MG_CUDA_CHECK_LAUNCH();
}

}  // namespace mg
