// Parity of the CPU ops (all but the mel front end) with PyTorch autograd in float64.
//
// SetUpTestSuite draws every case's inputs (seeded std::mt19937), writes them as float32 into
// one safetensors file, and runs tests/reference/ref_ops.py once; each TEST then runs our
// kernels on the same float32 values and compares with torch's float64 results:
//   - the float32 instantiation against a bound that covers float32 rounding (stated per test),
//   - the float64 instantiation against 1e-12 (same math in double: only the summation order
//     differs, so anything looser than a few ulps times the reduction length is a bug).
// Output buffers the kernels must overwrite are pre-filled with NaN; buffers they must
// accumulate into (parameter gradients) are pre-filled with random values.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "engine/io/safetensors.h"
#include "kernels/activation_cpu.h"
#include "kernels/band_norm_cpu.h"
#include "kernels/batchnorm_cpu.h"
#include "kernels/contrastive_loss_cpu.h"
#include "kernels/conv1d_cpu.h"
#include "kernels/linear_cpu.h"
#include "kernels/op_list.h"
#include "kernels/optim_cpu.h"
#include "kernels/pool_cpu.h"
#include "kernels/reduce_cpu.h"
#include "kernels/triplet_loss_cpu.h"
#include "tests/reference_harness.h"

namespace {

using mg::StFile;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Same math in float64 on both sides: only the order of the additions differs.
constexpr double kTolF64 = 1e-12;

struct Case {
  std::string name;
  std::map<std::string, double> num;
  std::map<std::string, std::string> str;
};

struct Suite {
  StFile in, out;
  std::map<std::string, std::vector<Case>> by_op;
  std::string error;  // why the reference could not be computed (empty when ready)
  bool ready = false;
};

Suite& suite() {
  static Suite s;
  return s;
}

std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o.push_back('\\');
    o.push_back(c);
  }
  return o;
}

Case& add_case(const std::string& op, const std::string& name, std::map<std::string, double> num,
               std::map<std::string, std::string> str = {}) {
  auto& v = suite().by_op[op];
  v.push_back(Case{name, std::move(num), std::move(str)});
  return v.back();
}

std::string cases_json() {
  std::ostringstream o;
  o.precision(17);
  o << "{";
  bool first_case = true;
  for (const auto& [op, cases] : suite().by_op) {
    for (const auto& c : cases) {
      o << (first_case ? "" : ",") << "\"" << json_escape(c.name) << "\":{\"op\":\"" << op << "\"";
      first_case = false;
      for (const auto& [k, v] : c.num) o << ",\"" << k << "\":" << v;
      for (const auto& [k, v] : c.str) o << ",\"" << k << "\":\"" << json_escape(v) << "\"";
      o << "}";
    }
  }
  o << "}";
  return o.str();
}

// ---- inputs ------------------------------------------------------------------------------

std::vector<float> uniform(std::mt19937& rng, size_t n, double lo, double hi) {
  std::uniform_real_distribution<double> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(d(rng));
  return v;
}

size_t numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return static_cast<size_t>(n);
}

void put(const std::string& c, const std::string& field, const std::vector<int64_t>& shape,
         const std::vector<float>& v) {
  ASSERT_EQ(numel(shape), v.size()) << c << "/" << field;
  suite().in.put_f32(c + "/" + field, shape, v.data());
}

// Inputs as the kernels of precision T see them (float64 copies of the float32 values are exact).
template <class T>
std::vector<T> input(const std::string& c, const std::string& field) {
  const auto v = suite().in.at(c + "/" + field).to_f64();
  return std::vector<T>(v.begin(), v.end());
}

std::vector<double> want(const std::string& c, const std::string& field, size_t n) {
  const mg::StTensor& t = suite().out.at(c + "/" + field);
  if (static_cast<size_t>(t.numel()) != n)
    throw mg::SafetensorsError("ref_ops.py output '" + c + "/" + field + "' has " +
                               std::to_string(t.numel()) + " elements, expected " +
                               std::to_string(n));
  return t.to_f64();
}

template <class T>
constexpr const char* prec() {
  return std::is_same_v<T, float> ? "float32" : "float64";
}

// Norm-wise relative error with the worst element named, and a check that nothing is left
// non-finite (rel_error alone would skip NaNs from a buffer the kernel failed to write).
// `precision` names the kernel instantiation (differences of its outputs arrive as double).
template <class T>
void expect_close(const std::vector<T>& got, const std::vector<double>& ref, double tol,
                  const std::string& what, const char* precision = prec<T>()) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  size_t nonfinite = 0, first_bad = 0;
  size_t worst = 0;
  double worst_diff = -1;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(static_cast<double>(got[i]))) {
      if (nonfinite++ == 0) first_bad = i;
      continue;
    }
    const double d = std::abs(static_cast<double>(got[i]) - ref[i]);
    if (d > worst_diff) worst_diff = d, worst = i;
  }
  EXPECT_EQ(nonfinite, 0u) << what << ": " << nonfinite << " non-finite values, first at "
                           << first_bad << " (a buffer pre-filled with NaN was not fully written?)";
  const double e = mg::test::rel_error(got.data(), ref.data(), got.size());
  // MELGRAPH_TEST_VERBOSE=1 prints every measured error, to see the margin under each bound.
  if (const char* v = std::getenv("MELGRAPH_TEST_VERBOSE"); v && std::string(v) == "1")
    std::printf("  %-60s %s  rel err %.3e  (bound %.0e)\n", what.c_str(), precision, e, tol);
  EXPECT_LE(e, tol) << what << " (" << precision << "): norm-wise relative error " << e << " > "
                    << tol << "; worst element " << worst << ": got "
                    << static_cast<double>(got[worst]) << ", torch " << ref[worst];
}

// a - b in double, optionally divided: what an accumulating kernel added to a pre-filled buffer.
template <class T>
std::vector<double> added(const std::vector<T>& now, const std::vector<T>& before, double div = 1) {
  std::vector<double> d(now.size());
  for (size_t i = 0; i < now.size(); ++i)
    d[i] = (static_cast<double>(now[i]) - static_cast<double>(before[i])) / div;
  return d;
}

template <class T>
double tol_for(double f32) {
  return std::is_same_v<T, float> ? f32 : kTolF64;
}

// ---- case generation -------------------------------------------------------------------------

mg::Conv1dDims conv_dims(const Case& c) {
  const auto& n = c.num;
  return mg::Conv1dDims{static_cast<int>(n.at("B")),        static_cast<int>(n.at("Cin")),
                        static_cast<int>(n.at("Cout")),     static_cast<int>(n.at("Tin")),
                        static_cast<int>(n.at("K")),        static_cast<int>(n.at("pad_left")),
                        static_cast<int>(n.at("pad_right"))};
}

void gen_conv(const std::string& name, int B, int Cin, int Cout, int Tin, int K, bool same,
              uint32_t seed) {
  // The header's "same" split; ref_ops.py checks that torch's padding="same" agrees.
  const int pl = same ? (K - 1) / 2 : 0;
  const int pr = same ? K - 1 - pl : 0;
  const Case& c = add_case("conv1d", name,
                           {{"B", B},
                            {"Cin", Cin},
                            {"Cout", Cout},
                            {"Tin", Tin},
                            {"K", K},
                            {"pad_left", pl},
                            {"pad_right", pr}},
                           {{"padding", same ? "same" : "valid"}});
  const mg::Conv1dDims d = conv_dims(c);
  std::mt19937 rng(seed);
  const auto sB = static_cast<int64_t>(B), sCin = static_cast<int64_t>(Cin),
             sCout = static_cast<int64_t>(Cout), sK = static_cast<int64_t>(K);
  put(name, "x", {sB, sCin, Tin}, uniform(rng, numel({sB, sCin, Tin}), -1, 1));
  put(name, "w", {sCout, sCin, sK}, uniform(rng, numel({sCout, sCin, sK}), -0.5, 0.5));
  put(name, "b", {sCout}, uniform(rng, static_cast<size_t>(Cout), -0.5, 0.5));
  put(name, "dy", {sB, sCout, d.Tout()}, uniform(rng, numel({sB, sCout, d.Tout()}), -1, 1));
  // Pre-fill of the accumulated gradients, at the gradients' own scale (sum over B*Tout terms
  // of unit size) so that a kernel that overwrites instead of adding is far off.
  const double s = std::sqrt(static_cast<double>(B) * d.Tout());
  put(name, "dw0", {sCout, sCin, sK}, uniform(rng, numel({sCout, sCin, sK}), -s, s));
  put(name, "db0", {sCout}, uniform(rng, static_cast<size_t>(Cout), -s, s));
}

