#include "kernels/contrastive_loss_cpu.h"

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/mining_cpu.h"

namespace mg {

void check_contrastive_params(const ContrastiveLossParams& p) {
  if (!(p.temperature > 0) || !std::isfinite(p.temperature))
    throw std::invalid_argument("contrastive_loss: temperature must be finite and > 0 (got " +
                                std::to_string(p.temperature) + ")");
  if (p.pos_hops < 0 || p.neg_hops <= p.pos_hops || p.neg_hops > 255)
    throw std::invalid_argument("contrastive_loss: need 0 <= pos_hops < neg_hops <= 255 (got pos_hops " +
                                std::to_string(p.pos_hops) + ", neg_hops " + std::to_string(p.neg_hops) + ")");
}

template <class T>
ContrastiveLossResult contrastive_loss_cpu(const T* emb, const uint8_t* hops, int N, int E,
                                           const ContrastiveLossParams& p, T* demb) {
  if (N < 1 || E < 1)
    throw std::invalid_argument("contrastive_loss: need N >= 1 rows and E >= 1 (got N " + std::to_string(N) + ", E " +
                                std::to_string(E) + ")");
  check_contrastive_params(p);
  const double inv_tau = 1.0 / p.temperature;
  const auto row = [&](int i) { return emb + static_cast<int64_t>(i) * E; };
  const auto hop = [&](int i, int j) { return static_cast<int>(hops[static_cast<int64_t>(i) * N + j]); };
  const auto positive = [&](int h) { return h <= p.pos_hops; };
  const auto in_support = [&](int h) { return h <= p.pos_hops || h >= p.neg_hops; };

  // Rows are independent in both passes, so they are split among threads; each row's sums run
  // in a fixed order and the loss is summed over rows afterwards, in row order, so the result
  // does not depend on the thread count.
  // Pass 1, per row: log-sum-exp over A(i), |P(i)| and L_i (0 and inv_pos 0 without a positive).
  std::vector<double> lse(static_cast<size_t>(N), 0.0), inv_pos(static_cast<size_t>(N), 0.0),
      row_loss(static_cast<size_t>(N), 0.0);
#pragma omp parallel
  {
    std::vector<double> s(static_cast<size_t>(N));
#pragma omp for schedule(static)
    for (int i = 0; i < N; ++i) {
      int64_t n_pos = 0;
      double mx = -std::numeric_limits<double>::infinity(), sum_pos = 0;
      for (int j = 0; j < N; ++j) {
        const int h = hop(i, j);
        if (j == i || !in_support(h)) continue;
        s[static_cast<size_t>(j)] = mining_dot(row(i), row(j), E) * inv_tau;
        mx = std::fmax(mx, s[static_cast<size_t>(j)]);
        if (positive(h)) {
          ++n_pos;
          sum_pos += s[static_cast<size_t>(j)];
        }
      }
      if (n_pos == 0) continue;
      double sum_exp = 0;
      for (int j = 0; j < N; ++j)
        if (j != i && in_support(hop(i, j))) sum_exp += std::exp(s[static_cast<size_t>(j)] - mx);
      lse[static_cast<size_t>(i)] = mx + std::log(sum_exp);
      inv_pos[static_cast<size_t>(i)] = 1.0 / static_cast<double>(n_pos);
      row_loss[static_cast<size_t>(i)] = lse[static_cast<size_t>(i)] - sum_pos / static_cast<double>(n_pos);
    }
  }
  ContrastiveLossResult r;
  double total = 0;
  for (int i = 0; i < N; ++i) {
    if (inv_pos[static_cast<size_t>(i)] == 0) continue;
    total += row_loss[static_cast<size_t>(i)];
    ++r.valid;
  }
  if (r.valid > 0) r.loss = total / static_cast<double>(r.valid);
  if (!demb) return r;

  // Pass 2, per row k: sum_j (c_kj + c_jk) e_j, scaled by 1 / (tau n).
  const double scale = r.valid > 0 ? inv_tau / static_cast<double>(r.valid) : 0.0;
#pragma omp parallel
  {
    std::vector<double> acc(static_cast<size_t>(E));
#pragma omp for schedule(static)
    for (int k = 0; k < N; ++k) {
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int j = 0; j < N; ++j) {
        if (j == k) continue;
        const int hkj = hop(k, j), hjk = hop(j, k);
        const bool from_k = inv_pos[static_cast<size_t>(k)] > 0 && in_support(hkj);
        const bool from_j = inv_pos[static_cast<size_t>(j)] > 0 && in_support(hjk);
        if (!from_k && !from_j) continue;
        const double sim = mining_dot(row(k), row(j), E) * inv_tau;
        double c = 0;
        if (from_k)
          c += std::exp(sim - lse[static_cast<size_t>(k)]) - (positive(hkj) ? inv_pos[static_cast<size_t>(k)] : 0.0);
        if (from_j)
          c += std::exp(sim - lse[static_cast<size_t>(j)]) - (positive(hjk) ? inv_pos[static_cast<size_t>(j)] : 0.0);
        const T* ej = row(j);
        for (int e = 0; e < E; ++e) acc[static_cast<size_t>(e)] += c * static_cast<double>(ej[e]);
      }
      T* out = demb + static_cast<int64_t>(k) * E;
      for (int e = 0; e < E; ++e) out[e] = static_cast<T>(acc[static_cast<size_t>(e)] * scale);
    }
  }
  return r;
}

template ContrastiveLossResult contrastive_loss_cpu<float>(const float*, const uint8_t*, int, int,
                                                            const ContrastiveLossParams&, float*);
template ContrastiveLossResult contrastive_loss_cpu<double>(const double*, const uint8_t*, int, int,
                                                             const ContrastiveLossParams&, double*);

}  // namespace mg
