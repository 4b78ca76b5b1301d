// Retrieval metrics: hand-worked values, a float64 brute force written independently of the
// library (sets and full sorts), the documented edge cases (no relevant items, lists shorter
// than k, k above the list), per-bucket means, exact top-k against a float64 brute force
// (ties by lower index, exclusion, padding, NaN, thread-count independence) and triplet
// accuracy.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <stdexcept>
#include <vector>

#include "engine/retrieval_metrics.h"
#include "kernels/blas.h"
#include "kernels/topk_cpu.h"

namespace mg {
namespace {

struct Rel {
  std::vector<int32_t> items;
  std::vector<uint8_t> hops;
  RelevantSet view() const { return RelevantSet{items, hops}; }
};

QueryScores scores(const std::vector<int32_t>& ranked, const Rel& r, int k) {
  const std::optional<QueryScores> s = score_query(ranked, r.view(), k);
  EXPECT_TRUE(s.has_value());
  return s.value_or(QueryScores{});
}

// ---- hand-worked ---------------------------------------------------------------------------

TEST(RetrievalMetrics, HandWorkedExample) {
  // Relevant: 5 and 3 at 1 hop, 9 at 2 hops. Ranking 7, 5, 9, 2, 3.
  const Rel r{{5, 9, 3}, {1, 2, 1}};
  const std::vector<int32_t> ranked = {7, 5, 9, 2, 3};
  const double l3 = std::log2(3.0), l6 = std::log2(6.0);
  const double idcg = 1.0 + 1.0 / l3 + 0.5 / 2.0;  // ideal: 1, 1, 2 hops at ranks 1..3

  // k = 3: hits at ranks 2 (5) and 3 (9); m = 3.
  QueryScores s = scores(ranked, r, 3);
  EXPECT_DOUBLE_EQ(s.recall, 2.0 / 3);
  EXPECT_EQ(s.hit, 1.0);
  EXPECT_DOUBLE_EQ(s.ap, (1.0 / 2 + 2.0 / 3) / 3);
  EXPECT_DOUBLE_EQ(s.ndcg, (1.0 / l3 + 0.5 / 2.0) / idcg);

  // k = 5: also 3 at rank 5.
  s = scores(ranked, r, 5);
  EXPECT_DOUBLE_EQ(s.recall, 1.0);
  EXPECT_DOUBLE_EQ(s.ap, (1.0 / 2 + 2.0 / 3 + 3.0 / 5) / 3);
  EXPECT_DOUBLE_EQ(s.ndcg, (1.0 / l3 + 0.5 / 2.0 + 1.0 / l6) / idcg);

  // k = 1: a miss.
  s = scores(ranked, r, 1);
  EXPECT_EQ(s.recall, 0.0);
  EXPECT_EQ(s.hit, 0.0);
  EXPECT_EQ(s.ap, 0.0);
  EXPECT_EQ(s.ndcg, 0.0);
}

TEST(RetrievalMetrics, RecallIsCappedAtK) {
  // Four relevant items, k = 2, both top ranks relevant: capped recall, AP and nDCG are 1.
  const Rel r{{1, 2, 3, 4}, {1, 1, 1, 1}};
  const QueryScores s = scores({2, 1, 9, 3}, r, 2);
  EXPECT_EQ(s.recall, 1.0);
  EXPECT_EQ(s.ap, 1.0);
  EXPECT_DOUBLE_EQ(s.ndcg, 1.0);
}

TEST(RetrievalMetrics, NdcgIdealOrderIsOneAndHopsMatter) {
  const Rel r{{10, 11, 12}, {3, 1, 2}};
  EXPECT_DOUBLE_EQ(scores({11, 12, 10}, r, 3).ndcg, 1.0);  // ascending hops
  EXPECT_LT(scores({12, 11, 10}, r, 3).ndcg, 1.0);         // a 2-hop item before the 1-hop one
  EXPECT_LT(scores({10, 12, 11}, r, 3).ndcg, scores({12, 11, 10}, r, 3).ndcg);
  // Binary metrics ignore the order among relevant items.
  EXPECT_EQ(scores({10, 12, 11}, r, 3).ap, 1.0);
  EXPECT_EQ(scores({10, 12, 11}, r, 3).recall, 1.0);
}

TEST(RetrievalMetrics, ListShorterThanK) {
  // One item retrieved (e.g. a two-item index), k = 10: missing ranks count as misses.
  const Rel r{{5, 9}, {1, 2}};
  const QueryScores s = scores({5}, r, 10);
  EXPECT_DOUBLE_EQ(s.recall, 0.5);
  EXPECT_DOUBLE_EQ(s.ap, 0.5);
  EXPECT_DOUBLE_EQ(s.ndcg, 1.0 / (1.0 + 0.5 / std::log2(3.0)));
  const QueryScores empty = scores({}, r, 10);
  EXPECT_EQ(empty.recall, 0.0);
  EXPECT_EQ(empty.ndcg, 0.0);
}

TEST(RetrievalMetrics, NoRelevantItemsIsSkippedAndCounted) {
  EXPECT_FALSE(score_query(std::vector<int32_t>{1, 2}, Rel{}.view(), 5).has_value());
  RetrievalAccumulator acc(2, 2);
  EXPECT_TRUE(acc.add(std::vector<int32_t>{1, 2}, Rel{{1}, {1}}.view(), 0));
  EXPECT_FALSE(acc.add(std::vector<int32_t>{1, 2}, Rel{}.view(), 1));
  EXPECT_FALSE(acc.add(std::vector<int32_t>{3}, Rel{}.view()));
  const RetrievalMetrics all = acc.overall();
  EXPECT_EQ(all.queries, 1);
  EXPECT_EQ(all.skipped, 2);
  EXPECT_EQ(all.recall, 1.0);
  EXPECT_EQ(acc.bucket(1).queries, 0);
  EXPECT_EQ(acc.bucket(1).skipped, 1);
  EXPECT_EQ(acc.bucket(1).recall, 0.0);  // no scored query: zeros, with queries = 0 saying why
}

TEST(RetrievalMetrics, BucketMeans) {
  RetrievalAccumulator acc(1, 3);
  const Rel r{{4}, {1}};
  acc.add(std::vector<int32_t>{4}, r.view(), 0);  // hit
  acc.add(std::vector<int32_t>{5}, r.view(), 0);  // miss
  acc.add(std::vector<int32_t>{4}, r.view(), 2);  // hit
  acc.add(std::vector<int32_t>{4}, r.view());     // hit, no bucket
  EXPECT_DOUBLE_EQ(acc.overall().recall, 0.75);
  EXPECT_EQ(acc.overall().queries, 4);
  EXPECT_DOUBLE_EQ(acc.bucket(0).hit_rate, 0.5);
  EXPECT_EQ(acc.bucket(1).queries, 0);
  EXPECT_DOUBLE_EQ(acc.bucket(2).map, 1.0);
}

TEST(RetrievalMetrics, Refusals) {
  const Rel r{{1, 2}, {1, 1}};
  EXPECT_THROW(score_query(std::vector<int32_t>{1}, r.view(), 0), std::invalid_argument);
  EXPECT_THROW(score_query(std::vector<int32_t>{1}, Rel{{1, 2}, {1}}.view(), 3), std::invalid_argument);
  EXPECT_THROW(score_query(std::vector<int32_t>{1}, Rel{{1, 1}, {1, 2}}.view(), 3), std::invalid_argument);
  EXPECT_THROW(score_query(std::vector<int32_t>{1}, Rel{{1}, {0}}.view(), 3), std::invalid_argument);
  EXPECT_THROW(score_query(std::vector<int32_t>{3, 3}, r.view(), 3), std::invalid_argument);
  EXPECT_THROW(score_query(std::vector<int32_t>{-1}, r.view(), 3), std::invalid_argument);
  // Entries beyond k are not read: a repeat there is not an error.
  EXPECT_NO_THROW(score_query(std::vector<int32_t>{1, 3, 3}, r.view(), 2));
  RetrievalAccumulator acc(3, 2);
  EXPECT_THROW(acc.add(std::vector<int32_t>{1}, r.view(), 2), std::invalid_argument);
  EXPECT_THROW(acc.bucket(-1), std::invalid_argument);
  EXPECT_THROW(RetrievalAccumulator(0), std::invalid_argument);
}

// ---- brute force ---------------------------------------------------------------------------

// Written from the definitions, differently from the library: sets, precision lists and a full
// sort of all gains.
QueryScores brute_force(const std::vector<int32_t>& ranked, const std::map<int32_t, int>& rel, int k) {
  const size_t depth = std::min(ranked.size(), size_t(k));
  std::set<int32_t> top(ranked.begin(), ranked.begin() + static_cast<std::ptrdiff_t>(depth));
  double inter = 0;
  for (const auto& [item, h] : rel) inter += top.count(item) ? 1 : 0;
  const double m = std::min<double>(k, static_cast<double>(rel.size()));
  std::vector<double> precision_at_hits;
  double dcg = 0;
  for (size_t i = 0; i < depth; ++i) {
    if (!rel.count(ranked[i])) continue;
    double found = 0;
    for (size_t j = 0; j <= i; ++j) found += rel.count(ranked[j]) ? 1 : 0;
    precision_at_hits.push_back(found / double(i + 1));
    dcg += (1.0 / rel.at(ranked[i])) / std::log2(double(i) + 2);
  }
  std::vector<double> gains;
  for (const auto& [item, h] : rel) gains.push_back(1.0 / h);
  std::sort(gains.rbegin(), gains.rend());
  double idcg = 0;
  for (size_t i = 0; i < gains.size() && i < size_t(k); ++i) idcg += gains[i] / std::log2(double(i) + 2);
  QueryScores s;
  s.recall = inter / m;
  s.hit = inter > 0;
  s.ap = std::accumulate(precision_at_hits.begin(), precision_at_hits.end(), 0.0) / m;
  s.ndcg = dcg / idcg;
  return s;
}

TEST(RetrievalMetrics, MatchesBruteForce) {
  std::mt19937 rng(7);
  const int n_items = 60;
  for (int q = 0; q < 500; ++q) {
    std::vector<int32_t> perm(n_items);
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    const int list_len = std::uniform_int_distribution<int>(0, n_items)(rng);
    const std::vector<int32_t> ranked(perm.begin(), perm.begin() + list_len);
    std::shuffle(perm.begin(), perm.end(), rng);
    const int n_rel = std::uniform_int_distribution<int>(1, 25)(rng);
    Rel r;
    std::map<int32_t, int> rel;
    for (int j = 0; j < n_rel; ++j) {
      const int h = std::uniform_int_distribution<int>(1, 4)(rng);
      r.items.push_back(perm[static_cast<size_t>(j)]);
      r.hops.push_back(static_cast<uint8_t>(h));
      rel[perm[static_cast<size_t>(j)]] = h;
    }
    for (int k : {1, 5, 10, 40, 100}) {
      const QueryScores got = scores(ranked, r, k), want = brute_force(ranked, rel, k);
      // Same formulas in float64, different summation: 1e-12.
      EXPECT_NEAR(got.recall, want.recall, 1e-12) << "query " << q << " k " << k;
      EXPECT_EQ(got.hit, want.hit) << "query " << q << " k " << k;
      EXPECT_NEAR(got.ap, want.ap, 1e-12) << "query " << q << " k " << k;
      EXPECT_NEAR(got.ndcg, want.ndcg, 1e-12) << "query " << q << " k " << k;
      EXPECT_GE(got.ndcg, 0.0);
      EXPECT_LE(got.ndcg, 1.0 + 1e-12);
    }
  }
}

// ---- exact top-k ---------------------------------------------------------------------------

std::vector<float> unit_rows(int64_t n, int d, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g;
  std::vector<float> x(static_cast<size_t>(n * d));
  for (int64_t i = 0; i < n; ++i) {
    double s = 0;
    for (int j = 0; j < d; ++j) s += std::pow(x[static_cast<size_t>(i * d + j)] = g(rng), 2);
    for (int j = 0; j < d; ++j) x[static_cast<size_t>(i * d + j)] /= static_cast<float>(std::sqrt(s));
  }
  return x;
}

double dot64(const float* a, const float* b, int d) {
  double s = 0;
  for (int j = 0; j < d; ++j) s += double(a[j]) * b[j];
  return s;
}

// float64 reference order: descending similarity, then lower index.
std::vector<std::pair<double, int32_t>> brute_topk(const std::vector<float>& q, int64_t qi, const std::vector<float>& items,
                                                   int64_t N, int D, int32_t exclude) {
  std::vector<std::pair<double, int32_t>> all;
  for (int64_t i = 0; i < N; ++i)
    if (i != exclude) all.emplace_back(dot64(q.data() + qi * D, items.data() + i * D, D), static_cast<int32_t>(i));
  std::sort(all.begin(), all.end(), [](auto& a, auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
  return all;
}

struct TopKOut {
  std::vector<int32_t> items;
  std::vector<float> sims;
};

TopKOut run_topk(const std::vector<float>& q, int64_t Q, const std::vector<float>& items, int64_t N, int D, int k,
                 const std::vector<int32_t>& exclude) {
  TopKOut o{std::vector<int32_t>(static_cast<size_t>(Q * k), -7), std::vector<float>(static_cast<size_t>(Q * k), 123.f)};
  topk_cosine(q.data(), Q, items.data(), N, D, k, exclude, o.items.data(), o.sims.data());
  return o;
}

TEST(TopKCosine, MatchesFloat64BruteForce) {
  blas_set_threads(1);
  // N spans three item blocks of 4096 (the last partial), Q = 64 + 64 + 1 query blocks (sgemm
  // for the first two, sgemv for the last); the queries are the first Q items, each excluding
  // itself.
  const int64_t N = 10000, Q = 129;
  const int D = 32, k = 10;
  const std::vector<float> items = unit_rows(N, D, 1);
  const std::vector<float> queries(items.begin(), items.begin() + Q * D);
  std::vector<int32_t> exclude(static_cast<size_t>(Q));
  std::iota(exclude.begin(), exclude.end(), 0);
  const TopKOut o = run_topk(queries, Q, items, N, D, k, exclude);
  // float32 dot products of unit vectors in D = 32: error < 32 * 2^-24 ~ 2e-6; bound 1e-5.
  const double tol = 1e-5;
  int exact_rows = 0;
  for (int64_t q = 0; q < Q; ++q) {
    const auto want = brute_topk(queries, q, items, N, D, static_cast<int32_t>(q));
    bool same = true;
    for (int r = 0; r < k; ++r) {
      const int32_t got = o.items[static_cast<size_t>(q * k + r)];
      ASSERT_GE(got, 0);
      ASSERT_NE(got, q) << "the query itself was returned";
      const double got64 = dot64(queries.data() + q * D, items.data() + int64_t(got) * D, D);
      EXPECT_NEAR(o.sims[static_cast<size_t>(q * k + r)], got64, tol) << "query " << q << " rank " << r;
      // The r-th best similarity is right even where near-ties swap items.
      EXPECT_NEAR(got64, want[static_cast<size_t>(r)].first, 2 * tol) << "query " << q << " rank " << r;
      same = same && got == want[static_cast<size_t>(r)].second;
    }
    // Outside near-ties (float64 gaps around the top k above 2 tol) the items are identical.
    bool well_separated = true;
    for (int r = 0; r < k; ++r)
      well_separated = well_separated && want[static_cast<size_t>(r)].first - want[static_cast<size_t>(r + 1)].first > 2 * tol;
    if (well_separated) {
      EXPECT_TRUE(same) << "query " << q;
      ++exact_rows;
    }
  }
  EXPECT_GT(exact_rows, Q * 9 / 10) << "too few rows without near-ties for the comparison to mean much";
}

TEST(TopKCosine, ExactTiesGoToTheLowerIndex) {
  blas_set_threads(1);
  // Rows of +-0.5 in D = 4 are unit vectors whose dot products (-1, -0.5, 0, 0.5, 1) are exact in
  // float32 whatever the summation order, and there are only 16 distinct rows: ties everywhere.
  const int64_t N = 5000, Q = 70;
  const int D = 4, k = 400;  // beyond the ~310 copies of each row: two tie levels
  std::mt19937 rng(3);
  std::vector<float> items(static_cast<size_t>(N * D));
  for (float& v : items) v = (rng() & 1) ? 0.5f : -0.5f;
  const std::vector<float> queries(items.begin() + 100 * D, items.begin() + (100 + Q) * D);
  std::vector<int32_t> exclude(static_cast<size_t>(Q));
  std::iota(exclude.begin(), exclude.end(), 100);
  const TopKOut o = run_topk(queries, Q, items, N, D, k, exclude);
  for (int64_t q = 0; q < Q; ++q) {
    const auto want = brute_topk(queries, q, items, N, D, static_cast<int32_t>(100 + q));
    for (int r = 0; r < k; ++r) {
      ASSERT_EQ(o.items[static_cast<size_t>(q * k + r)], want[static_cast<size_t>(r)].second) << "query " << q << " rank " << r;
      ASSERT_EQ(o.sims[static_cast<size_t>(q * k + r)], want[static_cast<size_t>(r)].first);
    }
  }
}

TEST(TopKCosine, SameResultForAnyThreadCount) {
  blas_set_threads(1);
  const int64_t N = 9000, Q = 5;
  const int D = 16, k = 7;
  const std::vector<float> items = unit_rows(N, D, 2), queries = unit_rows(Q, D, 3);
  const int before = omp_get_max_threads();
  omp_set_num_threads(1);
  const TopKOut one = run_topk(queries, Q, items, N, D, k, {});
  omp_set_num_threads(3);
  const TopKOut three = run_topk(queries, Q, items, N, D, k, {});
  omp_set_num_threads(before);
  EXPECT_EQ(one.items, three.items);
  EXPECT_EQ(one.sims, three.sims);
}

TEST(TopKCosine, FewerCandidatesThanKArePadded) {
  const int D = 3;
  const std::vector<float> items = unit_rows(5, D, 4);
  const std::vector<float> q(items.begin(), items.begin() + D);
  const TopKOut o = run_topk(q, 1, items, 5, D, 8, {0});
  const auto want = brute_topk(q, 0, items, 5, D, 0);
  for (int r = 0; r < 4; ++r) EXPECT_EQ(o.items[static_cast<size_t>(r)], want[static_cast<size_t>(r)].second);
  for (int r = 4; r < 8; ++r) {
    EXPECT_EQ(o.items[static_cast<size_t>(r)], -1);
    EXPECT_EQ(o.sims[static_cast<size_t>(r)], -std::numeric_limits<float>::infinity());
  }
}

TEST(TopKCosine, NanRanksLast) {
  const int D = 2;
  std::vector<float> items = {1, 0, std::nanf(""), 0, 0, 1, -1, 0};  // item 1 is broken
  const std::vector<float> q = {0.6f, 0.8f};
  const TopKOut o = run_topk(q, 1, items, 4, D, 4, {});
  EXPECT_EQ(o.items, (std::vector<int32_t>{2, 0, 3, 1}));
  EXPECT_TRUE(std::isnan(o.sims[3]));
}

TEST(TopKCosine, Refusals) {
  const std::vector<float> items = unit_rows(4, 2, 5);
  int32_t oi[2];
  float os[2];
  EXPECT_THROW(topk_cosine(items.data(), 1, items.data(), 4, 2, 0, {}, oi, os), std::invalid_argument);
  const std::vector<int32_t> two = {0, 1};
  EXPECT_THROW(topk_cosine(items.data(), 1, items.data(), 4, 2, 2, two, oi, os), std::invalid_argument);
  EXPECT_NO_THROW(topk_cosine(items.data(), 0, items.data(), 4, 2, 2, {}, oi, os));  // no queries
}

// ---- triplet accuracy ----------------------------------------------------------------------

TEST(TripletAccuracy, MatchesBruteForceAndTiesAreMisses) {
  const int64_t N = 50;
  const int D = 6;
  const std::vector<float> emb = unit_rows(N, D, 6);
  std::mt19937 rng(8);
  std::vector<int32_t> t;
  int64_t want = 0;
  for (int i = 0; i < 400; ++i) {
    const int32_t a = int32_t(rng() % N), p = int32_t(rng() % N), n = int32_t(rng() % N);
    t.insert(t.end(), {a, p, n});
    double dp = 0, dn = 0;
    for (int j = 0; j < D; ++j) {
      dp += std::pow(double(emb[size_t(a * D + j)]) - emb[size_t(p * D + j)], 2);
      dn += std::pow(double(emb[size_t(a * D + j)]) - emb[size_t(n * D + j)], 2);
    }
    want += dp < dn;
  }
  const TripletAccuracy acc = triplet_accuracy(emb.data(), N, D, t);
  EXPECT_EQ(acc.triplets, 400);
  EXPECT_EQ(acc.correct, want);
  EXPECT_DOUBLE_EQ(acc.fraction(), double(want) / 400);

  // p == n: equal distances, a miss; a == p: distance 0 beats any other n.
  EXPECT_EQ(triplet_accuracy(emb.data(), N, D, std::vector<int32_t>{0, 1, 1}).correct, 0);
  EXPECT_EQ(triplet_accuracy(emb.data(), N, D, std::vector<int32_t>{0, 0, 1}).correct, 1);
  EXPECT_EQ(triplet_accuracy(emb.data(), N, D, std::vector<int32_t>{}).fraction(), 0.0);
  EXPECT_THROW(triplet_accuracy(emb.data(), N, D, std::vector<int32_t>{0, 1}), std::invalid_argument);
  EXPECT_THROW(triplet_accuracy(emb.data(), N, D, std::vector<int32_t>{0, 1, 50}), std::invalid_argument);
}

// ---- spread ------------------------------------------------------------------------------

std::vector<float> random_unit_rows(int64_t n, int d, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(n * d));
  for (int64_t i = 0; i < n; ++i) {
    double norm = 0;
    for (int c = 0; c < d; ++c) {
      v[static_cast<size_t>(i * d + c)] = g(rng);
      norm += static_cast<double>(v[static_cast<size_t>(i * d + c)]) * v[static_cast<size_t>(i * d + c)];
    }
    for (int c = 0; c < d; ++c) v[static_cast<size_t>(i * d + c)] /= static_cast<float>(std::sqrt(norm));
  }
  return v;
}

// Every pair's cosine in double, sorted: the reference the spread's percentiles come from.
std::vector<double> all_pair_cosines(const std::vector<float>& v, int64_t n, int d) {
  std::vector<double> sims;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = i + 1; j < n; ++j) {
      double acc = 0;
      for (int c = 0; c < d; ++c) acc += static_cast<double>(v[static_cast<size_t>(i * d + c)]) * v[static_cast<size_t>(j * d + c)];
      sims.push_back(acc);
    }
  std::sort(sims.begin(), sims.end());
  return sims;
}

// Below max_pairs every pair counts, and the percentiles are nearest ranks of all of them.
TEST(SimilaritySpread, AllPairsGiveNearestRankPercentiles) {
  const int64_t n = 53;
  const int d = 9;
  const std::vector<float> v = random_unit_rows(n, d, 5);
  const SimilaritySpread s = similarity_spread(v.data(), n, d);
  const std::vector<double> ref = all_pair_cosines(v, n, d);
  ASSERT_EQ(s.pairs, n * (n - 1) / 2);
  EXPECT_FALSE(s.sampled);
  auto rank = [&](double q) { return ref[static_cast<size_t>(std::ceil(q * static_cast<double>(ref.size()))) - 1]; };
  EXPECT_NEAR(s.median, rank(0.5), 1e-12);
  EXPECT_NEAR(s.p5, rank(0.05), 1e-12);
  EXPECT_NEAR(s.p95, rank(0.95), 1e-12);
  std::vector<double> mean(static_cast<size_t>(d), 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int c = 0; c < d; ++c) mean[static_cast<size_t>(c)] += v[static_cast<size_t>(i * d + c)] / static_cast<double>(n);
  double norm2 = 0;
  for (const double m : mean) norm2 += m * m;
  EXPECT_NEAR(s.mean_norm, std::sqrt(norm2), 1e-12);
  // Random directions in 9-d: centred near 0, well spread.
  EXPECT_LT(std::abs(s.median), 0.1);
  EXPECT_LT(s.p5, -0.3);
  EXPECT_GT(s.p95, 0.3);
}

// A narrow cone (every vector near one direction) shows as a median near 1 and a long mean.
TEST(SimilaritySpread, ANarrowConeShowsAsAMedianNearOne) {
  const int64_t n = 40;
  const int d = 16;
  std::vector<float> v = random_unit_rows(n, d, 9);
  for (int64_t i = 0; i < n; ++i) {
    double norm = 0;
    v[static_cast<size_t>(i * d)] += 20.0f;  // pull every row toward axis 0
    for (int c = 0; c < d; ++c) norm += static_cast<double>(v[static_cast<size_t>(i * d + c)]) * v[static_cast<size_t>(i * d + c)];
    for (int c = 0; c < d; ++c) v[static_cast<size_t>(i * d + c)] /= static_cast<float>(std::sqrt(norm));
  }
  const SimilaritySpread s = similarity_spread(v.data(), n, d);
  EXPECT_GT(s.median, 0.99);
  EXPECT_GT(s.p5, 0.98);
  EXPECT_GT(s.mean_norm, 0.99);
}

// Above max_pairs a seeded random sample of pairs stands in for all of them: reproducible,
// and its percentiles within sampling error of the exact ones (100k pairs: the median's
// standard error is about 0.003 here; the bound is 0.02).
TEST(SimilaritySpread, LargeIndexesAreSampledReproducibly) {
  const int64_t n = 1500;  // 1,124,250 pairs
  const int d = 6;
  const std::vector<float> v = random_unit_rows(n, d, 11);
  const SimilaritySpread a = similarity_spread(v.data(), n, d, 100000, 3);
  const SimilaritySpread b = similarity_spread(v.data(), n, d, 100000, 3);
  const SimilaritySpread c = similarity_spread(v.data(), n, d, 100000, 4);
  EXPECT_TRUE(a.sampled);
  EXPECT_EQ(a.pairs, 100000);
  EXPECT_EQ(a.median, b.median);
  EXPECT_EQ(a.p5, b.p5);
  EXPECT_NE(a.median, c.median);
  const std::vector<double> ref = all_pair_cosines(v, n, d);
  auto rank = [&](double q) { return ref[static_cast<size_t>(std::ceil(q * static_cast<double>(ref.size()))) - 1]; };
  EXPECT_NEAR(a.median, rank(0.5), 0.02);
  EXPECT_NEAR(a.p5, rank(0.05), 0.02);
  EXPECT_NEAR(a.p95, rank(0.95), 0.02);
}

TEST(SimilaritySpread, EdgeCasesAndBadArguments) {
  const std::vector<float> one = {0.6f, 0.8f};
  const SimilaritySpread s1 = similarity_spread(one.data(), 1, 2);
  EXPECT_EQ(s1.pairs, 0);
  EXPECT_NEAR(s1.mean_norm, 1.0, 1e-7);
  EXPECT_EQ(similarity_spread(nullptr, 0, 2).pairs, 0);
  EXPECT_THROW(similarity_spread(one.data(), 1, 0), std::invalid_argument);
  EXPECT_THROW(similarity_spread(one.data(), -1, 2), std::invalid_argument);
  EXPECT_THROW(similarity_spread(one.data(), 1, 2, 0), std::invalid_argument);
}

}  // namespace
}  // namespace mg