void gen_maxpool(const std::string& name, int rows, int Tin, int window, bool ties, uint32_t seed) {
  add_case("maxpool", name, {{"rows", rows}, {"Tin", Tin}, {"window", window}},
           {{"ties", ties ? "yes" : "no"}});
  std::mt19937 rng(seed);
  std::vector<float> x;
  if (ties) {
    // Few distinct values: most windows hold their maximum more than once.
    std::uniform_int_distribution<int> d(0, 2);
    x.resize(static_cast<size_t>(rows) * static_cast<size_t>(Tin));
    for (auto& v : x) v = static_cast<float>(d(rng)) * 0.5f;
  } else {
    x = uniform(rng, static_cast<size_t>(rows) * static_cast<size_t>(Tin), -1, 1);
  }
  put(name, "x", {rows, Tin}, x);
  const int Tout = Tin / window;
  put(name, "dy", {rows, Tout},
      uniform(rng, static_cast<size_t>(rows) * static_cast<size_t>(Tout), -1, 1));
}

void gen_relu(const std::string& name, int64_t n, uint32_t seed) {
  add_case("relu", name, {{"n", static_cast<double>(n)}});
  std::mt19937 rng(seed);
  auto x = uniform(rng, static_cast<size_t>(n), -1, 1);
  // Exact zeros of both signs: no gradient passes there (torch: y <= 0 blocks it).
  for (size_t i = 0; i < x.size(); i += 13) x[i] = (i / 13) % 2 ? 0.0f : -0.0f;
  put(name, "x", {n}, x);
  put(name, "dy", {n}, uniform(rng, static_cast<size_t>(n), -1, 1));
}

void gen_mean(const std::string& name, int rows, int Tn, uint32_t seed) {
  add_case("mean_time", name, {{"rows", rows}, {"T", Tn}});
  std::mt19937 rng(seed);
  put(name, "x", {rows, Tn},
      uniform(rng, static_cast<size_t>(rows) * static_cast<size_t>(Tn), 0, 2));
  put(name, "dy", {rows}, uniform(rng, static_cast<size_t>(rows), -1, 1));
}

void gen_linear(const std::string& name, int B, int C, int E, uint32_t seed) {
  add_case("linear", name, {{"B", B}, {"C", C}, {"E", E}});
  std::mt19937 rng(seed);
  const auto sB = static_cast<size_t>(B), sC = static_cast<size_t>(C), sE = static_cast<size_t>(E);
  put(name, "x", {B, C}, uniform(rng, sB * sC, 0, 2));
  put(name, "w", {E, C}, uniform(rng, sE * sC, -0.3, 0.3));
  put(name, "b", {E}, uniform(rng, sE, -0.5, 0.5));
  put(name, "dy", {B, E}, uniform(rng, sB * sE, -1, 1));
  const double s = static_cast<double>(B);
  put(name, "dw0", {E, C}, uniform(rng, sE * sC, -s, s));
  put(name, "db0", {E}, uniform(rng, sE, -s, s));
}

// tiny_row >= 0: that row is scaled to norm 0.1 * eps, the branch where normalize divides by eps.
void gen_l2norm(const std::string& name, int B, int E, double eps, int tiny_row, uint32_t seed) {
  add_case("l2norm", name, {{"B", B}, {"E", E}, {"eps", eps}});
  std::mt19937 rng(seed);
  const auto sE = static_cast<size_t>(E);
  auto x = uniform(rng, static_cast<size_t>(B) * sE, -1, 1);
  if (tiny_row >= 0) {
    double n2 = 0;
    for (size_t j = 0; j < sE; ++j)
      n2 += static_cast<double>(x[static_cast<size_t>(tiny_row) * sE + j]) *
            x[static_cast<size_t>(tiny_row) * sE + j];
    const double f = 0.1 * eps / std::sqrt(n2);
    for (size_t j = 0; j < sE; ++j) {
      float& v = x[static_cast<size_t>(tiny_row) * sE + j];
      v = static_cast<float>(v * f);
    }
  }
  put(name, "x", {B, E}, x);
  put(name, "dy", {B, E}, uniform(rng, static_cast<size_t>(B) * sE, -1, 1));
}

// Row 1 is (1/4, 1/4, 1/4, 1/4, 0, ...), of norm exactly eps = 1/2: the clamp boundary of
// F.normalize, where torch's clamp_min passes the gradient (>=) and the result is the full
// projection (dy - y (y.dy)) / eps, not dy / eps.
void gen_l2norm_at_eps(const std::string& name, uint32_t seed) {
  const int B = 3, E = 11;
  add_case("l2norm", name, {{"B", B}, {"E", E}, {"eps", 0.5}});
  std::mt19937 rng(seed);
  auto x = uniform(rng, static_cast<size_t>(B * E), -1, 1);  // other rows: norm ~1.9
  for (size_t k = 0; k < static_cast<size_t>(E); ++k)
    x[static_cast<size_t>(E) + k] = k < 4 ? 0.25f : 0.0f;
  put(name, "x", {B, E}, x);
  put(name, "dy", {B, E}, uniform(rng, static_cast<size_t>(B * E), -1, 1));
}

// Triplet-loss embeddings: rows with positive entries (cosine ~0.75 between unrelated rows, like
// post-ReLU features; closer for rows drawn near another, see `near`), L2-normalised in double and
// rounded to float32. `exact_rows` rows are set to the exactly-unit vector (0.5, 0.5, 0.5, 0.5, 0,
// ...), so that a triplet pairing two of them has 2 (1 - x.y) == 0 exactly in any precision (the
// eps clamp, by design).
struct TripletSpec {
  int N = 0, E = 0;
  std::vector<int32_t> triplets;  // [T, 3]
  std::vector<int> exact_rows;
  // near[r] = b >= 0: row r is drawn as row b plus sigma * (positive noise) before normalising,
  // sigma ~ U(sigma_lo, sigma_hi): close pairs make inactive triplets, as in a trained model.
  std::vector<int> near;
  double sigma_lo = 1, sigma_hi = 1;
  double margin = 0.2;
  bool swap = false;
  double eps = 1e-6;
};

double dot_rows(const std::vector<float>& emb, int E, int i, int j) {
  double s = 0;
  for (int k = 0; k < E; ++k)
    s += static_cast<double>(emb[static_cast<size_t>(i * E + k)]) *
         emb[static_cast<size_t>(j * E + k)];
  return s;
}

