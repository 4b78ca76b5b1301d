// The supervised contrastive loss on the GPU (semantics in kernels/contrastive_loss_cpu.h), in
// three kernels over the rows of the batch:
//
//   row stats  one block per row i: warp w takes the columns j = w, w + kWarps, ...; a column
//              outside A(i) is skipped before any arithmetic (the mask byte is warp-uniform);
//              the lanes sum e_i . e_j in double in mining_dot's order (the CPU's bits), and
//              each warp keeps an online log-sum-exp, |P| and the sum over P; thread 0 merges
//              the warps: lse_i, 1 / |P(i)| (0 for a row without a positive) and L_i.
//   finalize   one block: the valid rows and the mean loss (a fixed-order tree: deterministic),
//              stats = {mean loss, valid rows}, and the gradient's scale 1 / (tau n).
//   gradient   one block per row k: for chunks of kChunk columns the warps compute the
//              coefficients c_kj + c_jk into shared memory, then thread t adds c * e_j[t] over
//              the chunk in increasing j (the CPU's order); E beyond the block is tiled.
//
// No atomics: every sum has one fixed order, so a replay gives the same bits. The workspace
// (contrastive_workspace_bytes) holds lse, 1 / |P| and L per row, and the scale.
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/contrastive_loss_cpu.h"
#include "kernels/cuda_check.h"
#include "kernels/cuda_kernels.cuh"
#include "kernels/cuda_launch.cuh"

