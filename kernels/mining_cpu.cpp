#include "kernels/mining_cpu.h"

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace mg {

template <class T>
double mining_dot(const T* x, const T* y, int E) {
  double v[32] = {};
  for (int e = 0; e < E; ++e) v[e & 31] += static_cast<double>(x[e]) * static_cast<double>(y[e]);
  // The butterfly as lane 0 sees it: after the round with offset o, lanes l and l ^ o both hold
  // v[l] + v[l ^ o] (the same two values: the order of the sum does not matter), so lanes
  // l < o carry everything the later rounds read.
  for (int o = 16; o > 0; o >>= 1)
    for (int l = 0; l < o; ++l) v[l] += v[l + o];
  return v[0];
}

namespace {

// The loss's distance; written so that a NaN dot stays NaN (and is never chosen) instead of
// reading as the clamped, hardest distance.
double mining_distance(double dot, double eps) {
  const double s = 2.0 * (1.0 - dot);
  return std::sqrt(s < eps ? eps : s);
}

}  // namespace

template <class T>
MiningCounts mine_triplets_cpu(const T* emb, const uint8_t* hops, int B, int E, const MiningParams& p,
                               int32_t* triplets) {
  if (B < 1) throw std::invalid_argument("mine_triplets: need at least one anchor (B = " + std::to_string(B) + ")");
  if (E < 1) throw std::invalid_argument("mine_triplets: embedding size must be >= 1 (E = " + std::to_string(E) + ")");
  if (p.neg_hops < 1 || p.neg_hops > 255)
    throw std::invalid_argument("mine_triplets: neg_hops must be in 1..255 (hop distances are bytes), got " +
                                std::to_string(p.neg_hops));
  const int N = 2 * B;
  const bool semi = p.rule == NegativeMining::SemiHard;
  int64_t valid = 0, candidates = 0;
  // Anchors are independent; integer counts make the reduction order-free (deterministic).
  // Threads only for batches worth a fork (~1e5 multiply-adds and up): the tests' small
  // batches otherwise pay thread wake-ups many times their work.
  const bool threads = static_cast<int64_t>(B) * N * E >= (int64_t{1} << 17);
#pragma omp parallel for schedule(static) reduction(+ : valid, candidates) if (threads)
  for (int i = 0; i < B; ++i) {
    const T* a = emb + static_cast<int64_t>(i) * E;
    const double dap = mining_distance(mining_dot(a, emb + static_cast<int64_t>(B + i) * E, E), p.eps);
    const double hi = dap + p.margin;
    const uint8_t* row = hops + static_cast<int64_t>(i) * N;
    double best = std::numeric_limits<double>::infinity();
    int32_t best_j = -1;
    for (int j = 0; j < N; ++j) {
      if (j == i || row[j] < p.neg_hops) continue;
      ++candidates;
      const double d = mining_distance(mining_dot(a, emb + static_cast<int64_t>(j) * E, E), p.eps);
      if (semi && !(dap < d && d <= hi)) continue;
      if (d < best) {  // strict, columns in increasing order: the lowest index wins a tie
        best = d;
        best_j = j;
      }
    }
    int32_t* t = triplets + 3 * static_cast<int64_t>(i);
    if (best_j >= 0) {
      t[0] = i, t[1] = B + i, t[2] = best_j;
      ++valid;
    } else {
      t[0] = t[1] = t[2] = -1;
    }
  }
  return {valid, candidates};
}

template double mining_dot<float>(const float*, const float*, int);
template double mining_dot<double>(const double*, const double*, int);
template MiningCounts mine_triplets_cpu<float>(const float*, const uint8_t*, int, int, const MiningParams&, int32_t*);
template MiningCounts mine_triplets_cpu<double>(const double*, const uint8_t*, int, int, const MiningParams&,
                                                int32_t*);

}  // namespace mg