// Draws embeddings until every triplet is far from the places where float32 and float64 could
// take different branches: the hinge (|l| > 1e-3), the eps clamp (2 (1 - x.y) > 1e-2, unless
// the pair is an exact-row pair by design) and, with swap, the choice of the negative distance
// (|d(a,n) - d(p,n)| > 1e-3 unless both are clamped the same way). float32 errors in these
// quantities are ~1e-6, so 1e-3 leaves three orders of magnitude.
std::vector<float> draw_embeddings(const TripletSpec& t, std::mt19937& rng, std::string* why) {
  const auto sE = static_cast<size_t>(t.E);
  for (int attempt = 0; attempt < 1000; ++attempt) {
    std::vector<float> emb(static_cast<size_t>(t.N) * sE);
    std::vector<std::vector<double>> raw(static_cast<size_t>(t.N));
    std::uniform_real_distribution<double> d(0.0, 1.0), sig(t.sigma_lo, t.sigma_hi);
    for (int r = 0; r < t.N; ++r) {
      const int base = r < static_cast<int>(t.near.size()) ? t.near[static_cast<size_t>(r)] : -1;
      std::vector<double>& row = raw[static_cast<size_t>(r)];
      row.resize(sE);
      const double sigma = base >= 0 ? sig(rng) : 1.0;
      for (size_t k = 0; k < sE; ++k)
        row[k] = (base >= 0 ? raw[static_cast<size_t>(base)][k] : 0.0) + sigma * d(rng);
      double n2 = 0;
      for (double v : row) n2 += v * v;
      for (size_t k = 0; k < sE; ++k)
        emb[static_cast<size_t>(r) * sE + k] = static_cast<float>(row[k] / std::sqrt(n2));
    }
    for (int r : t.exact_rows)
      for (size_t k = 0; k < sE; ++k) emb[static_cast<size_t>(r) * sE + k] = k < 4 ? 0.5f : 0.0f;
    auto is_exact = [&](int r) {
      for (int e : t.exact_rows)
        if (e == r) return true;
      return false;
    };
    bool ok = true;
    const size_t T = t.triplets.size() / 3;
    for (size_t i = 0; i < T && ok; ++i) {
      const int a = t.triplets[3 * i], p = t.triplets[3 * i + 1], n = t.triplets[3 * i + 2];
      auto sq = [&](int u, int v) { return 2.0 * (1.0 - dot_rows(emb, t.E, u, v)); };
      auto dist = [&](double s) { return std::sqrt(std::max(s, t.eps)); };
      auto far_from_clamp = [&](int u, int v) {
        return (is_exact(u) && is_exact(v)) || sq(u, v) > 1e-2;
      };
      if (!far_from_clamp(a, p) || !far_from_clamp(a, n) || (t.swap && !far_from_clamp(p, n))) {
        ok = false;
        break;
      }
      const double dap = dist(sq(a, p)), dan = dist(sq(a, n)), dpn = dist(sq(p, n));
      double dneg = dan;
      if (t.swap) {
        // An exact tie is fine only when it is the same pair of rows (p == a): then torch's
        // half/half split of min()'s gradient and the header's "swap only when strictly less"
        // put the same total on each row.
        if (std::abs(dan - dpn) < 1e-3 && a != p) ok = false;
        dneg = std::min(dan, dpn);
      }
      if (std::abs(dap - dneg + t.margin) < 1e-3) ok = false;
    }
    if (ok) return emb;
  }
  *why = "could not draw embeddings away from the hinge/clamp/swap boundaries in 1000 tries";
  return {};
}

// `fixed`: the embeddings as given (exact cases), instead of drawn.
void gen_triplet(const std::string& name, TripletSpec t, uint32_t seed,
                 const std::vector<float>& fixed = {}) {
  add_case(
      "triplet", name,
      {{"N", t.N}, {"E", t.E}, {"margin", t.margin}, {"swap", t.swap ? 1.0 : 0.0}, {"eps", t.eps}});
  std::mt19937 rng(seed);
  std::string why;
  const auto emb = fixed.empty() ? draw_embeddings(t, rng, &why) : fixed;
  ASSERT_FALSE(emb.empty()) << name << ": " << why;
  put(name, "emb", {t.N, t.E}, emb);
  suite().in.put_i32(name + "/triplets", {static_cast<int64_t>(t.triplets.size() / 3), 3},
                     t.triplets.data());
}

// N = 3 T rows, each used once.
void gen_triplet_disjoint(const std::string& name, double margin, bool swap, uint32_t seed) {
  TripletSpec t;
  const int T = 13;
  t.N = 3 * T;
  t.E = 23;
  t.margin = margin;
  t.swap = swap;
  for (int i = 0; i < 3 * T; ++i) t.triplets.push_back(i);
  t.near.assign(static_cast<size_t>(t.N), -1);
  for (int i = 0; i < T; ++i)
    t.near[static_cast<size_t>(3 * i + 1)] = 3 * i;  // positive near anchor
  t.sigma_lo = 0.5;
  t.sigma_hi = 4.0;
  gen_triplet(name, t, seed);
}

// Rows shared between triplets (their gradients must add up), one unused row (its gradient must
// be zero), and deliberate clamp triplets on the exact rows 6 and 7 (identical contents).
void gen_triplet_shared(const std::string& name, double margin, bool swap, uint32_t seed) {
  TripletSpec t;
  t.N = 9;  // rows 0..5 random, 6 and 7 exact, 8 unused
  t.E = 23;
  t.margin = margin;
  t.swap = swap;
  t.exact_rows = {6, 7};
  t.near = {-1, 0, 0, -1, 3, 3};  // two clusters, {0, 1, 2} and {3, 4, 5}
  std::mt19937 rng(seed ^ 0x5eedu);
  std::uniform_int_distribution<int> d(0, 5);
  for (int i = 0; i < 15; ++i) {
    int a = d(rng), p = d(rng), n = d(rng);
    while (p == a) p = d(rng);
    while (n == a || n == p) n = d(rng);
    t.triplets.insert(t.triplets.end(), {a, p, n});
  }
  // anchor == positive (same row): d(a,p) is clamped to sqrt(eps), no gradient through it.
  t.triplets.insert(t.triplets.end(), {6, 6, 2});
  // positive == negative in content: d(a,p) == d(a,n), hinge == margin; with swap, d(p,n) is
  // the clamped sqrt(eps) < d(a,n) and is chosen (strictly smaller), carrying no gradient.
  t.triplets.insert(t.triplets.end(), {3, 6, 7});
  if (!swap) {
    // anchor and positive distinct rows with equal contents. Not with swap: there
    // d(a,n) == d(p,n) exactly, and torch splits min()'s gradient half/half between rows 6 and
    // 7 while the header's rule (swap only when strictly smaller) gives all of it to the anchor:
    // a documented difference on an exact tie, which real embeddings never hit.
    t.triplets.insert(t.triplets.end(), {6, 7, 4});
  }
  gen_triplet(name, t, seed);
}

// The hinge at exactly zero, where torch's clamp_min still passes the gradient. With eps = 1/4
// and margin = 1/2 everything is exact in binary: anchor == positive gives d(a,p) = sqrt(eps)
// = 1/2 (clamped), a.n = 1/2 gives d(a,n) = 1, so l = 1/2 - 1 + 1/2 = 0 in any precision.
void gen_triplet_hinge_zero(const std::string& name, bool swap) {
  TripletSpec t;
  t.N = 4;
  t.E = 7;
  t.margin = 0.5;
  t.eps = 0.25;
  t.swap = swap;
  std::vector<float> emb(static_cast<size_t>(t.N * t.E), 0.0f);
  emb[0] = 1.0f;                                     // row 0: e0
  for (size_t k = 0; k < 4; ++k) emb[7 + k] = 0.5f;  // row 1: (1/2, 1/2, 1/2, 1/2, 0..)
  emb[14 + 1] = 0.6f, emb[14 + 2] = 0.8f;            // row 2: orthogonal to row 0
  emb[21 + 5] = 1.0f;                                // row 3: unused
  // (0,0,1) and (1,1,0): l == 0 exactly. (0,2,1) an ordinary active one, d(a,p) = sqrt(2),
  // d(a,n) = 1 and d(p,n) ~ 0.77 (with swap, strictly the smaller: no tie).
  t.triplets = {0, 0, 1, 1, 1, 0, 0, 2, 1};
  gen_triplet(name, t, 0, emb);
}

