// Retrieval quality of an embedding: the ranking metrics of graph neighbours (used by validation
// during training and by `melgraph eval`); the exact top-k they rank with is kernels/topk_cpu.h.
//
// Relevance. A query's relevant items are graph neighbours within some hop radius, each with
// its hop distance h >= 1; the caller chooses the radius (the list it passes is the relevant
// set). Items not in the list are irrelevant. The query itself must be neither in the ranked
// list nor among its relevant items.
//
// Metrics of one query at cut-off k, with R = relevant set, rel_i = 1 when the item at rank i
// (1-based) is in R, hits = rel_1 + ... + rel_k, m = min(k, |R|):
//   recall@k  = hits / m       "capped" recall: 1 for a perfect ranking even when |R| > k
//                              (plain hits / |R| could not reach 1 then).
//   hit@k     = 1 if hits > 0  (what metric-learning papers call Recall@K).
//   AP@k      = (1 / m) * sum_{i<=k} rel_i * precision@i, precision@i = (rel_1 + .. + rel_i) / i.
//               mAP is the mean of AP@k: only the top k is ranked, so AP is truncated at k and
//               normalised by m, so that a perfect top k scores 1.
//   nDCG@k    = DCG@k / IDCG@k, DCG@k = sum_{i<=k} gain_i / log2(i + 1), gain_i = 1 / h for a
//               relevant item at h hops and 0 otherwise; IDCG@k = the same sum over R sorted by
//               ascending h (descending gain), first m of them: the best possible top k for
//               the same relevant set, so nDCG@k is in [0, 1] and 1 exactly for that order.
// recall, hit and AP are binary (any relevant item counts 1); only nDCG uses the hops.
// A ranked list shorter than k (few items) counts its missing ranks as irrelevant.
// A query with no relevant items has no defined score: it is skipped and counted.
#pragma once
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace mg {

// The relevant set of one query: items[j] at hops[j] >= 1 graph hops, items distinct. (The
// layout of graph::TripletTables::near()/near_distance(): pass a prefix of those spans.)
struct RelevantSet {
  std::span<const int32_t> items;
  std::span<const uint8_t> hops;
};

struct QueryScores {
  double recall = 0, hit = 0, ap = 0, ndcg = 0;
};

// Scores of one query. ranked: retrieved item indices, best first (only the first k are read),
// distinct and >= 0. Returns nullopt when the relevant set is empty. Throws
// std::invalid_argument for k < 1, mismatched spans, hops < 1, a repeated relevant item, or a
// negative or repeated item in the top k.
std::optional<QueryScores> score_query(std::span<const int32_t> ranked, const RelevantSet& relevant, int k);

// Means over the scored queries (each query weighs 1).
struct RetrievalMetrics {
  int64_t queries = 0;  // queries scored
  int64_t skipped = 0;  // queries without relevant items (not in the means)
  double recall = 0, hit_rate = 0, map = 0, ndcg = 0;
};

// Accumulates queries overall and per bucket (e.g. in-degree buckets chosen by the caller).
// Sums run in the order of add() calls, so the result is deterministic for a fixed order.
class RetrievalAccumulator {
 public:
  // n_buckets >= 0; buckets are 0..n_buckets-1.
  explicit RetrievalAccumulator(int k, int n_buckets = 0);

  // bucket: -1 for none, else in [0, n_buckets). Returns whether the query was scored.
  bool add(std::span<const int32_t> ranked, const RelevantSet& relevant, int bucket = -1);

  int k() const { return k_; }
  int n_buckets() const { return static_cast<int>(buckets_.size()); }
  RetrievalMetrics overall() const { return mean(all_); }
  RetrievalMetrics bucket(int b) const;

 private:
  struct Sums {
    int64_t queries = 0, skipped = 0;
    double recall = 0, hit = 0, ap = 0, ndcg = 0;
  };
  static RetrievalMetrics mean(const Sums& s);
  int k_;
  Sums all_;
  std::vector<Sums> buckets_;
};

// How spread out a set of unit vectors is: the cosine similarity of random pairs of distinct
// rows. Embeddings that crowd into a narrow cone (median near 1) rank by differences in the
// fourth decimal, which users cannot read and a quantised or clustered index loses; a
// well-spread space has a median near 0. Every pair when n (n - 1) / 2 <= max_pairs, else
// max_pairs pairs drawn with Philox (seed, stream kSpreadStream): deterministic for a seed.
// Percentiles by the nearest-rank rule; dot products in float64. mean_norm: the length of the
// mean row (1 when every row is the same, near 0 when they point all ways).
struct SimilaritySpread {
  int64_t pairs = 0;
  bool sampled = false;  // pairs is a random sample of them, not all
  double median = 0, p5 = 0, p95 = 0, mean_norm = 0;
};
inline constexpr uint64_t kSpreadStream = 0x737072656164ull;  // "spread"
SimilaritySpread similarity_spread(const float* vecs, int64_t n, int d, int64_t max_pairs = 100000, uint64_t seed = 0);

// Triplet accuracy: the fraction of triplets (a, p, n) with d(a, p) < d(a, n) (strict: a tie is
// a miss), d the Euclidean distance between rows of emb [N, D], computed in float64.
// triplets: [T, 3] row-major item indices (a, p, n). Returns 0 for T = 0.
struct TripletAccuracy {
  int64_t triplets = 0, correct = 0;
  double fraction() const { return triplets ? static_cast<double>(correct) / static_cast<double>(triplets) : 0.0; }
};
TripletAccuracy triplet_accuracy(const float* emb, int64_t N, int D, std::span<const int32_t> triplets);

}  // namespace mg
