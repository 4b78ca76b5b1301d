// Central-difference gradient checks for every op with a backward pass, in double precision
// (the CPU kernels are templates; float is what the engine runs, double is what we check).
//
// One table of cases (ggml's test-backend-ops style): each case owns random inputs, an
// objective and its analytic gradients. For ops with a tensor output the objective is
// L = sum(out * R) with a fixed random R, so dL/dout = R.
//
// Tolerance: norm-wise relative error <= 1e-6 per input. With h = 1e-6 in double the
// truncation error is O(h^2) ~ 1e-12 and round-off ~ 1e-16 / 1e-6 = 1e-10 relative; 1e-6
// leaves four orders of margin yet fails on any real bug (a wrong sign or index gives O(1)).
// Inputs are kept >= 1e-3 away from the kinks of ReLU, max-pool and the hinge, so h cannot
// cross one.
//
// The backward calls also run against poisoned buffers: activation gradients are pre-filled
// with NaN (must be overwritten), parameter gradients with random values (must accumulate).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <numeric>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "kernels/activation_cpu.h"
#include "kernels/conv1d_cpu.h"
#include "kernels/linear_cpu.h"
#include "kernels/pool_cpu.h"
#include "kernels/reduce_cpu.h"
#include "kernels/triplet_loss_cpu.h"