// A contrastive batch: unit rows, a few of them near another (like positives after training),
// hop distances (symmetric unless `asymmetric`) spanning same item (0), neighbours, the band
// between pos_hops and neg_hops, far; and the last row with no positive.
void gen_contrastive(const std::string& name, int N, int E, double tau, int pos_hops, int neg_hops, bool asymmetric,
                     uint32_t seed) {
  add_case("contrastive", name,
           {{"N", N}, {"E", E}, {"tau", tau}, {"pos_hops", pos_hops}, {"neg_hops", neg_hops}});
  std::mt19937 rng(seed);
  std::normal_distribution<double> g(0.0, 1.0);
  std::vector<double> raw(static_cast<size_t>(N) * E);
  for (auto& v : raw) v = g(rng);
  for (int r = 1; r < N; r += 3)  // row r near row r - 1
    for (int k = 0; k < E; ++k) raw[static_cast<size_t>(r * E + k)] = raw[static_cast<size_t>((r - 1) * E + k)] + 0.3 * g(rng);
  std::vector<float> emb(raw.size());
  for (int r = 0; r < N; ++r) {
    double n2 = 0;
    for (int k = 0; k < E; ++k) n2 += raw[static_cast<size_t>(r * E + k)] * raw[static_cast<size_t>(r * E + k)];
    for (int k = 0; k < E; ++k) emb[static_cast<size_t>(r * E + k)] = static_cast<float>(raw[static_cast<size_t>(r * E + k)] / std::sqrt(n2));
  }
  put(name, "emb", {N, E}, emb);
  std::vector<int32_t> hops(static_cast<size_t>(N) * N, 0);
  std::uniform_int_distribution<int> h(0, neg_hops + 2);
  for (int i = 0; i < N; ++i)
    for (int j = 0; j < N; ++j) {
      if (i == j) continue;
      hops[static_cast<size_t>(i * N + j)] = (!asymmetric && j < i) ? hops[static_cast<size_t>(j * N + i)] : h(rng);
    }
  for (int j = 0; j < N - 1; ++j) hops[static_cast<size_t>((N - 1) * N + j)] = neg_hops + 3;
  suite().in.put_i32(name + "/hops", {N, N}, hops.data());
}

// Batch norm over x [B, D]: features of different means and scales (pooled ReLU features),
// running statistics to update, and pre-filled parameter gradients to accumulate into.
void gen_batchnorm(const std::string& name, int B, int D, double momentum, uint32_t seed) {
  add_case("batchnorm", name, {{"B", B}, {"D", D}, {"eps", 1e-5}, {"momentum", momentum}});
  std::mt19937 rng(seed);
  std::vector<float> x(static_cast<size_t>(B) * D);
  const auto scale = uniform(rng, static_cast<size_t>(D), 0.01, 3), shift = uniform(rng, static_cast<size_t>(D), 0, 2);
  const auto noise = uniform(rng, x.size(), 0, 1);
  for (int b = 0; b < B; ++b)
    for (int j = 0; j < D; ++j)
      x[static_cast<size_t>(b * D + j)] = shift[static_cast<size_t>(j)] + scale[static_cast<size_t>(j)] * noise[static_cast<size_t>(b * D + j)];
  put(name, "x", {B, D}, x);
  put(name, "gamma", {D}, uniform(rng, static_cast<size_t>(D), 0.5, 1.5));
  put(name, "beta", {D}, uniform(rng, static_cast<size_t>(D), -0.5, 0.5));
  put(name, "running_mean", {D}, uniform(rng, static_cast<size_t>(D), -1, 1));
  put(name, "running_var", {D}, uniform(rng, static_cast<size_t>(D), 0.5, 2));
  put(name, "dy", {B, D}, uniform(rng, x.size(), -1, 1));
  put(name, "dgamma0", {D}, uniform(rng, static_cast<size_t>(D), -1, 1));
  put(name, "dbeta0", {D}, uniform(rng, static_cast<size_t>(D), -1, 1));
}

void gen_band_norm(const std::string& name, int B, int C, int Tn, uint32_t seed) {
  add_case("band_norm", name, {{"B", B}, {"C", C}, {"T", Tn}});
  std::mt19937 rng(seed);
  put(name, "x", {B, C, Tn}, uniform(rng, static_cast<size_t>(B * C * Tn), -14, 10));
  put(name, "mean", {C}, uniform(rng, static_cast<size_t>(C), -10, 5));
  put(name, "std", {C}, uniform(rng, static_cast<size_t>(C), 0.01, 4));
}

void gen_adam(const std::string& name, bool decoupled, double wd, uint32_t seed) {
  const int n = 1013, steps = 5;
  add_case("adam", name,
           {{"n", n},
            {"steps", steps},
            {"lr", 1e-2},
            {"beta1", 0.9},
            {"beta2", 0.999},
            {"eps", 1e-8},
            {"weight_decay", wd},
            {"decoupled", decoupled ? 1.0 : 0.0}});
  std::mt19937 rng(seed);
  put(name, "p0", {n}, uniform(rng, static_cast<size_t>(n), -0.5, 0.5));
  // Gradient magnitudes over eight decades, both signs: small ones make eps (and, for Adam, the
  // L2 term) matter, so their placement in the formula is checked.
  std::uniform_real_distribution<double> lg(-7.0, 1.0), sg(-1.0, 1.0);
  std::vector<float> g(static_cast<size_t>(n) * steps);
  for (auto& v : g) v = static_cast<float>((sg(rng) < 0 ? -1.0 : 1.0) * std::pow(10.0, lg(rng)));
  put(name, "grads", {steps, n}, g);
}

void gen_clip(const std::string& name, int64_t n, double max_norm, uint32_t seed) {
  add_case("clip_grad_norm", name, {{"n", static_cast<double>(n)}, {"max_norm", max_norm}});
  std::mt19937 rng(seed);
  put(name, "g", {n}, uniform(rng, static_cast<size_t>(n), -1, 1));
}

// One generator per row of the op list (kernels/op_list.h) whose reference is `torch`; the
// seed runs through them in list order.
void band_norm_reference_cases(uint32_t& seed) { gen_band_norm("band_norm_3x7x11", 3, 7, 11, seed++); }

void conv1d_reference_cases(uint32_t& seed) {
  for (int K : {1, 3, 4, 5})
    for (bool same : {false, true})
      gen_conv(std::string("conv_") + (same ? "same" : "valid") + "_k" + std::to_string(K), 3, 7, 5,
               37, K, same, seed++);
  // The model's first stage: 128 mels -> 128 channels over 431 frames, K = 4.
  gen_conv("conv_model_valid", 2, 128, 128, 431, 4, false, seed++);
  gen_conv("conv_model_same", 2, 128, 128, 431, 4, true, seed++);
}

void relu_reference_cases(uint32_t& seed) { gen_relu("relu_777", 3 * 7 * 37, seed++); }

void maxpool_reference_cases(uint32_t& seed) {
  gen_maxpool("pool_37", 21, 37, 4, false, seed++);
  gen_maxpool("pool_39", 5, 39, 4, false, seed++);
  gen_maxpool("pool_model", 256, 431, 4, false, seed++);  // "same" stage 1 output
  gen_maxpool("pool_ties", 6, 42, 4, true, seed++);
}

void mean_time_reference_cases(uint32_t& seed) {
  gen_mean("mean_21x37", 21, 37, seed++);
  gen_mean("mean_model", 2 * 128, 23, seed++);  // last stage of the valid model: 23 steps
}

void batchnorm_reference_cases(uint32_t& seed) {
  gen_batchnorm("batchnorm_8x37", 8, 37, 0.1, seed++);
  gen_batchnorm("batchnorm_model", 64, 256, 0.1, seed++);  // 64 clips, [mean | max] of 128 channels
  gen_batchnorm("batchnorm_two_rows", 2, 5, 0.3, seed++);
}

void linear_reference_cases(uint32_t& seed) {
  gen_linear("linear_6x37x11", 6, 37, 11, seed++);
  gen_linear("linear_model", 192, 128, 128, seed++);  // 64 triplets x 3 clips, 128 -> 128
}

void l2norm_reference_cases(uint32_t& seed) {
  gen_l2norm("l2_6x11", 6, 11, 1e-12, -1, seed++);
  gen_l2norm("l2_model", 192, 128, 1e-12, -1, seed++);
  gen_l2norm("l2_tiny_row", 5, 11, 1e-2, 2, seed++);
  gen_l2norm_at_eps("l2_norm_equals_eps", seed++);
}