namespace mg {

namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kChunk = 256;  // gradient columns per shared-memory chunk

struct Workspace {
  double* lse;
  double* inv_pos;
  double* loss;
  double* scale;
};

__host__ __device__ Workspace workspace_of(void* ws, int N) {
  auto* d = static_cast<double*>(ws);
  return {d, d + N, d + 2 * static_cast<int64_t>(N), d + 3 * static_cast<int64_t>(N)};
}

// mining_dot's order: lane l sums elements l, l + 32, ... in turn, then the butterfly.
__device__ __forceinline__ double warp_dot(const float* __restrict__ x, const float* __restrict__ y, int E, int lane) {
  double acc = 0;
  for (int e = lane; e < E; e += 32) acc += static_cast<double>(x[e]) * static_cast<double>(y[e]);
  return warp_sum(acc);
}

__device__ __forceinline__ bool in_support(int h, int pos_hops, int neg_hops) { return h <= pos_hops || h >= neg_hops; }

__global__ void __launch_bounds__(kThreads)
    contrastive_row_stats_kernel(const float* __restrict__ emb, const uint8_t* __restrict__ hops, int N, int E,
                                 double inv_tau, int pos_hops, int neg_hops, Workspace ws) {
  __shared__ double s_max[kWarps], s_sum[kWarps], s_pos_sum[kWarps];
  __shared__ int s_pos[kWarps];
  const int i = blockIdx.x;  // grid = N
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const float* ei = emb + static_cast<int64_t>(i) * E;
  const uint8_t* row = hops + static_cast<int64_t>(i) * N;

  // Online log-sum-exp: m the running max, se = sum exp(s - m). A NaN similarity makes se NaN.
  double m = -INFINITY, se = 0, pos_sum = 0;
  int n_pos = 0;
  for (int j = warp; j < N; j += kWarps) {
    const int h = row[j];
    if (j == i || !in_support(h, pos_hops, neg_hops)) continue;  // warp-uniform
    const double s = warp_dot(ei, emb + static_cast<int64_t>(j) * E, E, lane) * inv_tau;
    if (s > m) {
      se = se * exp(m - s) + 1.0;
      m = s;
    } else {
      se += exp(s - m);
    }
    if (h <= pos_hops) {
      ++n_pos;
      pos_sum += s;
    }
  }
  if (lane == 0) {
    s_max[warp] = m;
    s_sum[warp] = se;
    s_pos[warp] = n_pos;
    s_pos_sum[warp] = pos_sum;
  }
  __syncthreads();
  if (threadIdx.x != 0) return;
  double mx = -INFINITY;
  int pos = 0;
  double psum = 0;
  for (int w = 0; w < kWarps; ++w) {
    if (s_sum[w] != 0 || isnan(s_sum[w])) mx = fmax(mx, s_max[w]);
    pos += s_pos[w];
    psum += s_pos_sum[w];
  }
  double total = 0;
  for (int w = 0; w < kWarps; ++w)
    if (s_sum[w] != 0 || isnan(s_sum[w])) total += s_sum[w] * exp(s_max[w] - mx);
  if (pos == 0) {
    ws.lse[i] = 0;
    ws.inv_pos[i] = 0;
    ws.loss[i] = 0;
    return;
  }
  const double lse = mx + log(total);
  ws.lse[i] = lse;
  ws.inv_pos[i] = 1.0 / pos;
  ws.loss[i] = lse - psum / pos;
}

__global__ void __launch_bounds__(kThreads)
    contrastive_finalize_kernel(int N, double inv_tau, Workspace ws, float* __restrict__ stats) {
  __shared__ double s_loss[kThreads];
  __shared__ int s_valid[kThreads];
  double loss = 0;
  int valid = 0;
  for (int i = threadIdx.x; i < N; i += kThreads) {
    if (ws.inv_pos[i] > 0) {
      loss += ws.loss[i];
      ++valid;
    }
  }
  s_loss[threadIdx.x] = loss;
  s_valid[threadIdx.x] = valid;
  __syncthreads();
  for (int o = kThreads / 2; o > 0; o >>= 1) {
    if (threadIdx.x < o) {
      s_loss[threadIdx.x] += s_loss[threadIdx.x + o];
      s_valid[threadIdx.x] += s_valid[threadIdx.x + o];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    const int n = s_valid[0];
    stats[0] = n > 0 ? static_cast<float>(s_loss[0] / n) : 0.0f;
    stats[1] = static_cast<float>(n);
    *ws.scale = n > 0 ? inv_tau / n : 0.0;
  }
}

__global__ void __launch_bounds__(kThreads)
    contrastive_grad_kernel(const float* __restrict__ emb, const uint8_t* __restrict__ hops, int N, int E,
                            double inv_tau, int pos_hops, int neg_hops, Workspace ws, float* __restrict__ demb) {
  __shared__ double s_c[kChunk];
  const int k = blockIdx.x;  // grid = N
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const float* ek = emb + static_cast<int64_t>(k) * E;
  const double lse_k = ws.lse[k], inv_k = ws.inv_pos[k];
  const double scale = *ws.scale;
  for (int e0 = 0; e0 < E; e0 += kThreads) {
    const int e = e0 + static_cast<int>(threadIdx.x);
    double acc = 0;
    for (int j0 = 0; j0 < N; j0 += kChunk) {
      const int nj = min(kChunk, N - j0);
      for (int jj = warp; jj < nj; jj += kWarps) {
        const int j = j0 + jj;
        const int hkj = hops[static_cast<int64_t>(k) * N + j], hjk = hops[static_cast<int64_t>(j) * N + k];
        const double inv_j = ws.inv_pos[j];
        const bool from_k = j != k && inv_k > 0 && in_support(hkj, pos_hops, neg_hops);
        const bool from_j = j != k && inv_j > 0 && in_support(hjk, pos_hops, neg_hops);
        double c = 0;
        if (from_k || from_j) {  // warp-uniform
          const double sim = warp_dot(ek, emb + static_cast<int64_t>(j) * E, E, lane) * inv_tau;
          if (from_k) c += exp(sim - lse_k) - (hkj <= pos_hops ? inv_k : 0.0);
          if (from_j) c += exp(sim - ws.lse[j]) - (hjk <= pos_hops ? inv_j : 0.0);
        }
        if (lane == 0) s_c[jj] = c;
      }
      __syncthreads();
      if (e < E)
        for (int jj = 0; jj < nj; ++jj) acc += s_c[jj] * static_cast<double>(emb[static_cast<int64_t>(j0 + jj) * E + e]);
      __syncthreads();
    }
    if (e < E) demb[static_cast<int64_t>(k) * E + e] = static_cast<float>(acc * scale);
  }
}

}  // namespace

void contrastive_loss_cuda(const float* emb, const uint8_t* hops, int N, int E, const ContrastiveLossParams& p,
                           float* stats, float* demb, void* workspace, cudaStream_t stream) {
  if (N < 1 || E < 1)
    throw std::invalid_argument("contrastive_loss_cuda: need N >= 1 rows and E >= 1 (got N " + std::to_string(N) +
                                ", E " + std::to_string(E) + ")");
  if (N > kMaxContrastiveRows)
    throw std::invalid_argument("contrastive_loss_cuda: " + std::to_string(N) + " rows; at most " +
                                std::to_string(kMaxContrastiveRows) + " (the valid count travels as a float)");
  check_contrastive_params(p);
  if (!workspace) throw std::invalid_argument("contrastive_loss_cuda: no workspace (contrastive_workspace_bytes)");
  const double inv_tau = 1.0 / p.temperature;
  const Workspace ws = workspace_of(workspace, N);
  contrastive_row_stats_kernel<<<N, kThreads, 0, stream>>>(emb, hops, N, E, inv_tau, p.pos_hops, p.neg_hops, ws);
  MG_CUDA_CHECK_LAUNCH();
  contrastive_finalize_kernel<<<1, kThreads, 0, stream>>>(N, inv_tau, ws, stats);
  MG_CUDA_CHECK_LAUNCH();
  if (!demb) return;
  contrastive_grad_kernel<<<N, kThreads, 0, stream>>>(emb, hops, N, E, inv_tau, p.pos_hops, p.neg_hops, ws, demb);
  MG_CUDA_CHECK_LAUNCH();
}

}  // namespace mg
