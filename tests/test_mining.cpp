// In-batch mining (kernels/mining_cpu.h) against a brute-force reference written here: every
// triplet (anchor i, positive B + i, row n) of the batch is enumerated in double precision as
// pytorch-metric-learning's miners do (batch-hard: all negatives allowed by the mask; semi-hard:
// pml's triplet-margin test 0 < d(a, n) - d(a, p) <= margin), then the smallest (d(a, n), n)
// is kept. The reference sums dot products sequentially, the kernel in its fixed lane order:
// they differ by ~1e-16, so tables agree unless two distances are closer than that, which
// happens only for exactly equal rows, and equal rows give equal distances in both orders.
//
// Also: ties (duplicated rows, the eps clamp, E = 1), anchors without candidates, semi-hard
// with an empty band, hops from real graph tables, the fused loss skipping unmined rows, the
// CPU backend's op, and a mined TrainStep that lowers the loss.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "engine/backend.h"
#include "engine/model.h"
#include "engine/optimizer.h"
#include "engine/train_step.h"
#include "graph/preference_graph.h"
#include "graph/triplet_tables.h"
#include "kernels/mining_cpu.h"
#include "kernels/triplet_loss_cpu.h"
#include "tests/test_support.h"

namespace mg {
namespace {

struct Batch {
  int B = 0, E = 0;
  std::vector<float> emb;     // [2B, E] unit rows
  std::vector<uint8_t> hops;  // [2B, 2B]
  int N() const { return 2 * B; }
};

void normalize_rows(std::vector<float>& v, int E) {
  for (size_t r = 0; r < v.size() / static_cast<size_t>(E); ++r) {
    double n = 0;
    for (int e = 0; e < E; ++e) n += static_cast<double>(v[r * E + e]) * v[r * E + e];
    n = std::sqrt(n);
    for (int e = 0; e < E; ++e) v[r * E + e] = static_cast<float>(v[r * E + e] / n);
  }
}

std::vector<float> random_unit_rows(int rows, int E, std::mt19937& rng) {
  std::normal_distribution<double> g(0.0, 1.0);
  std::vector<float> v(static_cast<size_t>(rows) * E);
  for (auto& x : v) x = static_cast<float>(g(rng));
  normalize_rows(v, E);
  return v;
}

// Hops as the graph tables give them, plus what a table cannot give but the op must take:
// far values other than neg_hops (up to 255) and asymmetric (directed) distances. Each anchor's
// positive is within pos_hops; about one row in eight repeats the item of another (hops 0 both
// ways); p_far is the chance that a pair is far.
std::vector<uint8_t> random_hops(int B, int neg_hops, int pos_hops, double p_far, std::mt19937& rng) {
  const int N = 2 * B;
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::uniform_int_distribution<int> near(1, neg_hops - 1), pos(1, pos_hops), far(neg_hops, 255);
  std::vector<uint8_t> h(static_cast<size_t>(N) * N);
  auto at = [&](int i, int j) -> uint8_t& { return h[static_cast<size_t>(i) * N + j]; };
  for (int i = 0; i < N; ++i)
    for (int j = 0; j < N; ++j) {
      if (i == j) continue;
      const int v = u(rng) < p_far ? (u(rng) < 0.5 ? neg_hops : far(rng)) : near(rng);
      at(i, j) = static_cast<uint8_t>(v);
    }
  for (int i = 0; i < B; ++i) at(i, B + i) = at(B + i, i) = static_cast<uint8_t>(pos(rng));
  for (int r = 0; r < N; ++r) {  // the same item twice in the batch
    if (u(rng) >= 0.125) continue;
    const int s = std::uniform_int_distribution<int>(0, N - 1)(rng);
    if (s == r) continue;
    at(r, s) = at(s, r) = 0;
  }
  return h;
}

double ref_distance(const float* x, const float* y, int E, double eps) {
  double dot = 0;
  for (int e = 0; e < E; ++e) dot += static_cast<double>(x[e]) * static_cast<double>(y[e]);
  return std::sqrt(std::max(2.0 * (1.0 - dot), eps));
}

struct RefResult {
  std::vector<int32_t> triplets;
  int64_t valid = 0, candidates = 0;
};

RefResult reference_mine(const Batch& b, const MiningParams& p) {
  RefResult r;
  const int N = b.N(), E = b.E;
  auto row = [&](int k) { return b.emb.data() + static_cast<size_t>(k) * E; };
  for (int a = 0; a < b.B; ++a) {
    const double dap = ref_distance(row(a), row(b.B + a), E, p.eps);
    std::vector<std::pair<double, int>> allowed;  // (d(a, n), n) of every triplet the rule keeps
    for (int n = 0; n < N; ++n) {
      if (n == a || b.hops[static_cast<size_t>(a) * N + n] < p.neg_hops) continue;
      ++r.candidates;
      const double dan = ref_distance(row(a), row(n), E, p.eps);
      const double triplet_margin = dan - dap;  // pml's, for a distance (not a similarity)
      if (p.rule == NegativeMining::SemiHard && !(triplet_margin > 0 && triplet_margin <= p.margin)) continue;
      allowed.push_back({dan, n});
    }
    if (allowed.empty()) {
      r.triplets.insert(r.triplets.end(), {-1, -1, -1});
      continue;
    }
    const auto best = *std::min_element(allowed.begin(), allowed.end());  // smallest d, then lowest n
    r.triplets.insert(r.triplets.end(), {a, b.B + a, best.second});
    ++r.valid;
  }
  return r;
}

struct Mined {
  std::vector<int32_t> triplets;
  MiningCounts counts;
};

template <class T = float>
Mined mine(const Batch& b, const MiningParams& p) {
  const std::vector<T> emb(b.emb.begin(), b.emb.end());
  Mined m;
  m.triplets.assign(3 * static_cast<size_t>(b.B), 12345);  // garbage: every row must be written
  m.counts = mine_triplets_cpu(emb.data(), b.hops.data(), b.B, b.E, p, m.triplets.data());
  return m;
}

std::string describe(const MiningParams& p) {
  return std::string(p.rule == NegativeMining::SemiHard ? "semi_hard" : "batch_hard") +
         " neg_hops " + std::to_string(p.neg_hops) + " margin " + std::to_string(p.margin);
}

void expect_matches_reference(const Batch& b, const MiningParams& p, const std::string& what) {
  SCOPED_TRACE(what + " B " + std::to_string(b.B) + " E " + std::to_string(b.E) + " " + describe(p));
  const RefResult ref = reference_mine(b, p);
  const Mined got = mine(b, p);
  ASSERT_EQ(got.triplets.size(), ref.triplets.size());
  for (int i = 0; i < b.B; ++i)
    for (int k = 0; k < 3; ++k)
      EXPECT_EQ(got.triplets[3 * static_cast<size_t>(i) + k], ref.triplets[3 * static_cast<size_t>(i) + k])
          << "anchor " << i << " column " << k;
  EXPECT_EQ(got.counts.valid, ref.valid);
  EXPECT_EQ(got.counts.candidates, ref.candidates);
  // Float rows are exact in double, and products of floats are exact: the double instantiation
  // must mine the same table.
  const Mined d = mine<double>(b, p);
  EXPECT_EQ(d.triplets, got.triplets) << "float and double instantiations differ";
}

// ---- against brute force on random batches ---------------------------------------------------

TEST(Mining, MatchesBruteForceOnRandomBatches) {
  uint32_t seed = 100;
  int64_t valid = 0, invalid = 0, semi_differs = 0;
  for (int B : {1, 2, 7, 33})
    for (int E : {3, 16, 33})
      for (double p_far : {0.15, 0.6, 0.95}) {
        std::mt19937 rng(seed++);
        Batch b;
        b.B = B, b.E = E;
        b.emb = random_unit_rows(b.N(), E, rng);
        const int neg_hops = E == 16 ? 2 : 3;
        b.hops = random_hops(B, neg_hops, 1, p_far, rng);
        for (double margin : {0.2, 1.0}) {
          MiningParams hard{NegativeMining::BatchHard, neg_hops, margin, 1e-6};
          MiningParams semi{NegativeMining::SemiHard, neg_hops, margin, 1e-6};
          expect_matches_reference(b, hard, "random");
          expect_matches_reference(b, semi, "random");
          const Mined h = mine(b, hard), s = mine(b, semi);
          valid += s.counts.valid;
          invalid += B - s.counts.valid;
          semi_differs += h.triplets != s.triplets;
        }
      }
  // The draws must exercise what the test is about.
  EXPECT_GT(valid, 50) << "too few semi-hard triplets found: the band is never hit";
  EXPECT_GT(invalid, 50) << "too few anchors without a semi-hard negative";
  EXPECT_GT(semi_differs, 10) << "semi-hard and batch-hard never differ: the band is not tested";
}

// Hops from graph::TripletTables on a random graph: the matrix the trainer will pass.
TEST(Mining, MatchesBruteForceWithGraphDistanceTables) {
  std::mt19937 rng(7);
  graph::EdgeList el;
  std::uniform_int_distribution<int> node(0, 59);
  auto id = [](int v) {
    std::string s = "n";  // (not "n" + to_string: GCC 12's false -Wrestrict)
    return s += std::to_string(v);
  };
  for (int e = 0; e < 75; ++e) el.add_edge(id(node(rng)), id(node(rng)));
  const graph::PreferenceGraph g(el);
  const graph::Selection sel =
      graph::select_top_k(g, std::vector<bool>(static_cast<size_t>(g.num_nodes()), true), g.num_nodes(), false);
  graph::DistanceOptions opt;
  opt.pos_hops = 1, opt.neg_hops = 3;
  const graph::TripletTables t = graph::TripletTables::build(g, sel, opt);
  std::vector<int32_t> anchors, positives;
  for (int32_t a = 0; a < t.n_items() && static_cast<int>(anchors.size()) < 24; ++a) {
    if (!t.has_positive(a) || t.num_negatives(a) == 0) continue;
    anchors.push_back(a);
    positives.push_back(t.sample(a, 3, 0).first);
  }
  ASSERT_GE(anchors.size(), 8u) << "the random graph has too few anchors with a positive";
  std::vector<int32_t> items = anchors;
  items.insert(items.end(), positives.begin(), positives.end());
  const std::vector<int32_t> dist = t.batch_distance_matrix(items);
  Batch b;
  b.B = static_cast<int>(anchors.size()), b.E = 8;
  b.emb = random_unit_rows(b.N(), b.E, rng);
  b.hops.assign(dist.begin(), dist.end());  // capped at neg_hops by the tables: fits a byte
  for (int i = 0; i < b.B; ++i) {
    const int h = b.hops[static_cast<size_t>(i) * b.N() + b.B + i];
    ASSERT_TRUE(h >= 1 && h <= opt.pos_hops) << "anchor " << i << ": the positive is " << h << " hops away";
  }
  for (auto rule : {NegativeMining::BatchHard, NegativeMining::SemiHard})
    expect_matches_reference(b, MiningParams{rule, opt.neg_hops, 0.5, 1e-6}, "graph tables");
}

// ---- hand-made cases --------------------------------------------------------------------------

// Rows as given (not normalised: exact binary values keep every distance exact).
Batch exact_batch(int B, int E, const std::vector<float>& emb, uint8_t fill) {
  Batch b;
  b.B = B, b.E = E, b.emb = emb;
  b.hops.assign(static_cast<size_t>(b.N()) * b.N(), fill);
  for (int i = 0; i < b.N(); ++i) b.hops[static_cast<size_t>(i) * b.N() + i] = 0;
  for (int i = 0; i < B; ++i) b.hops[static_cast<size_t>(i) * b.N() + B + i] = 1;
  return b;
}

// Equal distances: the lowest row index wins, whatever the order the rows were scanned in.
TEST(Mining, TiesGoToTheLowestRowIndex) {
  // B = 3, N = 6, E = 4. Anchor 0 = e0, positive (row 3) = e1. Rows 2 and 5 are identical
  // copies close to the anchor, row 1 and row 4 farther.
  const std::vector<float> emb = {
      1, 0, 0, 0,           // 0 anchor
      0, 0, 1, 0,           // 1
      0.5f, 0.5f, 0.5f, 0.5f,  // 2
      0, 1, 0, 0,           // 3 positive of 0
      0, 0, 0, 1,           // 4
      0.5f, 0.5f, 0.5f, 0.5f,  // 5 == row 2
  };
  Batch b = exact_batch(3, 4, emb, 9);
  const Mined m = mine(b, MiningParams{NegativeMining::BatchHard, 3, 0.2, 1e-6});
  EXPECT_EQ(m.triplets[2], 2) << "rows 2 and 5 tie for anchor 0: the lower index wins";
  // Hide row 2 from anchor 0 (same item): row 5 is now the hardest.
  b.hops[2] = 0;
  EXPECT_EQ(mine(b, MiningParams{NegativeMining::BatchHard, 3, 0.2, 1e-6}).triplets[2], 5);
  // Semi-hard: d(a, p) = sqrt 2, d(a, row 2) = 1 (too hard), rows 1 and 4 at sqrt 2 tie with the
  // positive (not strictly farther): none in the band.
  b.hops[2] = 9;
  const Mined s = mine(b, MiningParams{NegativeMining::SemiHard, 3, 0.5, 1e-6});
  EXPECT_EQ(std::vector<int32_t>(s.triplets.begin(), s.triplets.begin() + 3), (std::vector<int32_t>{-1, -1, -1}));
  for (auto rule : {NegativeMining::BatchHard, NegativeMining::SemiHard})
    expect_matches_reference(b, MiningParams{rule, 3, 0.5, 1e-6}, "ties");
}

// Rows equal to the anchor all sit at the clamped distance sqrt(eps): a tie too.
TEST(Mining, ClampedDistancesTieToTheLowestIndex) {
  std::mt19937 rng(3);
  Batch b;
  b.B = 5, b.E = 6;
  b.emb = random_unit_rows(b.N(), b.E, rng);
  for (int r : {4, 7, 8})  // copies of anchor 0
    std::copy(b.emb.begin(), b.emb.begin() + 6, b.emb.begin() + r * 6);
  b.hops = random_hops(b.B, 3, 1, 1.0, rng);
  for (int j : {4, 7, 8}) b.hops[static_cast<size_t>(j)] = 200;  // far from anchor 0 in the graph
  const Mined m = mine(b, MiningParams{NegativeMining::BatchHard, 3, 0.2, 1e-6});
  EXPECT_EQ(m.triplets[2], 4);
  expect_matches_reference(b, MiningParams{NegativeMining::BatchHard, 3, 0.2, 1e-6}, "clamp ties");
}

// E = 1: every row is +1 or -1, so nearly every distance ties with another.
TEST(Mining, OneDimensionalRowsAreAllTies) {
  std::mt19937 rng(11);
  for (int B : {2, 7, 33}) {
    Batch b;
    b.B = B, b.E = 1;
    for (int r = 0; r < b.N(); ++r) b.emb.push_back(rng() % 2 ? 1.0f : -1.0f);
    b.hops = random_hops(B, 3, 2, 0.5, rng);
    for (auto rule : {NegativeMining::BatchHard, NegativeMining::SemiHard})
      for (double margin : {0.2, 2.5})
        expect_matches_reference(b, MiningParams{rule, 3, margin, 1e-6}, "E = 1");
  }
}

TEST(Mining, AnchorWithoutCandidatesGetsAnInvalidRow) {
  std::mt19937 rng(5);
  Batch b;
  b.B = 4, b.E = 5;
  b.emb = random_unit_rows(b.N(), b.E, rng);
  b.hops = random_hops(b.B, 3, 1, 0.7, rng);
  const int N = b.N();
  for (int j = 0; j < N; ++j)  // anchor 2: everything near (or itself)
    if (j != 2) b.hops[static_cast<size_t>(2) * N + j] = static_cast<uint8_t>(1 + j % 2);
  for (auto rule : {NegativeMining::BatchHard, NegativeMining::SemiHard}) {
    const MiningParams p{rule, 3, 1.0, 1e-6};
    const Mined m = mine(b, p);
    EXPECT_EQ(std::vector<int32_t>(m.triplets.begin() + 6, m.triplets.begin() + 9),
              (std::vector<int32_t>{-1, -1, -1}));
    expect_matches_reference(b, p, "no candidates");
  }
  // A batch where no anchor has a candidate at all.
  std::fill(b.hops.begin(), b.hops.end(), uint8_t{1});
  const Mined none = mine(b, MiningParams{NegativeMining::BatchHard, 3, 0.2, 1e-6});
  EXPECT_EQ(none.counts.valid, 0);
  EXPECT_EQ(none.counts.candidates, 0);
  EXPECT_EQ(none.triplets, std::vector<int32_t>(3 * 4, -1));
}

// Semi-hard with every candidate outside the band: the row is invalid, not a fallback.
TEST(Mining, SemiHardWithAnEmptyBandIsInvalid) {
  // Anchor 0 = e0, positive = (0.8, 0.6): d(a, p) = sqrt(0.4) ~ 0.632. Candidates: row 1 = e0
  // (d = sqrt(eps): too hard), row 2 = -e0 (d = 2) and rows 4, 5 = +-e1 (d = sqrt 2), all
  // beyond d(a, p) + margin for margin 0.2.
  const std::vector<float> emb = {1, 0, 1, 0, -1, 0, 0.8f, 0.6f, 0, 1, 0, -1};
  Batch b = exact_batch(3, 2, emb, 3);
  const Mined semi = mine(b, MiningParams{NegativeMining::SemiHard, 3, 0.2, 1e-6});
  const Mined hard = mine(b, MiningParams{NegativeMining::BatchHard, 3, 0.2, 1e-6});
  EXPECT_EQ(std::vector<int32_t>(semi.triplets.begin(), semi.triplets.begin() + 3),
            (std::vector<int32_t>{-1, -1, -1}));
  EXPECT_EQ(std::vector<int32_t>(hard.triplets.begin(), hard.triplets.begin() + 3),
            (std::vector<int32_t>{0, 3, 1}));
  // A wide margin takes in rows 4 and 5 (sqrt 2 < 0.632 + 1), tied: the lower index wins.
  const Mined wide = mine(b, MiningParams{NegativeMining::SemiHard, 3, 1.0, 1e-6});
  EXPECT_EQ(std::vector<int32_t>(wide.triplets.begin(), wide.triplets.begin() + 3), (std::vector<int32_t>{0, 3, 4}));
  for (double margin : {0.2, 1.0})
    for (auto rule : {NegativeMining::BatchHard, NegativeMining::SemiHard})
      expect_matches_reference(b, MiningParams{rule, 3, margin, 1e-6}, "empty band");
}

TEST(Mining, RejectsBadArguments) {
  const float emb[4] = {1, 0, 0, 1};
  const uint8_t hops[4] = {0, 1, 1, 0};
  int32_t t[3];
  MiningParams p;
  EXPECT_THROW(mine_triplets_cpu(emb, hops, 0, 2, p, t), std::invalid_argument);
  EXPECT_THROW(mine_triplets_cpu(emb, hops, 1, 0, p, t), std::invalid_argument);
  p.neg_hops = 0;
  EXPECT_THROW(mine_triplets_cpu(emb, hops, 1, 2, p, t), std::invalid_argument);
  p.neg_hops = 256;
  EXPECT_THROW(mine_triplets_cpu(emb, hops, 1, 2, p, t), std::invalid_argument);
}

// The shared summation order is a dot product (to double rounding) for every length.
TEST(Mining, LaneOrderDotIsADotProduct) {
  std::mt19937 rng(9);
  for (int E : {1, 2, 31, 32, 33, 64, 100, 300}) {
    const auto x = random_unit_rows(2, E, rng);
    long double exact = 0;
    for (int e = 0; e < E; ++e) exact += static_cast<long double>(x[e]) * x[E + e];
    EXPECT_NEAR(mining_dot(x.data(), x.data() + E, E), static_cast<double>(exact), 1e-15) << "E " << E;
  }
}

// ---- the backend op ---------------------------------------------------------------------------

TEST(Mining, CpuBackendOpMatchesTheKernel) {
  auto be = make_cpu_backend(2);
  std::mt19937 rng(21);
  Batch b;
  b.B = 33, b.E = 16;
  b.emb = random_unit_rows(b.N(), b.E, rng);
  b.hops = random_hops(b.B, 3, 1, 0.5, rng);
  for (auto rule : {NegativeMining::BatchHard, NegativeMining::SemiHard}) {
    const MiningParams p{rule, 3, 0.5, 1e-6};
    std::vector<int32_t> t(3 * 33, 777);
    float counts[2] = {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::quiet_NaN()};
    be->mine_triplets(b.emb.data(), b.hops.data(), b.B, b.E, p, t.data(), counts);
    const Mined want = mine(b, p);
    EXPECT_EQ(t, want.triplets);
    EXPECT_EQ(counts[0], static_cast<float>(want.counts.valid));
    EXPECT_EQ(counts[1], static_cast<float>(want.counts.candidates));
  }
  int32_t t[3];
  float counts[2];
  EXPECT_THROW(be->mine_triplets(b.emb.data(), b.hops.data(), kMaxMiningAnchors + 1, b.E, MiningParams{}, t, counts),
               std::invalid_argument);
}

// ---- the loss over a mined table --------------------------------------------------------------

// Skipping unmined rows is the loss over the valid rows alone: same mean, same gradient bits
// (the valid rows are applied in the same order with the same 1 / valid scale).
TEST(Mining, LossSkipsInvalidRowsAndAveragesOverValidOnes) {
  std::mt19937 rng(31);
  Batch b;
  b.B = 7, b.E = 12;
  b.emb = random_unit_rows(b.N(), b.E, rng);
  b.hops = random_hops(b.B, 3, 1, 0.4, rng);
  TripletLossParams lp;
  lp.margin = 0.5;
  const Mined m = mine(b, MiningParams{NegativeMining::SemiHard, 3, lp.margin, lp.eps});
  ASSERT_GT(m.counts.valid, 0);
  ASSERT_LT(m.counts.valid, b.B) << "the draw should leave some anchors without a semi-hard negative";
  std::vector<int32_t> compact;
  for (size_t i = 0; i < m.triplets.size(); i += 3)
    if (m.triplets[i] >= 0) compact.insert(compact.end(), m.triplets.begin() + static_cast<long>(i),
                                           m.triplets.begin() + static_cast<long>(i) + 3);
  for (bool swap : {false, true}) {
    lp.swap = swap;
    std::vector<float> g_mined(b.emb.size(), std::numeric_limits<float>::quiet_NaN()), g_compact(b.emb.size());
    const auto r = triplet_loss_cpu(b.emb.data(), m.triplets.data(), b.B, b.N(), b.E, lp, g_mined.data());
    const auto c = triplet_loss_cpu(b.emb.data(), compact.data(), static_cast<int>(compact.size() / 3), b.N(), b.E,
                                    lp, g_compact.data());
    EXPECT_EQ(r.valid, m.counts.valid);
    EXPECT_EQ(r.loss, c.loss) << "the mean must run over the valid rows only";
    EXPECT_EQ(r.active, c.active);
    EXPECT_EQ(g_mined, g_compact);
    EXPECT_GT(r.loss, 0) << "semi-hard triplets are active by construction (d(a, n) <= d(a, p) + margin)";
  }
}

TEST(Mining, LossWithNoValidRowIsZero) {
  std::mt19937 rng(33);
  const int N = 6, E = 5;
  const auto emb = random_unit_rows(N, E, rng);
  const std::vector<int32_t> trip(9, -1);
  std::vector<float> g(emb.size(), std::numeric_limits<float>::quiet_NaN());
  const auto r = triplet_loss_cpu(emb.data(), trip.data(), 3, N, E, TripletLossParams{}, g.data());
  EXPECT_EQ(r.loss, 0.0);
  EXPECT_EQ(r.active, 0);
  EXPECT_EQ(r.valid, 0);
  EXPECT_EQ(g, std::vector<float>(emb.size(), 0.0f));
  // Only a whole row of -1 is an unmined row; a single -1 is still an error.
  const std::vector<int32_t> partial = {0, 1, 2, 0, -1, 3};
  EXPECT_THROW(triplet_loss_cpu(emb.data(), partial.data(), 2, N, E, TripletLossParams{}, g.data()),
               std::out_of_range);
}

// ---- a mined training step --------------------------------------------------------------------

TEST(Mining, MinedTrainStepLowersTheLossOnAFixedBatch) {
  auto be = make_cpu_backend();
  Config c = test::small_config();
  c.loss.margin = 0.5;
  const int A = 6, batch = 2 * A;
  Model m(c, *be, batch);
  m.init_params(4);
  Optimizer opt(*be, m.params().layout(), c.optim);
  TrainStep step(m);
  std::mt19937 rng(8);
  const std::vector<uint8_t> hops = random_hops(A, 3, 1, 0.8, rng);
  int64_t with_candidates = 0;
  for (int i = 0; i < A; ++i) {
    bool any = false;
    for (int j = 0; j < batch; ++j) any |= j != i && hops[static_cast<size_t>(i) * batch + j] >= 3;
    with_candidates += any;
  }
  ASSERT_GT(with_candidates, 0);
  step.set_mining(hops, A, NegativeMining::BatchHard, 3);
  const auto audio = test::random_audio(batch, c.audio.clip_samples(), 2);
  step.forward_backward(audio.data(), batch, c.loss);
  const StepStats first = step.read_stats();
  EXPECT_EQ(first.mined, static_cast<float>(with_candidates)) << "batch-hard: every anchor with a candidate";
  EXPECT_GT(first.candidates, first.mined);
  {
    // The step mined and averaged what the host computes from the same embeddings (the CPU
    // backend's device memory is host memory; the forward pass is deterministic).
    const float* emb = m.forward(audio.data(), batch);
    const int E = c.model.embedding;
    std::vector<int32_t> t(3 * static_cast<size_t>(A));
    const MiningCounts mc =
        mine_triplets_cpu(emb, hops.data(), A, E, MiningParams{NegativeMining::BatchHard, 3, c.loss.margin, c.loss.eps},
                          t.data());
    const TripletLossResult r = triplet_loss_cpu(emb, t.data(), A, batch, E, c.loss, static_cast<float*>(nullptr));
    EXPECT_EQ(first.loss, static_cast<float>(r.loss));
    EXPECT_EQ(first.active, static_cast<float>(r.active));
    EXPECT_EQ(first.mined, static_cast<float>(mc.valid));
    EXPECT_EQ(first.candidates, static_cast<float>(mc.candidates));
  }
  // Batch-hard on one small batch from a random init sits near the collapse point (loss ~
  // margin) and descends slowly: 30 steps took the loss from 0.596 to 0.451 (-24%).
  for (int i = 0; i < 30; ++i) step.step(audio.data(), batch, c.loss, opt, 3e-3);
  step.forward_backward(audio.data(), batch, c.loss);
  const StepStats last = step.read_stats();
  EXPECT_LT(last.loss, 0.85f * first.loss) << "30 Adam steps on one batch should lower the batch-hard loss";
  // Wrong batch or hops size, and a switch back to a fixed table.
  EXPECT_THROW(step.forward_backward(audio.data(), batch - 2, c.loss), std::invalid_argument);
  EXPECT_THROW(step.set_mining(std::vector<uint8_t>(10), A, NegativeMining::BatchHard, 3), std::invalid_argument);
  step.set_triplets({0, 6, 1});
  step.forward_backward(audio.data(), batch, c.loss);
  EXPECT_EQ(step.read_stats().mined, 0.0f) << "no mining counts after set_triplets()";
}

}  // namespace
}  // namespace mg