void triplet_reference_cases(uint32_t& seed) {
  for (double m : {0.2, 1.0})
    for (bool swap : {false, true}) {
      const std::string tag = std::string(m == 0.2 ? "m02" : "m10") + (swap ? "_swap" : "");
      gen_triplet_disjoint("trip_disjoint_" + tag, m, swap, seed++);
      gen_triplet_shared("trip_shared_" + tag, m, swap, seed++);
    }
  gen_triplet_hinge_zero("trip_hinge_zero", false);
  gen_triplet_hinge_zero("trip_hinge_zero_swap", true);
}

void contrastive_reference_cases(uint32_t& seed) {
  gen_contrastive("contrastive_t01", 24, 16, 0.1, 1, 2, false, seed++);
  gen_contrastive("contrastive_band_t05", 31, 33, 0.5, 1, 3, false, seed++);
  gen_contrastive("contrastive_asym_t02", 20, 7, 0.2, 2, 4, true, seed++);
  gen_contrastive("contrastive_model", 64, 128, 0.2, 1, 2, false, seed++);  // 32 anchors + positives
}

void adam_reference_cases(uint32_t& seed) {
  gen_adam("adam_wd0", false, 0.0, seed++);
  gen_adam("adam_wd001", false, 0.01, seed++);
  gen_adam("adamw_wd0", true, 0.0, seed++);
  gen_adam("adamw_wd001", true, 0.01, seed++);
}

void clip_grad_norm_reference_cases(uint32_t& seed) {
  gen_clip("clip_above", 1013, 5.0, seed++);    // norm ~18
  gen_clip("clip_below", 1013, 50.0, seed++);   // norm ~18
  gen_clip("clip_model", 300007, 1.0, seed++);  // norm ~316, long reduction
}

#define MG_REF_torch(op) op##_reference_cases(seed);
#define MG_REF_own(op)
#define MG_REF_CASES(op, gradient, reference, kernels) MG_REF_##reference(op)
void generate_all() {
  uint32_t seed = 1000;
  MELGRAPH_OPS(MG_REF_CASES)
}

// The rows whose reference is `torch`: each must have cases, and ref_ops.py must know each
// (it is given this list and exits naming any op it lacks).
std::vector<std::string> torch_ops() {
  std::vector<std::string> ops;
  for (const mg::OpRow& row : mg::kOpRows)
    if (std::string(row.reference) == "torch") ops.emplace_back(row.op);
  return ops;
}

std::string json_list(const std::vector<std::string>& v) {
  std::string o = "[";
  for (size_t i = 0; i < v.size(); ++i) o += (i ? ",\"" : "\"") + json_escape(v[i]) + "\"";
  return o + "]";
}

class RefOps : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    Suite& s = suite();
    if (s.ready || !s.error.empty()) return;
    if (!mg::test::torch_unavailable_reason().empty()) {
      s.error = "torch unavailable";  // each test skips (or fails) through MG_REQUIRE_TORCH
      return;
    }
    generate_all();
    if (::testing::Test::HasFatalFailure()) {
      s.error = "case generation failed (see the failure above)";
      return;
    }
    s.in.metadata["cases"] = cases_json();
    s.in.metadata["ops"] = json_list(torch_ops());
    mg::test::TempDir dir;
    const std::string in_path = dir.file("ops_in.safetensors");
    const std::string out_path = dir.file("ops_out.safetensors");
    try {
      mg::write_safetensors(in_path, s.in);
      std::string log;
      const std::string cmd = mg::test::python_exe() + " " +
                              mg::test::reference_script("ref_ops.py") + " " + in_path + " " +
                              out_path;
      const int rc = mg::test::run_command(cmd, &log);
      if (rc != 0) {
        s.error = "reference script failed (exit " + std::to_string(rc) + "): " + cmd + "\n" + log;
        return;
      }
      s.out = mg::read_safetensors(out_path);
    } catch (const std::exception& e) {
      s.error = std::string("exchanging data with ref_ops.py failed: ") + e.what();
      return;
    }
    s.ready = true;
  }

  void SetUp() override {
    // Checked again per test so a missing torch is a skip (or, in CI, a failure) for each.
    MG_REQUIRE_TORCH();
    ASSERT_TRUE(suite().ready) << suite().error;
  }

  static const std::vector<Case>& cases(const std::string& op) { return suite().by_op.at(op); }
};

// Every `torch` row of the op list has cases here (ref_ops.py has already refused to run if
// it lacks one of them).
TEST_F(RefOps, EveryTorchOpOfTheListHasCases) {
  for (const std::string& op : torch_ops()) {
    const auto it = suite().by_op.find(op);
    EXPECT_TRUE(it != suite().by_op.end() && !it->second.empty())
        << op << ": its reference is `torch` in kernels/op_list.h but " << op << "_reference_cases adds no case";
  }
  for (const auto& [op, cases] : suite().by_op) {
    const std::vector<std::string> ops = torch_ops();
    EXPECT_NE(std::find(ops.begin(), ops.end(), op), ops.end()) << op << ": cases for an op that is not a torch row";
  }
}

// ---- conv1d ----------------------------------------------------------------------------------

template <class T>
void check_conv(const Case& c, double tol32) {
  SCOPED_TRACE(c.name + " " + prec<T>());
  const mg::Conv1dDims d = conv_dims(c);
  const auto x = input<T>(c.name, "x"), w = input<T>(c.name, "w"), b = input<T>(c.name, "b");
  const auto dy = input<T>(c.name, "dy"), dw0 = input<T>(c.name, "dw0"),
             db0 = input<T>(c.name, "db0");
  const size_t ny = numel({d.B, d.Cout, d.Tout()});
  std::vector<T> y(ny, static_cast<T>(kNaN));
  mg::conv1d_forward_cpu(x.data(), w.data(), b.data(), y.data(), d);
  expect_close(y, want(c.name, "y", ny), tol_for<T>(tol32), c.name + " y");

  std::vector<T> dx(x.size(), static_cast<T>(kNaN)), dw = dw0, db = db0;
  mg::conv1d_backward_cpu(dy.data(), x.data(), w.data(), dx.data(), dw.data(), db.data(), d);
  expect_close(dx, want(c.name, "dx", x.size()), tol_for<T>(tol32), c.name + " dx");
  // Accumulation: what the kernel added must be torch's gradient.
  expect_close(added(dw, dw0), want(c.name, "dw", dw.size()), tol_for<T>(tol32),
               c.name + " dw - dw0", prec<T>());
  expect_close(added(db, db0), want(c.name, "db", db.size()), tol_for<T>(tol32),
               c.name + " db - db0", prec<T>());
}

// Per element these are dot products of Cin*K <= 35 terms (y), Cout*K <= 25 (dx) and
// B*Tout <= 111 (dw, db): float32 rounding stays well below 1e-5 of the largest value.
TEST_F(RefOps, Conv1dSmall) {
  for (const Case& c : cases("conv1d")) {
    if (c.name.find("model") != std::string::npos) continue;
    check_conv<float>(c, 1e-5);
    check_conv<double>(c, 1e-5);
  }
}

// Model size: 512-term dot products for y and dx, 856-term reductions (B*Tout) for dw and
// 856-term sums for db. A random-walk rounding estimate is ~eps32 * sqrt(856) / 4 ~ 5e-7 of the
// largest element; 1e-5 still holds with a 20x margin, so no looser bound is needed.
TEST_F(RefOps, Conv1dModelSize) {
  for (const Case& c : cases("conv1d")) {
    if (c.name.find("model") == std::string::npos) continue;
    check_conv<float>(c, 1e-5);
    check_conv<double>(c, 1e-5);
  }
}