namespace mg {
namespace {

using Vec = std::vector<double>;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

Vec random_vec(size_t n, std::mt19937& rng, double lo = -1, double hi = 1) {
  std::uniform_real_distribution<double> u(lo, hi);
  Vec v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

// Values in [-1, 1] with |x| >= 1e-3 (ReLU's kink at 0 is out of reach of h).
Vec away_from_zero(size_t n, std::mt19937& rng) {
  Vec v = random_vec(n, rng);
  for (auto& x : v)
    if (std::abs(x) < 1e-3) x = x < 0 ? x - 1e-3 : x + 1e-3;
  return v;
}

// Distinct values spaced >= 1e-3 apart in random order (max-pool's argmax cannot flip).
Vec distinct_values(size_t n, std::mt19937& rng) {
  Vec v(n);
  for (size_t i = 0; i < n; ++i) v[i] = -1.0 + 2.0 * static_cast<double>(i) / static_cast<double>(n) * 1.5;
  std::shuffle(v.begin(), v.end(), rng);
  return v;
}

double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

void normalize_rows(Vec& v, int E) {
  for (size_t r = 0; r < v.size() / E; ++r) {
    double n = 0;
    for (int e = 0; e < E; ++e) n += v[r * E + e] * v[r * E + e];
    n = std::sqrt(n);
    for (int e = 0; e < E; ++e) v[r * E + e] /= n;
  }
}

struct GradCase {
  virtual ~GradCase() = default;
  struct Input {
    std::string name;
    Vec* value;
    Vec grad;  // analytic, filled by gradients()
  };
  std::vector<Input> inputs;
  virtual double objective() = 0;
  virtual void gradients() = 0;
};

// Parameter gradients must accumulate: run backward on a random pre-fill, return the change.
struct Accum {
  Vec buf, prefill;
  Accum(size_t n, std::mt19937& rng) : buf(random_vec(n, rng)), prefill(buf) {}
  Vec delta() const {
    Vec d(buf.size());
    for (size_t i = 0; i < d.size(); ++i) d[i] = buf[i] - prefill[i];
    return d;
  }
};

struct Conv1dCase : GradCase {
  Conv1dDims d;
  Vec x, w, b, r;
  std::mt19937 rng{1};
  explicit Conv1dCase(Conv1dDims dims) : d(dims) {
    x = random_vec(static_cast<size_t>(d.B) * d.Cin * d.Tin, rng);
    w = random_vec(static_cast<size_t>(d.Cout) * d.Cin * d.K, rng);
    b = random_vec(static_cast<size_t>(d.Cout), rng);
    r = random_vec(static_cast<size_t>(d.B) * d.Cout * d.Tout(), rng);
    inputs = {{"x", &x, {}}, {"w", &w, {}}, {"b", &b, {}}};
  }
  double objective() override {
    Vec y(r.size(), kNaN);
    conv1d_forward_cpu(x.data(), w.data(), b.data(), y.data(), d);
    return dot(y, r);
  }
  void gradients() override {
    Vec dx(x.size(), kNaN);
    Accum dw(w.size(), rng), db(b.size(), rng);
    conv1d_backward_cpu(r.data(), x.data(), w.data(), dx.data(), dw.buf.data(), db.buf.data(), d);
    inputs[0].grad = dx;
    inputs[1].grad = dw.delta();
    inputs[2].grad = db.delta();
  }
};

struct ReluCase : GradCase {
  Vec x, r;
  explicit ReluCase(size_t n) {
    std::mt19937 rng(2);
    x = away_from_zero(n, rng);
    r = random_vec(n, rng);
    inputs = {{"x", &x, {}}};
  }
  double objective() override {
    Vec y(x.size(), kNaN);
    relu_forward_cpu(x.data(), y.data(), static_cast<int64_t>(x.size()));
    return dot(y, r);
  }
  void gradients() override {
    Vec y(x.size()), dx(x.size(), kNaN);
    relu_forward_cpu(x.data(), y.data(), static_cast<int64_t>(x.size()));
    relu_backward_cpu(r.data(), y.data(), dx.data(), static_cast<int64_t>(x.size()));
    inputs[0].grad = dx;
  }
};

struct MaxPoolCase : GradCase {
  int64_t rows;
  int Tin, window;
  Vec x, r;
  MaxPoolCase(int64_t rows_, int Tin_, int window_) : rows(rows_), Tin(Tin_), window(window_) {
    std::mt19937 rng(3);
    x = distinct_values(static_cast<size_t>(rows) * Tin, rng);
    r = random_vec(static_cast<size_t>(rows) * (Tin / window), rng);
    inputs = {{"x", &x, {}}};
  }
  double objective() override {
    Vec y(r.size(), kNaN);
    maxpool1d_forward_cpu(x.data(), y.data(), rows, Tin, window);
    return dot(y, r);
  }
  void gradients() override {
    Vec dx(x.size(), kNaN);
    maxpool1d_backward_cpu(r.data(), x.data(), dx.data(), rows, Tin, window);
    inputs[0].grad = dx;
  }
};

struct MeanTimeCase : GradCase {
  int64_t rows;
  int Tn;
  Vec x, r;
  MeanTimeCase(int64_t rows_, int Tn_) : rows(rows_), Tn(Tn_) {
    std::mt19937 rng(4);
    x = random_vec(static_cast<size_t>(rows) * Tn, rng);
    r = random_vec(static_cast<size_t>(rows), rng);
    inputs = {{"x", &x, {}}};
  }
  double objective() override {
    Vec y(r.size(), kNaN);
    mean_time_forward_cpu(x.data(), y.data(), rows, Tn);
    return dot(y, r);
  }
  void gradients() override {
    Vec dx(x.size(), kNaN);
    mean_time_backward_cpu(r.data(), dx.data(), rows, Tn);
    inputs[0].grad = dx;
  }
};

struct LinearCase : GradCase {
  int B, C, E;
  Vec x, w, b, r;
  std::mt19937 rng{5};
  LinearCase(int B_, int C_, int E_) : B(B_), C(C_), E(E_) {
    x = random_vec(static_cast<size_t>(B) * C, rng);
    w = random_vec(static_cast<size_t>(E) * C, rng);
    b = random_vec(static_cast<size_t>(E), rng);
    r = random_vec(static_cast<size_t>(B) * E, rng);
    inputs = {{"x", &x, {}}, {"w", &w, {}}, {"b", &b, {}}};
  }
  double objective() override {
    Vec y(r.size(), kNaN);
    linear_forward_cpu(x.data(), w.data(), b.data(), y.data(), B, C, E);
    return dot(y, r);
  }
  void gradients() override {
    Vec dx(x.size(), kNaN);
    Accum dw(w.size(), rng), db(b.size(), rng);
    linear_backward_cpu(r.data(), x.data(), w.data(), dx.data(), dw.buf.data(), db.buf.data(), B, C, E);
    inputs[0].grad = dx;
    inputs[1].grad = dw.delta();
    inputs[2].grad = db.delta();
  }
};

struct L2NormCase : GradCase {
  int B, E;
  double eps;
  Vec x, r;
  L2NormCase(int B_, int E_, double scale, double eps_) : B(B_), E(E_), eps(eps_) {
    std::mt19937 rng(6);
    x = random_vec(static_cast<size_t>(B) * E, rng, -scale, scale);
    r = random_vec(x.size(), rng);
    inputs = {{"x", &x, {}}};
  }
  double objective() override {
    Vec y(x.size(), kNaN);
    l2norm_forward_cpu(x.data(), y.data(), B, E, eps);
    return dot(y, r);
  }
  void gradients() override {
    Vec y(x.size()), dx(x.size(), kNaN);
    l2norm_forward_cpu(x.data(), y.data(), B, E, eps);
    l2norm_backward_cpu(r.data(), x.data(), y.data(), dx.data(), B, E, eps);
    inputs[0].grad = dx;
  }
};

// The loss's objective is the loss itself. Rows are unit vectors (the model's output); the
// check moves them off the sphere, which the loss's formula allows (it is defined for any x, y).
struct TripletCase : GradCase {
  int N, E, T;
  TripletLossParams p;
  Vec emb;
  std::vector<int32_t> trip;
  TripletCase(int n_triplets, int E_, double margin, bool swap, bool shared_rows) : E(E_), T(n_triplets) {
    std::mt19937 rng(7);
    p.margin = margin;
    p.swap = swap;
    N = shared_rows ? n_triplets + 2 : 3 * n_triplets;
    emb = random_vec(static_cast<size_t>(N) * E, rng);
    normalize_rows(emb, E);
    std::uniform_int_distribution<int32_t> pick(0, N - 1);
    for (int i = 0; i < T; ++i) {
      if (shared_rows) {  // rows reused across triplets: their gradients must add up
        int32_t a = pick(rng), q = pick(rng), n = pick(rng);
        while (q == a) q = pick(rng);
        while (n == a || n == q) n = pick(rng);
        trip.insert(trip.end(), {a, q, n});
      } else {
        trip.insert(trip.end(), {i, T + i, 2 * T + i});
      }
    }
    inputs = {{"emb", &emb, {}}};
  }
  double objective() override {
    return triplet_loss_cpu<double>(emb.data(), trip.data(), T, N, E, p, nullptr).loss;
  }
  void gradients() override {
    Vec g(emb.size(), kNaN);
    const auto r = triplet_loss_cpu(emb.data(), trip.data(), T, N, E, p, g.data());
    EXPECT_GT(r.active, 0) << "no active triplet: the check would test nothing";
    inputs[0].grad = g;
  }
};

struct NamedCase {
  std::string name;
  std::function<std::unique_ptr<GradCase>()> make;
};

// gtest prints parameters in test names (and so in ctest's): the case name, not its bytes.
void PrintTo(const NamedCase& c, std::ostream* os) { *os << c.name; }

std::vector<NamedCase> all_cases() {
  auto conv = [](Conv1dDims d) { return [d] { return std::unique_ptr<GradCase>(new Conv1dCase(d)); }; };
  return {
      {"conv1d_valid_k4", conv({3, 5, 7, 29, 4, 0, 0})},
      {"conv1d_valid_k1", conv({2, 6, 3, 17, 1, 0, 0})},
      {"conv1d_same_k4", conv({2, 5, 6, 23, 4, 1, 2})},
      {"conv1d_same_k3", conv({3, 4, 5, 19, 3, 1, 1})},
      {"conv1d_many_clips", conv({19, 2, 3, 9, 4, 0, 0})},  // more clips than gradient chunks
      {"relu", [] { return std::unique_ptr<GradCase>(new ReluCase(1001)); }},
      {"maxpool_w4_tail", [] { return std::unique_ptr<GradCase>(new MaxPoolCase(7, 43, 4)); }},
      {"maxpool_w3", [] { return std::unique_ptr<GradCase>(new MaxPoolCase(5, 30, 3)); }},
      {"mean_time", [] { return std::unique_ptr<GradCase>(new MeanTimeCase(13, 23)); }},
      {"linear", [] { return std::unique_ptr<GradCase>(new LinearCase(6, 37, 11)); }},
      {"l2norm", [] { return std::unique_ptr<GradCase>(new L2NormCase(5, 17, 1.0, 1e-12)); }},
      {"l2norm_below_eps", [] { return std::unique_ptr<GradCase>(new L2NormCase(3, 7, 1e-3, 1.0)); }},
      {"triplet_m02", [] { return std::unique_ptr<GradCase>(new TripletCase(9, 16, 0.2, false, false)); }},
      {"triplet_m1_swap", [] { return std::unique_ptr<GradCase>(new TripletCase(9, 16, 1.0, true, false)); }},
      {"triplet_shared_rows", [] { return std::unique_ptr<GradCase>(new TripletCase(12, 8, 1.0, false, true)); }},
      {"triplet_shared_rows_swap", [] { return std::unique_ptr<GradCase>(new TripletCase(12, 8, 1.0, true, true)); }},
  };
}

class GradCheck : public ::testing::TestWithParam<NamedCase> {};

TEST_P(GradCheck, CentralDifferencesMatchBackward) {
  auto c = GetParam().make();
  c->gradients();
  const double h = 1e-6;
  for (auto& in : c->inputs) {
    ASSERT_EQ(in.grad.size(), in.value->size()) << in.name;
    for (double g : in.grad) ASSERT_TRUE(std::isfinite(g)) << in.name << ": gradient not fully written";
    Vec numeric(in.value->size());
    for (size_t i = 0; i < in.value->size(); ++i) {
      const double v = (*in.value)[i];
      (*in.value)[i] = v + h;
      const double lp = c->objective();
      (*in.value)[i] = v - h;
      const double lm = c->objective();
      (*in.value)[i] = v;
      numeric[i] = (lp - lm) / (2 * h);
    }
    double num = 0, den = 0;
    for (size_t i = 0; i < numeric.size(); ++i) {
      num = std::max(num, std::abs(numeric[i] - in.grad[i]));
      den = std::max(den, std::abs(numeric[i]));
    }
    ASSERT_GT(den, 0) << in.name << ": zero gradient, the check would test nothing";
    EXPECT_LE(num / den, 1e-6) << GetParam().name << " d/d" << in.name;
  }
}

INSTANTIATE_TEST_SUITE_P(Ops, GradCheck, ::testing::ValuesIn(all_cases()),
                         [](const auto& tp) { return tp.param.name; });

// Ties in max-pool: the first maximum of a window takes the gradient (PyTorch's CPU rule).
TEST(MaxPool, FirstMaximumWinsOnTies) {
  const double x[8] = {1, 3, 3, 0, 2, 2, 2, 2};
  double y[2], dx[8];
  maxpool1d_forward_cpu(x, y, 1, 8, 4);
  EXPECT_EQ(y[0], 3);
  EXPECT_EQ(y[1], 2);
  const double dy[2] = {5, 7};
  maxpool1d_backward_cpu(dy, x, dx, 1, 8, 4);
  const double want[8] = {0, 5, 0, 0, 7, 0, 0, 0};
  for (int i = 0; i < 8; ++i) EXPECT_EQ(dx[i], want[i]) << i;
}

TEST(MaxPool, NaNPropagates) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double x[8] = {1, nan, 3, 0, nan, 2, 5, 2};
  double y[2], dx[8];
  maxpool1d_forward_cpu(x, y, 1, 8, 4);
  EXPECT_TRUE(std::isnan(y[0]));
  EXPECT_TRUE(std::isnan(y[1]));
  const double dy[2] = {5, 7};
  maxpool1d_backward_cpu(dy, x, dx, 1, 8, 4);
  const double want[8] = {0, 5, 0, 0, 7, 0, 0, 0};  // the gradient goes to the NaN
  for (int i = 0; i < 8; ++i) EXPECT_EQ(dx[i], want[i]) << i;
}

// The eps clamp: a positive identical to its anchor has 2(1 - a.p) = 0 < eps, so d(a, p) is
// sqrt(eps) and passes no gradient (as torch.clamp's backward below its bound).
TEST(TripletLoss, ClampedDistancePassesNoGradient) {
  const int E = 4;
  double emb[3 * E] = {1, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0};
  const int32_t trip[3] = {0, 1, 2};
  double g[3 * E];
  TripletLossParams p;
  p.margin = 2.0;  // keep the hinge active
  const auto r = triplet_loss_cpu(emb, trip, 1, 3, E, p, g);
  EXPECT_NEAR(r.loss, std::sqrt(p.eps) - std::sqrt(2.0) + 2.0, 1e-12);
  // Only the (a, n) distance carries gradient: dd/da = -n / d, d(loss)/da = +n / d.
  const double d = std::sqrt(2.0);
  const double want_a[E] = {0, 1 / d, 0, 0};
  for (int e = 0; e < E; ++e) EXPECT_NEAR(g[e], want_a[e], 1e-12) << e;
  for (int e = 0; e < E; ++e) EXPECT_EQ(g[E + e], 0.0) << "positive row, element " << e;
}

TEST(TripletLoss, RejectsOutOfRangeRows) {
  const double emb[4] = {1, 0, 0, 1};
  const int32_t trip[3] = {0, 1, 2};
  EXPECT_THROW(triplet_loss_cpu(emb, trip, 1, 2, 2, TripletLossParams{}, static_cast<double*>(nullptr)),
               std::out_of_range);
}

}  // namespace
}  // namespace mg
