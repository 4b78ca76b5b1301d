// Supervised contrastive loss over a batch with graph positives (SupCon, Khosla et al. 2020,
// the "outside" form; NT-Xent / InfoNCE when each row has one positive), fused with its
// gradient. The batch is the in-batch layout of kernels/mining_cpu.h: emb [N, E] unit rows
// and hops [N, N] uint8, hops[i * N + j] the graph distance between the items of rows i and j
// (0 for the same item, a value >= neg_hops for far or unreachable).
//
//   s_ij = e_i . e_j / tau
//   P(i) = { j != i : hops_ij <= pos_hops }            positives (the same item's other crops too)
//   A(i) = P(i) + { j : hops_ij >= neg_hops }          the softmax's support; rows in between
//                                                      (pos_hops < hops < neg_hops) are neither
//   L_i  = log sum_{a in A(i)} exp(s_ia) - (1 / |P(i)|) sum_{p in P(i)} s_ip
//   loss = mean of L_i over the rows with |P(i)| > 0 ("valid" rows; 0 when there are none)
//
// Every other row of the batch is a negative unless the graph says it is near: the loss pulls
// graph neighbours together and pushes everything else apart, so the embeddings spread over
// the sphere (Wang & Isola's uniformity) instead of satisfying a margin inside a narrow cone.
//
// Gradient, with q_ij = exp(s_ij - lse_i) (the softmax over A(i)) and n = valid rows:
//   c_ij = (q_ij - [j in P(i)] / |P(i)|) / (tau n)       for valid i and j in A(i), else 0
//   dloss/de_k = sum_j c_kj e_j + sum_i c_ik e_i          (s is symmetric in the two rows)
//
// Computed in two passes over the rows, each recomputing the dot products: per row the max,
// log-sum-exp, |P(i)| and L_i; then per row k the gradient, which needs the stats of every row.
// So the scratch is O(N), never N x N. Sums are in double, in a fixed order (the CUDA kernel
// sums each dot product in mining_dot's order, so its similarities are bit-identical).
#pragma once
#include <cstddef>
#include <cstdint>

namespace mg {

struct ContrastiveLossParams {
  double temperature = 0.1;  // tau > 0
  int pos_hops = 1;          // positives: hops <= pos_hops (>= 0)
  int neg_hops = 2;          // negatives: hops >= neg_hops (> pos_hops, <= 255)
};

// The most rows one call takes: the valid-row count travels to the host as a float, exact
// below 2^24 (and the hops matrix of 2^16 rows is already 4 GiB).
constexpr int kMaxContrastiveRows = 1 << 16;

// Device scratch the CUDA op needs for N rows (per row: log-sum-exp, 1 / |P|, L; one scale),
// owned by the caller and allocated outside any capture. The CPU op needs none.
constexpr size_t contrastive_workspace_bytes(int N) { return (3 * static_cast<size_t>(N) + 1) * sizeof(double); }

struct ContrastiveLossResult {
  double loss = 0;    // mean L_i over valid rows
  int64_t valid = 0;  // rows with at least one positive
};

// demb [N, E] overwritten (may be null). Throws std::invalid_argument for N < 1, E < 1 or
// parameters outside their ranges.
template <class T>
ContrastiveLossResult contrastive_loss_cpu(const T* emb, const uint8_t* hops, int N, int E,
                                           const ContrastiveLossParams& p, T* demb);

// Validates the parameters (the CPU and CUDA ops both call it): temperature finite and > 0,
// 0 <= pos_hops < neg_hops <= 255.
void check_contrastive_params(const ContrastiveLossParams& p);

}  // namespace mg