// dx == nullptr: the weight gradients are still computed (first layer: no input gradient).
TEST_F(RefOps, Conv1dBackwardWithoutDx) {
  const Case& c = cases("conv1d").front();
  const mg::Conv1dDims d = conv_dims(c);
  const auto x = input<float>(c.name, "x"), w = input<float>(c.name, "w");
  const auto dy = input<float>(c.name, "dy"), dw0 = input<float>(c.name, "dw0"),
             db0 = input<float>(c.name, "db0");
  std::vector<float> dw = dw0, db = db0;
  mg::conv1d_backward_cpu(dy.data(), x.data(), w.data(), static_cast<float*>(nullptr), dw.data(),
                          db.data(), d);
  expect_close(added(dw, dw0), want(c.name, "dw", dw.size()), 1e-5, c.name + " dw - dw0 (dx null)",
               "float32");
  expect_close(added(db, db0), want(c.name, "db", db.size()), 1e-5, c.name + " db - db0 (dx null)",
               "float32");
}

// ---- maxpool ---------------------------------------------------------------------------------

template <class T>
void check_pool(const Case& c) {
  SCOPED_TRACE(c.name + " " + prec<T>());
  const int rows = static_cast<int>(c.num.at("rows")), Tin = static_cast<int>(c.num.at("Tin"));
  const int win = static_cast<int>(c.num.at("window"));
  const int Tout = Tin / win;
  const auto x = input<T>(c.name, "x"), dy = input<T>(c.name, "dy");
  std::vector<T> y(static_cast<size_t>(rows) * static_cast<size_t>(Tout), static_cast<T>(kNaN));
  mg::maxpool1d_forward_cpu(x.data(), y.data(), rows, Tin, win);
  // Selection and copies only: exact.
  expect_close(y, want(c.name, "y", y.size()), 0.0, c.name + " y");
  std::vector<T> dx(x.size(), static_cast<T>(kNaN));
  mg::maxpool1d_backward_cpu(dy.data(), x.data(), dx.data(), rows, Tin, win);
  expect_close(dx, want(c.name, "dx", dx.size()), 0.0, c.name + " dx");
  for (int r = 0; r < rows; ++r)
    for (int t = Tout * win; t < Tin; ++t)
      EXPECT_EQ(dx[static_cast<size_t>(r) * static_cast<size_t>(Tin) + static_cast<size_t>(t)],
                T(0))
          << c.name << ": dropped tail step " << t << " of row " << r << " must get zero gradient";
}

TEST_F(RefOps, MaxPool) {
  for (const Case& c : cases("maxpool")) {
    if (c.str.at("ties") == "yes") continue;
    check_pool<float>(c);
    check_pool<double>(c);
  }
}

// Windows with repeated maxima: the header says the first one wins (forward and backward).
// Torch's CPU max_pool1d is checked against that contract independently, so a disagreement
// says which side moved.
TEST_F(RefOps, MaxPoolTiesFirstWins) {
  for (const Case& c : cases("maxpool")) {
    if (c.str.at("ties") != "yes") continue;
    const size_t n = static_cast<size_t>(c.num.at("rows") * c.num.at("Tin"));
    const auto torch_dx = want(c.name, "dx", n), first = want(c.name, "dx_first_wins", n);
    EXPECT_EQ(mg::test::rel_error(torch_dx.data(), first.data(), n), 0.0)
        << "torch's CPU max_pool1d does not route tie gradients to the first maximum: "
           "kernels/pool_cpu.h's tie rule no longer matches torch";
    check_pool<float>(c);
    check_pool<double>(c);
  }
}

// ---- relu --------------------------------------------------------------------------------------

template <class T>
void check_relu(const Case& c) {
  SCOPED_TRACE(c.name + " " + prec<T>());
  const auto x = input<T>(c.name, "x"), dy = input<T>(c.name, "dy");
  const int64_t n = static_cast<int64_t>(x.size());
  std::vector<T> y(x.size(), static_cast<T>(kNaN));
  mg::relu_forward_cpu(x.data(), y.data(), n);
  const auto wy = want(c.name, "y", x.size()), wdx = want(c.name, "dx", x.size());
  expect_close(y, wy, 0.0, c.name + " y");  // exact: max with 0
  std::vector<T> dx(x.size(), static_cast<T>(kNaN));
  mg::relu_backward_cpu(dy.data(), y.data(), dx.data(), n);
  expect_close(dx, wdx, 0.0, c.name + " dx");
  // In place, as the model runs it: y aliases x, dx aliases dy.
  std::vector<T> xy = x, g = dy;
  mg::relu_forward_cpu(xy.data(), xy.data(), n);
  mg::relu_backward_cpu(g.data(), xy.data(), g.data(), n);
  expect_close(xy, wy, 0.0, c.name + " y in place");
  expect_close(g, wdx, 0.0, c.name + " dx in place");
}

TEST_F(RefOps, Relu) {
  for (const Case& c : cases("relu")) {
    check_relu<float>(c);
    check_relu<double>(c);
  }
}

// ---- mean over time ----------------------------------------------------------------------------

template <class T>
void check_mean(const Case& c) {
  SCOPED_TRACE(c.name + " " + prec<T>());
  const int rows = static_cast<int>(c.num.at("rows")), Tn = static_cast<int>(c.num.at("T"));
  const auto x = input<T>(c.name, "x"), dy = input<T>(c.name, "dy");
  std::vector<T> y(static_cast<size_t>(rows), static_cast<T>(kNaN));
  mg::mean_time_forward_cpu(x.data(), y.data(), rows, Tn);
  // Sums of <= 37 positive terms and one division: a few ulps.
  expect_close(y, want(c.name, "y", y.size()), tol_for<T>(1e-6), c.name + " y");
  std::vector<T> dx(x.size(), static_cast<T>(kNaN));
  mg::mean_time_backward_cpu(dy.data(), dx.data(), rows, Tn);
  expect_close(dx, want(c.name, "dx", dx.size()), tol_for<T>(1e-6), c.name + " dx");
}

TEST_F(RefOps, MeanTime) {
  for (const Case& c : cases("mean_time")) {
    check_mean<float>(c);
    check_mean<double>(c);
  }
}

// ---- linear ------------------------------------------------------------------------------------

template <class T>
void check_linear(const Case& c) {
  SCOPED_TRACE(c.name + " " + prec<T>());
  const int B = static_cast<int>(c.num.at("B")), C = static_cast<int>(c.num.at("C")),
            E = static_cast<int>(c.num.at("E"));
  const auto x = input<T>(c.name, "x"), w = input<T>(c.name, "w"), b = input<T>(c.name, "b");
  const auto dy = input<T>(c.name, "dy"), dw0 = input<T>(c.name, "dw0"),
             db0 = input<T>(c.name, "db0");
  // Dot products of C <= 128 terms (y), E <= 128 (dx), B <= 192 (dw, db): ~1e-6 at worst.
  const double tol = tol_for<T>(1e-5);
  std::vector<T> y(static_cast<size_t>(B) * static_cast<size_t>(E), static_cast<T>(kNaN));
  mg::linear_forward_cpu(x.data(), w.data(), b.data(), y.data(), B, C, E);
  expect_close(y, want(c.name, "y", y.size()), tol, c.name + " y");

  std::vector<T> dx(x.size(), static_cast<T>(kNaN)), dw = dw0, db = db0;
  mg::linear_backward_cpu(dy.data(), x.data(), w.data(), dx.data(), dw.data(), db.data(), B, C, E);
  expect_close(dx, want(c.name, "dx", dx.size()), tol, c.name + " dx");
  const auto wdw = want(c.name, "dw", dw.size()), wdb = want(c.name, "db", db.size());
  expect_close(added(dw, dw0), wdw, tol, c.name + " dw - dw0", prec<T>());
  expect_close(added(db, db0), wdb, tol, c.name + " db - db0", prec<T>());

  // dx == nullptr: only the parameter gradients, accumulated again on top of the first call.
  mg::linear_backward_cpu(dy.data(), x.data(), w.data(), static_cast<T*>(nullptr), dw.data(),
                          db.data(), B, C, E);
  expect_close(added(dw, dw0, 2), wdw, tol, c.name + " (dw - dw0) / 2, second call dx null",
               prec<T>());
  expect_close(added(db, db0, 2), wdb, tol, c.name + " (db - db0) / 2, second call dx null",
               prec<T>());
}

TEST_F(RefOps, Linear) {
  for (const Case& c : cases("linear")) {
    check_linear<float>(c);
    check_linear<double>(c);
  }
}

