#include "engine/retrieval_metrics.h"

#include <omp.h>

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

// ---- exact top-k ---------------------------------------------------------------------------

namespace {

// Items per sgemm block. Fixed (not derived from the thread count) so that every similarity
// comes from the same sgemm call shape whatever the number of threads. Blocks go to the
// threads dynamically (a thread the OS preempts holds nobody back); which thread ranks which
// block does not matter, since the merge keeps the unique top k of the union.
constexpr int64_t kItemBlock = 4096;
// Queries per sgemm block: each block of items is read once per this many queries.
constexpr int64_t kQueryBlock = 64;
// Similarities checked against the heap's threshold in one vectorised pass.
constexpr int64_t kScanChunk = 32;

struct Candidate {
  float key;  // the similarity, -inf for NaN (so that NaN ranks last)
  float sim;
  int32_t item;
};

// a ranks before b: higher similarity, then lower index. A strict total order over distinct
// items, so the top k is unique and the merge order of partial results does not matter.
bool ranks_before(const Candidate& a, const Candidate& b) {
  return a.key > b.key || (a.key == b.key && a.item < b.item);
}

// Bounded top-k: a heap whose front is the worst kept candidate.
class TopK {
 public:
  void reset(int k) {
    k_ = static_cast<size_t>(k);
    heap_.clear();
    heap_.reserve(k_);
  }
  void offer(const Candidate& c) {
    if (heap_.size() < k_) {
      heap_.push_back(c);
      std::push_heap(heap_.begin(), heap_.end(), ranks_before);
    } else if (ranks_before(c, heap_.front())) {
      std::pop_heap(heap_.begin(), heap_.end(), ranks_before);
      heap_.back() = c;
      std::push_heap(heap_.begin(), heap_.end(), ranks_before);
    }
  }
  // Below this key nothing can enter (once full); the common case of the scan.
  float threshold() const {
    return heap_.size() < k_ ? -std::numeric_limits<float>::infinity() : heap_.front().key;
  }
  const std::vector<Candidate>& items() const { return heap_; }

 private:
  size_t k_ = 0;
  std::vector<Candidate> heap_;
};

}  // namespace

void topk_cosine(const float* queries, int64_t Q, const float* items, int64_t N, int D, int k,
                 std::span<const int32_t> exclude, int32_t* out_items, float* out_sims) {
  if (Q < 0 || N < 0 || D < 1 || k < 1)
    throw std::invalid_argument("topk_cosine: need Q >= 0, N >= 0, D >= 1, k >= 1 (got Q " + std::to_string(Q) +
                                ", N " + std::to_string(N) + ", D " + std::to_string(D) + ", k " +
                                std::to_string(k) + ")");
  if (N > std::numeric_limits<int32_t>::max())
    throw std::invalid_argument("topk_cosine: " + std::to_string(N) + " items exceed the int32 item index");
  if (!exclude.empty() && static_cast<int64_t>(exclude.size()) != Q)
    throw std::invalid_argument("topk_cosine: exclude has " + std::to_string(exclude.size()) + " entries for " +
                                std::to_string(Q) + " queries (pass one per query, or none)");

  const int64_t n_blocks = (N + kItemBlock - 1) / kItemBlock;
  const int n_threads = std::max(1, static_cast<int>(std::min<int64_t>(omp_get_max_threads(), std::max<int64_t>(n_blocks, 1))));
  // Per thread: its top-k of every query of the current query block.
  std::vector<std::vector<TopK>> partial(static_cast<size_t>(n_threads), std::vector<TopK>(kQueryBlock));
  std::vector<Candidate> merged;

  for (int64_t q0 = 0; q0 < Q; q0 += kQueryBlock) {
    const int64_t qb = std::min(kQueryBlock, Q - q0);
    // Reset every slot here, not in the region: OpenMP may run fewer threads than asked
    // (nested or dynamic), and an unused slot must not carry the previous block's candidates.
    for (std::vector<TopK>& t : partial)
      for (TopK& top : t) top.reset(k);
#pragma omp parallel num_threads(n_threads)
    {
      std::vector<TopK>& mine = partial[static_cast<size_t>(omp_get_thread_num())];
      std::vector<float> sims(static_cast<size_t>(qb * kItemBlock));  // [qb, nb]
#pragma omp for schedule(dynamic, 1)
      for (int64_t b = 0; b < n_blocks; ++b) {
        const int64_t i0 = b * kItemBlock, nb = std::min(kItemBlock, N - i0);
        // sims [qb, nb] = queries[q0:q0+qb] [qb, D] x items[i0:i0+nb]^T [D, nb]; a lone query
        // (Q = 1, or the last of Q = 64n + 1) takes GEMV, which streams the items without packing.
        if (qb == 1)
          gemv(false, static_cast<int>(nb), D, 1.0f, items + i0 * D, D, queries + q0 * D, 0.0f, sims.data());
        else
          gemm(false, true, static_cast<int>(qb), static_cast<int>(nb), D, 1.0f, queries + q0 * D, D, items + i0 * D,
               D, 0.0f, sims.data(), static_cast<int>(nb));
        for (int64_t q = 0; q < qb; ++q) {
          TopK& top = mine[static_cast<size_t>(q)];
          const int32_t skip = exclude.empty() ? -1 : exclude[static_cast<size_t>(q0 + q)];
          const float* row = sims.data() + q * nb;
          float threshold = top.threshold();
          for (int64_t j0 = 0; j0 < nb; j0 += kScanChunk) {
            const int64_t j1 = std::min(nb, j0 + kScanChunk);
            // Once the heap is full almost no chunk holds a candidate: one vectorisable pass
            // says so. !(s < threshold) holds for s >= threshold and for NaN, exactly the
            // values the loop below offers, so skipping a chunk changes nothing.
            int any = 0;
            for (int64_t j = j0; j < j1; ++j) any |= static_cast<int>(!(row[j] < threshold));
            if (!any) continue;
            for (int64_t j = j0; j < j1; ++j) {
              const float s = row[j];
              if (s < threshold) continue;  // false for NaN: those take the slow path
              const auto item = static_cast<int32_t>(i0 + j);
              if (item == skip) continue;
              top.offer(Candidate{std::isnan(s) ? -std::numeric_limits<float>::infinity() : s, s, item});
              threshold = top.threshold();
            }
          }
        }
      }
    }
    for (int64_t q = 0; q < qb; ++q) {
      merged.clear();
      for (const std::vector<TopK>& t : partial)
        merged.insert(merged.end(), t[static_cast<size_t>(q)].items().begin(), t[static_cast<size_t>(q)].items().end());
      const size_t kept = std::min(merged.size(), static_cast<size_t>(k));
      std::partial_sort(merged.begin(), merged.begin() + static_cast<std::ptrdiff_t>(kept), merged.end(), ranks_before);
      int32_t* oi = out_items + (q0 + q) * k;
      float* os = out_sims + (q0 + q) * k;
      for (size_t r = 0; r < static_cast<size_t>(k); ++r) {
        oi[r] = r < kept ? merged[r].item : -1;
        os[r] = r < kept ? merged[r].sim : -std::numeric_limits<float>::infinity();
      }
    }
  }
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
