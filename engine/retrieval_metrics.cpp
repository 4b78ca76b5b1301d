#include "engine/retrieval_metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>

#include "kernels/blas.h"
#include "kernels/philox.h"

namespace mg {

// ---- per-query metrics ---------------------------------------------------------------------

std::optional<QueryScores> score_query(std::span<const int32_t> ranked, const RelevantSet& relevant, int k) {
  if (k < 1) throw std::invalid_argument("retrieval metrics: k must be >= 1 (got " + std::to_string(k) + ")");
  if (relevant.items.size() != relevant.hops.size())
    throw std::invalid_argument("retrieval metrics: " + std::to_string(relevant.items.size()) + " relevant items but " +
                                std::to_string(relevant.hops.size()) + " hop distances");
  if (relevant.items.empty()) return std::nullopt;

  // (item, hops) sorted by item for lookups.
  std::vector<std::pair<int32_t, int>> rel(relevant.items.size());
  for (size_t j = 0; j < rel.size(); ++j) {
    if (relevant.hops[j] < 1)
      throw std::invalid_argument("retrieval metrics: relevant item " + std::to_string(relevant.items[j]) +
                                  " has hop distance 0 (relevant items are at >= 1 hop)");
    rel[j] = {relevant.items[j], relevant.hops[j]};
  }
  std::sort(rel.begin(), rel.end());
  for (size_t j = 1; j < rel.size(); ++j)
    if (rel[j].first == rel[j - 1].first)
      throw std::invalid_argument("retrieval metrics: relevant item " + std::to_string(rel[j].first) + " is listed twice");

  const size_t depth = std::min(ranked.size(), static_cast<size_t>(k));
  std::vector<int32_t> seen(ranked.begin(), ranked.begin() + static_cast<std::ptrdiff_t>(depth));
  std::sort(seen.begin(), seen.end());
  if (!seen.empty() && seen.front() < 0)
    throw std::invalid_argument("retrieval metrics: negative item index " + std::to_string(seen.front()) + " in the ranking");
  if (const auto dup = std::adjacent_find(seen.begin(), seen.end()); dup != seen.end())
    throw std::invalid_argument("retrieval metrics: item " + std::to_string(*dup) + " is ranked twice");

  double hits = 0, ap = 0, dcg = 0;
  for (size_t i = 0; i < depth; ++i) {
    const auto it = std::lower_bound(rel.begin(), rel.end(), std::pair<int32_t, int>{ranked[i], 0});
    if (it == rel.end() || it->first != ranked[i]) continue;
    hits += 1;
    ap += hits / static_cast<double>(i + 1);
    dcg += (1.0 / it->second) / std::log2(static_cast<double>(i + 2));
  }
  const size_t m = std::min(rel.size(), static_cast<size_t>(k));
  // The ideal top k: the m relevant items closest in hops.
  std::vector<int> hops(rel.size());
  for (size_t j = 0; j < rel.size(); ++j) hops[j] = rel[j].second;
  std::partial_sort(hops.begin(), hops.begin() + static_cast<std::ptrdiff_t>(m), hops.end());
  double idcg = 0;
  for (size_t i = 0; i < m; ++i) idcg += (1.0 / hops[i]) / std::log2(static_cast<double>(i + 2));

  QueryScores s;
  s.recall = hits / static_cast<double>(m);
  s.hit = hits > 0 ? 1.0 : 0.0;
  s.ap = ap / static_cast<double>(m);
  s.ndcg = dcg / idcg;
  return s;
}

// ---- accumulation --------------------------------------------------------------------------

RetrievalAccumulator::RetrievalAccumulator(int k, int n_buckets) : k_(k) {
  if (k < 1) throw std::invalid_argument("retrieval metrics: k must be >= 1 (got " + std::to_string(k) + ")");
  if (n_buckets < 0)
    throw std::invalid_argument("retrieval metrics: n_buckets must be >= 0 (got " + std::to_string(n_buckets) + ")");
  buckets_.resize(static_cast<size_t>(n_buckets));
}

bool RetrievalAccumulator::add(std::span<const int32_t> ranked, const RelevantSet& relevant, int bucket) {
  if (bucket < -1 || bucket >= n_buckets())
    throw std::invalid_argument("retrieval metrics: bucket " + std::to_string(bucket) + " is not in [0, " +
                                std::to_string(n_buckets()) + ") (or -1 for none)");
  const std::optional<QueryScores> q = score_query(ranked, relevant, k_);
  for (Sums* s : {&all_, bucket >= 0 ? &buckets_[static_cast<size_t>(bucket)] : nullptr}) {
    if (!s) continue;
    if (!q) {
      ++s->skipped;
      continue;
    }
    ++s->queries;
    s->recall += q->recall;
    s->hit += q->hit;
    s->ap += q->ap;
    s->ndcg += q->ndcg;
  }
  return q.has_value();
}

RetrievalMetrics RetrievalAccumulator::bucket(int b) const {
  if (b < 0 || b >= n_buckets())
    throw std::invalid_argument("retrieval metrics: bucket " + std::to_string(b) + " is not in [0, " +
                                std::to_string(n_buckets()) + ")");
  return mean(buckets_[static_cast<size_t>(b)]);
}

RetrievalMetrics RetrievalAccumulator::mean(const Sums& s) {
  RetrievalMetrics r;
  r.queries = s.queries;
  r.skipped = s.skipped;
  if (s.queries > 0) {
    const auto n = static_cast<double>(s.queries);
    r.recall = s.recall / n;
    r.hit_rate = s.hit / n;
    r.map = s.ap / n;
    r.ndcg = s.ndcg / n;
  }
  return r;
}

// ---- triplet accuracy ----------------------------------------------------------------------

TripletAccuracy triplet_accuracy(const float* emb, int64_t N, int D, std::span<const int32_t> triplets) {
  if (triplets.size() % 3)
    throw std::invalid_argument("triplet_accuracy: " + std::to_string(triplets.size()) +
                                " indices is not a whole number of (a, p, n) triplets");
  if (D < 1) throw std::invalid_argument("triplet_accuracy: D must be >= 1 (got " + std::to_string(D) + ")");
  for (const int32_t i : triplets)
    if (i < 0 || i >= N)
      throw std::invalid_argument("triplet_accuracy: item " + std::to_string(i) + " is not in [0, " +
                                  std::to_string(N) + ")");
  auto dist2 = [&](int32_t a, int32_t b) {
    const float* x = emb + static_cast<int64_t>(a) * D;
    const float* y = emb + static_cast<int64_t>(b) * D;
    double s = 0;
    for (int d = 0; d < D; ++d) {
      const double t = static_cast<double>(x[d]) - y[d];
      s += t * t;
    }
    return s;
  };
  TripletAccuracy acc;
  acc.triplets = static_cast<int64_t>(triplets.size() / 3);
  for (size_t t = 0; t < triplets.size(); t += 3)
    if (dist2(triplets[t], triplets[t + 1]) < dist2(triplets[t], triplets[t + 2])) ++acc.correct;
  return acc;
}

// ---- spread ------------------------------------------------------------------------------

SimilaritySpread similarity_spread(const float* vecs, int64_t n, int d, int64_t max_pairs, uint64_t seed) {
  if (n < 0 || d < 1 || max_pairs < 1)
    throw std::invalid_argument("similarity_spread: need n >= 0, d >= 1, max_pairs >= 1 (got n " + std::to_string(n) +
                                ", d " + std::to_string(d) + ", max_pairs " + std::to_string(max_pairs) + ")");
  SimilaritySpread s;
  if (n == 0) return s;
  auto dot = [&](int64_t i, int64_t j) {
    double acc = 0;
    for (int c = 0; c < d; ++c) acc += static_cast<double>(vecs[i * d + c]) * vecs[j * d + c];
    return acc;
  };
  std::vector<double> mean(static_cast<size_t>(d), 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int c = 0; c < d; ++c) mean[static_cast<size_t>(c)] += vecs[i * d + c];
  double norm2 = 0;
  for (const double m : mean) norm2 += (m / static_cast<double>(n)) * (m / static_cast<double>(n));
  s.mean_norm = std::sqrt(norm2);
  if (n < 2) return s;
  std::vector<double> sims;
  const double all = static_cast<double>(n) * static_cast<double>(n - 1) / 2;
  if (all <= static_cast<double>(max_pairs)) {
    sims.reserve(static_cast<size_t>(all));
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = i + 1; j < n; ++j) sims.push_back(dot(i, j));
  } else {
    s.sampled = true;
    sims.resize(static_cast<size_t>(max_pairs));
    const auto un = static_cast<uint64_t>(n);
#pragma omp parallel for schedule(static)
    for (int64_t p = 0; p < max_pairs; ++p) {
      // i uniform, j uniform among the other n - 1 rows ((u * m) >> 32: bias below m / 2^32).
      const auto pu = static_cast<uint64_t>(p);
      const auto i = static_cast<int64_t>((static_cast<uint64_t>(philox_u32(seed, kSpreadStream, 2 * pu)) * un) >> 32);
      auto j = static_cast<int64_t>((static_cast<uint64_t>(philox_u32(seed, kSpreadStream, 2 * pu + 1)) * (un - 1)) >> 32);
      if (j >= i) ++j;
      sims[static_cast<size_t>(p)] = dot(i, j);
    }
  }
  std::sort(sims.begin(), sims.end());
  s.pairs = static_cast<int64_t>(sims.size());
  // Nearest rank: the smallest value with at least q of the pairs at or below it.
  auto rank = [&](double q) {
    const auto r = static_cast<size_t>(std::ceil(q * static_cast<double>(sims.size())));
    return sims[std::clamp<size_t>(r, 1, sims.size()) - 1];
  };
  s.p5 = rank(0.05);
  s.median = rank(0.5);
  s.p95 = rank(0.95);
  return s;
}

}  // namespace mg