// ---- l2 normalisation --------------------------------------------------------------------------

template <class T>
void check_l2(const Case& c) {
  SCOPED_TRACE(c.name + " " + prec<T>());
  const int B = static_cast<int>(c.num.at("B")), E = static_cast<int>(c.num.at("E"));
  const double eps = c.num.at("eps");
  const auto x = input<T>(c.name, "x"), dy = input<T>(c.name, "dy");
  // One norm (<= 128 squares) per row, then elementwise: a few ulps; dx subtracts the radial
  // part of dy (cancellation up to |dy| / |dx| ~ a few), still far below 1e-5.
  const double tol = tol_for<T>(1e-5);
  std::vector<T> y(x.size(), static_cast<T>(kNaN));
  mg::l2norm_forward_cpu(x.data(), y.data(), B, E, eps);
  expect_close(y, want(c.name, "y", y.size()), tol, c.name + " y");
  std::vector<T> dx(x.size(), static_cast<T>(kNaN));
  mg::l2norm_backward_cpu(dy.data(), x.data(), y.data(), dx.data(), B, E, eps);
  expect_close(dx, want(c.name, "dx", dx.size()), tol, c.name + " dx");
}

TEST_F(RefOps, L2Normalize) {
  for (const Case& c : cases("l2norm")) {
    if (c.name == "l2_norm_equals_eps") continue;
    check_l2<float>(c);
    check_l2<double>(c);
  }
}

// A row whose norm is exactly eps: torch's clamp_min passes the gradient at the bound (the
// convention kernels/triplet_loss_cpu.h adopts for its own clamps).
TEST_F(RefOps, L2NormalizeNormEqualsEps) {
  for (const Case& c : cases("l2norm")) {
    if (c.name != "l2_norm_equals_eps") continue;
    check_l2<float>(c);
    check_l2<double>(c);
  }
}

// ---- triplet loss ------------------------------------------------------------------------------

// Returns our demb, for checks on particular rows.
template <class T>
std::vector<T> check_triplet(const Case& c) {
  SCOPED_TRACE(c.name + " " + prec<T>());
  const int N = static_cast<int>(c.num.at("N")), E = static_cast<int>(c.num.at("E"));
  const auto emb = input<T>(c.name, "emb");
  const auto trip = suite().in.at(c.name + "/triplets").to_i32();
  const int T_ = static_cast<int>(trip.size() / 3);
  mg::TripletLossParams p;
  p.margin = c.num.at("margin");
  p.swap = c.num.at("swap") != 0;
  p.eps = c.num.at("eps");
  std::vector<T> demb(emb.size(), static_cast<T>(kNaN));
  const mg::TripletLossResult r =
      mg::triplet_loss_cpu(emb.data(), trip.data(), T_, N, E, p, demb.data());
  // Distances from float32 dot products of unit rows (~1e-7 absolute) with all distances
  // >= 0.1 by construction (or exactly clamped): relative errors ~1e-6 in loss and gradient.
  const double tol = tol_for<T>(1e-5);
  const std::vector<double> rl = {r.loss};
  expect_close(rl, want(c.name, "loss", 1), tol, c.name + " loss", prec<T>());
  const auto active = want(c.name, "active", 1);
  EXPECT_EQ(r.active, static_cast<int64_t>(active[0])) << c.name << ": active triplets";
  expect_close(demb, want(c.name, "demb", demb.size()), tol, c.name + " demb");
  // Loss without the gradient buffer (demb may be null).
  const mg::TripletLossResult r2 =
      mg::triplet_loss_cpu(emb.data(), trip.data(), T_, N, E, p, static_cast<T*>(nullptr));
  EXPECT_NEAR(r2.loss, r.loss, 1e-12 * std::abs(r.loss)) << c.name << ": loss with demb == nullptr";
  EXPECT_EQ(r2.active, r.active) << c.name << ": active triplets with demb == nullptr";
  return demb;
}

// N = 3 T rows, each row in one triplet. Margin 0.2 leaves some triplets inactive, 1.0 none.
TEST_F(RefOps, TripletLossDisjoint) {
  for (const Case& c : cases("triplet")) {
    if (c.name.find("disjoint") == std::string::npos) continue;
    check_triplet<float>(c);
    check_triplet<double>(c);
  }
}

// Rows in several triplets (gradients add up), an unused row (zero gradient) and the eps clamp
// hit exactly (anchor == positive): see gen_triplet_shared.
TEST_F(RefOps, TripletLossSharedRowsAndClamp) {
  for (const Case& c : cases("triplet")) {
    if (c.name.find("shared") == std::string::npos) continue;
    const auto d32 = check_triplet<float>(c);
    const auto d64 = check_triplet<double>(c);
    const auto E = static_cast<size_t>(c.num.at("E"));
    for (size_t k = 0; k < E; ++k) {
      ASSERT_EQ(d32[8 * E + k], 0.0f) << c.name << ": unused row 8 must get a zero gradient";
      ASSERT_EQ(d64[8 * E + k], 0.0) << c.name << ": unused row 8 must get a zero gradient";
    }
  }
}

// The hinge exactly at zero (and the eps clamp with a large eps): see gen_triplet_hinge_zero.
TEST_F(RefOps, TripletLossHingeExactlyZero) {
  for (const Case& c : cases("triplet")) {
    if (c.name.find("hinge_zero") == std::string::npos) continue;
    check_triplet<float>(c);
    check_triplet<double>(c);
  }
}

// The test design itself: margin 0.2 must exercise both sides of the hinge.
TEST_F(RefOps, TripletLossCasesCoverBothHingeSides) {
  for (const Case& c : cases("triplet")) {
    if (c.num.at("margin") != 0.2) continue;
    const auto n_trip = static_cast<double>(suite().in.at(c.name + "/triplets").numel() / 3);
    const double active = want(c.name, "active", 1)[0];
    EXPECT_GT(active, 0) << c.name;
    EXPECT_LT(active, n_trip) << c.name
                              << ": every triplet active, the hinge's zero side is untested";
  }
}

// ---- Adam / AdamW ------------------------------------------------------------------------------

template <class T>
void check_adam(const Case& c) {
  SCOPED_TRACE(c.name + " " + prec<T>());
  const int n = static_cast<int>(c.num.at("n")), steps = static_cast<int>(c.num.at("steps"));
  const auto sn = static_cast<size_t>(n);
  mg::AdamParams a;
  a.lr = c.num.at("lr");
  a.beta1 = c.num.at("beta1");
  a.beta2 = c.num.at("beta2");
  a.eps = c.num.at("eps");
  a.weight_decay = c.num.at("weight_decay");
  a.decoupled = c.num.at("decoupled") != 0;
  const auto p0 = input<T>(c.name, "p0"), grads = input<T>(c.name, "grads");
  const auto wp = want(c.name, "p_steps", sn * static_cast<size_t>(steps));
  std::vector<T> p = p0, m(sn, T(0)), v(sn, T(0));
  for (int s = 0; s < steps; ++s) {
    mg::adam_step_cpu(p.data(), grads.data() + static_cast<size_t>(s) * sn, m.data(), v.data(), n,
                      a, s + 1);
    // The displacement p - p0 (|.| ~ 5 lr = 0.05) rather than p: a 1% error in the update
    // would hide in p's bound. float32 stores p (|p| <= 0.55) each step, rounding by up to
    // 3e-8 per step, i.e. ~3e-6 of the displacement after five steps; hence 2e-5.
    std::vector<double> disp(sn), wdisp(sn);
    for (size_t i = 0; i < sn; ++i) {
      disp[i] = static_cast<double>(p[i]) - static_cast<double>(p0[i]);
      wdisp[i] = wp[static_cast<size_t>(s) * sn + i] - static_cast<double>(p0[i]);
    }
    expect_close(disp, wdisp, tol_for<T>(2e-5),
                 c.name + " p - p0 after step " + std::to_string(s + 1), prec<T>());
  }
  // Moments: elementwise recurrences, a few ulps of the largest element.
  expect_close(m, want(c.name, "m", sn), tol_for<T>(1e-6), c.name + " exp_avg");
  expect_close(v, want(c.name, "v", sn), tol_for<T>(1e-6), c.name + " exp_avg_sq");
}

TEST_F(RefOps, Adam) {
  for (const Case& c : cases("adam")) {
    if (c.num.at("decoupled") != 0) continue;
    check_adam<float>(c);
    check_adam<double>(c);
  }
}

TEST_F(RefOps, AdamW) {
  for (const Case& c : cases("adam")) {
    if (c.num.at("decoupled") == 0) continue;
    check_adam<float>(c);
    check_adam<double>(c);
  }
}

// ---- contrastive loss ----------------------------------------------------------------------------

template <class T>
void check_contrastive(const Case& c) {
  SCOPED_TRACE(c.name + " " + prec<T>());
  const int N = static_cast<int>(c.num.at("N")), E = static_cast<int>(c.num.at("E"));
  const auto emb = input<T>(c.name, "emb");
  const auto h32 = suite().in.at(c.name + "/hops").to_i32();
  const std::vector<uint8_t> hops(h32.begin(), h32.end());
  const mg::ContrastiveLossParams p{c.num.at("tau"), static_cast<int>(c.num.at("pos_hops")),
                                    static_cast<int>(c.num.at("neg_hops"))};
  std::vector<T> demb(emb.size(), static_cast<T>(kNaN));
  const mg::ContrastiveLossResult r = mg::contrastive_loss_cpu(emb.data(), hops.data(), N, E, p, demb.data());
  // Our dot products of float32 unit rows are exact in double (float products, double sums), so
  // the float32 kernel differs from torch's float64 only by the final rounding of demb to float:
  // 1e-6 leaves a margin over float's 6e-8.
  const double tol = tol_for<T>(1e-6);
  expect_close(std::vector<double>{r.loss}, want(c.name, "loss", 1), tol, c.name + " loss", prec<T>());
  EXPECT_EQ(r.valid, static_cast<int64_t>(want(c.name, "valid", 1)[0])) << c.name << ": rows with a positive";
  expect_close(demb, want(c.name, "demb", demb.size()), tol, c.name + " demb");
}

TEST_F(RefOps, ContrastiveLoss) {
  for (const Case& c : cases("contrastive")) {
    check_contrastive<float>(c);
    check_contrastive<double>(c);
  }
}

// ---- batch norm ------------------------------------------------------------------------------------

template <class T>
void check_batchnorm(const Case& c) {
  SCOPED_TRACE(c.name + " " + prec<T>());
  const int B = static_cast<int>(c.num.at("B")), D = static_cast<int>(c.num.at("D"));
  const mg::BatchNormParams p{c.num.at("eps"), c.num.at("momentum")};
  const auto x = input<T>(c.name, "x"), gamma = input<T>(c.name, "gamma"), beta = input<T>(c.name, "beta");
  const auto dy = input<T>(c.name, "dy"), dgamma0 = input<T>(c.name, "dgamma0"), dbeta0 = input<T>(c.name, "dbeta0");
  auto rm = input<T>(c.name, "running_mean"), rv = input<T>(c.name, "running_var");
  const auto rm0 = rm, rv0 = rv;
  std::vector<T> y(x.size(), static_cast<T>(kNaN)), dx(x.size(), static_cast<T>(kNaN)), dgamma = dgamma0,
                                                    dbeta = dbeta0;
  // Statistics in double from the float inputs (exact products), one rounding to T at the end:
  // 1e-6 is far above float's error.
  const double tol = tol_for<T>(1e-6);
  mg::batchnorm_forward_train_cpu(x.data(), gamma.data(), beta.data(), y.data(), rm.data(), rv.data(), B, D, p);
  expect_close(y, want(c.name, "y", y.size()), tol, c.name + " y (training)");
  expect_close(rm, want(c.name, "running_mean", rm.size()), tol, c.name + " running_mean");
  expect_close(rv, want(c.name, "running_var", rv.size()), tol, c.name + " running_var");
  mg::batchnorm_backward_cpu(dy.data(), x.data(), gamma.data(), dx.data(), dgamma.data(), dbeta.data(), B, D, p);
  expect_close(dx, want(c.name, "dx", dx.size()), tol, c.name + " dx");
  expect_close(added(dgamma, dgamma0), want(c.name, "dgamma", dgamma.size()), tol, c.name + " dgamma - dgamma0",
               prec<T>());
  expect_close(added(dbeta, dbeta0), want(c.name, "dbeta", dbeta.size()), tol, c.name + " dbeta - dbeta0",
               prec<T>());
  std::vector<T> ye(x.size(), static_cast<T>(kNaN));
  mg::batchnorm_forward_eval_cpu(x.data(), gamma.data(), beta.data(), rm0.data(), rv0.data(), ye.data(), B, D, p);
  expect_close(ye, want(c.name, "y_eval", ye.size()), tol, c.name + " y (eval)");
}

TEST_F(RefOps, BatchNorm) {
  for (const Case& c : cases("batchnorm")) {
    check_batchnorm<float>(c);
    check_batchnorm<double>(c);
  }
}

template <class T>
void check_band_norm(const Case& c) {
  SCOPED_TRACE(c.name + " " + prec<T>());
  const int B = static_cast<int>(c.num.at("B")), C = static_cast<int>(c.num.at("C")), Tn = static_cast<int>(c.num.at("T"));
  const auto x = input<T>(c.name, "x"), mean = input<T>(c.name, "mean"), sd = input<T>(c.name, "std");
  std::vector<T> y(x.size(), static_cast<T>(kNaN));
  mg::band_norm_forward_cpu(x.data(), mean.data(), sd.data(), y.data(), B, C, Tn);
  // One subtraction and one division in T: a few ulps of T.
  expect_close(y, want(c.name, "y", y.size()), tol_for<T>(1e-6), c.name + " y");
}

TEST_F(RefOps, BandNorm) {
  for (const Case& c : cases("band_norm")) {
    check_band_norm<float>(c);
    check_band_norm<double>(c);
  }
}

// ---- clip_grad_norm_ ---------------------------------------------------------------------------

template <class T>
void check_clip(const Case& c) {
  SCOPED_TRACE(c.name + " " + prec<T>());
  const double max_norm = c.num.at("max_norm");
  auto g = input<T>(c.name, "g");
  const auto g0 = g;
  const double norm = mg::clip_grad_norm_cpu(g.data(), static_cast<int64_t>(g.size()), max_norm);
  const double want_norm = want(c.name, "norm", 1)[0];
  // The squares of float32 values are exact in double and summed in double: both sides hold
  // the same norm to double rounding, for either precision of the kernel.
  EXPECT_LE(std::abs(norm - want_norm), 1e-12 * want_norm)
      << c.name << ": norm " << norm << " vs torch " << want_norm;
  EXPECT_LE(std::abs(mg::global_norm_cpu(g0.data(), static_cast<int64_t>(g0.size())) - want_norm),
            1e-12 * want_norm)
      << c.name << ": global_norm_cpu";
  if (want_norm <= max_norm) {
    for (size_t i = 0; i < g.size(); ++i)
      ASSERT_EQ(g[i], g0[i]) << c.name << ": gradient changed at " << i << " though the norm "
                             << want_norm << " is below max_norm " << max_norm;
  }
  // One multiplication by a double factor, rounded to T once.
  expect_close(g, want(c.name, "g", g.size()), tol_for<T>(1e-6), c.name + " clipped g");
}

TEST_F(RefOps, ClipGradNorm) {
  bool above = false, below = false;
  for (const Case& c : cases("clip_grad_norm")) {
    const double nrm = want(c.name, "norm", 1)[0];
    (nrm > c.num.at("max_norm") ? above : below) = true;
    check_clip<float>(c);
    check_clip<double>(c);
  }
  EXPECT_TRUE(above && below) << "the clip cases must have norms on both sides of max_norm";
}

}  // namespace
