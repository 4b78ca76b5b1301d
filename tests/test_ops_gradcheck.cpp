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
#include "kernels/batchnorm_cpu.h"
#include "kernels/contrastive_loss_cpu.h"
#include "kernels/conv1d_cpu.h"
#include "kernels/dropout_cpu.h"
#include "kernels/linear_cpu.h"
#include "kernels/op_list.h"
#include "kernels/philox.h"
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

// Reductions over time through a strided output (RowOut): rows of C channels per clip, each
// clip's results C apart in a row of ld >= C values. The objective reads only the slots the
// layout names; dy holds R there and NaN everywhere else, so a backward that reads another
// slot leaves a NaN in dx. accumulate: dx starts from random values and what the backward
// added is compared (the head's max and L2 add to the mean's gradient).
enum class TimeOp { Mean, Max, L2 };

struct TimeReduceCase : GradCase {
  TimeOp op;
  int64_t rows;
  int Tn;
  RowOut out;
  bool accumulate;
  Vec x, r;
  std::mt19937 rng{8};
  TimeReduceCase(TimeOp op_, int64_t rows_, int Tn_, RowOut out_, bool accumulate_)
      : op(op_), rows(rows_), Tn(Tn_), out(out_), accumulate(accumulate_) {
    const size_t n = static_cast<size_t>(rows) * Tn;
    x = op == TimeOp::Max ? distinct_values(n, rng) : random_vec(n, rng);
    r = random_vec(static_cast<size_t>(rows), rng);
    inputs = {{"x", &x, {}}};
  }
  size_t slot(int64_t row) const { return static_cast<size_t>((row / out.C) * out.ld + row % out.C); }
  size_t y_size() const { return static_cast<size_t>((rows / out.C) * out.ld); }
  double objective() override {
    Vec y(y_size(), kNaN);
    if (op == TimeOp::Mean) mean_time_forward_cpu(x.data(), y.data(), rows, Tn, out);
    if (op == TimeOp::Max) max_time_forward_cpu(x.data(), y.data(), rows, Tn, out);
    if (op == TimeOp::L2) l2_time_forward_cpu(x.data(), y.data(), rows, Tn, out);
    double s = 0;
    for (int64_t row = 0; row < rows; ++row) s += y[slot(row)] * r[static_cast<size_t>(row)];
    return s;
  }
  void gradients() override {
    Vec dy(y_size(), kNaN);
    for (int64_t row = 0; row < rows; ++row) dy[slot(row)] = r[static_cast<size_t>(row)];
    Accum dx(x.size(), rng);
    if (!accumulate) std::fill(dx.buf.begin(), dx.buf.end(), kNaN);
    if (op == TimeOp::Mean) mean_time_backward_cpu(dy.data(), dx.buf.data(), rows, Tn, out);
    if (op == TimeOp::Max) max_time_backward_cpu(dy.data(), x.data(), dx.buf.data(), rows, Tn, out, accumulate);
    if (op == TimeOp::L2) l2_time_backward_cpu(dy.data(), x.data(), dx.buf.data(), rows, Tn, out, accumulate);
    inputs[0].grad = accumulate ? dx.delta() : dx.buf;
  }
};

// The model's head in double: x [B, C, T] -> [mean | max | l2] per clip row [B, 3C] ->
// inverted dropout with a fixed Philox mask, through the same calls and the same write-then-add
// order as Model::backward.
struct PoolingHeadCase : GradCase {
  int B, C, Tn;
  double p;
  Vec x, r;
  PoolingHeadCase(int B_, int C_, int Tn_, double p_) : B(B_), C(C_), Tn(Tn_), p(p_) {
    std::mt19937 rng(9);
    x = distinct_values(static_cast<size_t>(B) * C * Tn, rng);
    r = random_vec(static_cast<size_t>(B) * 3 * C, rng);
    inputs = {{"x", &x, {}}};
  }
  int64_t rows() const { return static_cast<int64_t>(B) * C; }
  RowOut out() const { return RowOut{C, 3 * int64_t{C}}; }
  void forward(Vec& pooled, Vec& dropped, Vec& mask) {
    pooled.assign(r.size(), kNaN);
    mean_time_forward_cpu(x.data(), pooled.data(), rows(), Tn, out());
    max_time_forward_cpu(x.data(), pooled.data() + C, rows(), Tn, out());
    l2_time_forward_cpu(x.data(), pooled.data() + 2 * C, rows(), Tn, out());
    dropped.assign(r.size(), kNaN);
    mask.assign(r.size(), kNaN);
    dropout_forward_cpu(pooled.data(), dropped.data(), mask.data(), static_cast<int64_t>(r.size()), p, 77,
                        dropout_stream(3));
  }
  double objective() override {
    Vec pooled, dropped, mask;
    forward(pooled, dropped, mask);
    return dot(dropped, r);
  }
  void gradients() override {
    Vec pooled, dropped, mask;
    forward(pooled, dropped, mask);
    Vec dpooled(r.size(), kNaN), dx(x.size(), kNaN);
    dropout_backward_cpu(r.data(), mask.data(), dpooled.data(), static_cast<int64_t>(r.size()));
    mean_time_backward_cpu(dpooled.data(), dx.data(), rows(), Tn, out());
    max_time_backward_cpu(dpooled.data() + C, x.data(), dx.data(), rows(), Tn, out(), true);
    l2_time_backward_cpu(dpooled.data() + 2 * C, x.data(), dx.data(), rows(), Tn, out(), true);
    inputs[0].grad = dx;
  }
};

struct DropoutCase : GradCase {
  double p;
  Vec x, r;
  DropoutCase(size_t n, double p_) : p(p_) {
    std::mt19937 rng(10);
    x = random_vec(n, rng);
    r = random_vec(n, rng);
    inputs = {{"x", &x, {}}};
  }
  double objective() override {
    Vec y(x.size(), kNaN), mask(x.size(), kNaN);
    dropout_forward_cpu(x.data(), y.data(), mask.data(), static_cast<int64_t>(x.size()), p, 5, dropout_stream(1));
    return dot(y, r);
  }
  void gradients() override {
    Vec y(x.size(), kNaN), mask(x.size(), kNaN), dx(x.size(), kNaN);
    dropout_forward_cpu(x.data(), y.data(), mask.data(), static_cast<int64_t>(x.size()), p, 5, dropout_stream(1));
    dropout_backward_cpu(r.data(), mask.data(), dx.data(), static_cast<int64_t>(x.size()));
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

// In-batch mining's unmined rows (-1, -1, -1) among shared rows: skipped, and the mean runs
// over the valid rows, so the gradient's 1 / valid scale must match the loss's.
struct UnminedTripletCase : TripletCase {
  explicit UnminedTripletCase(bool swap) : TripletCase(12, 8, 1.0, swap, true) {
    for (size_t i = 0; i < trip.size(); i += 9) trip[i] = trip[i + 1] = trip[i + 2] = -1;  // rows 0, 3, 6, 9
  }
};

// Batch norm in training mode: y depends on every row of its column through the batch
// statistics, so dx has the two correction terms the check must confirm. Features of different
// means and scales, as pooled ReLU outputs are.
struct BatchNormCase : GradCase {
  int B, D;
  BatchNormParams p;
  Vec x, gamma, beta, r;
  std::mt19937 rng{13};
  BatchNormCase(int B_, int D_) : B(B_), D(D_) {
    x = random_vec(static_cast<size_t>(B) * D, rng, 0, 1);
    for (int j = 0; j < D; ++j)
      for (int b = 0; b < B; ++b) x[static_cast<size_t>(b * D + j)] = 0.5 * j + (0.1 + 0.3 * j) * x[static_cast<size_t>(b * D + j)];
    gamma = random_vec(static_cast<size_t>(D), rng, 0.5, 1.5);
    beta = random_vec(static_cast<size_t>(D), rng);
    r = random_vec(x.size(), rng);
    inputs = {{"x", &x, {}}, {"gamma", &gamma, {}}, {"beta", &beta, {}}};
  }
  double objective() override {
    Vec y(x.size(), kNaN), rm(static_cast<size_t>(D), 0.0), rv(static_cast<size_t>(D), 1.0);
    batchnorm_forward_train_cpu(x.data(), gamma.data(), beta.data(), y.data(), rm.data(), rv.data(), B, D, p);
    return dot(y, r);
  }
  void gradients() override {
    Vec dx(x.size(), kNaN);
    Accum dg(gamma.size(), rng), db(beta.size(), rng);
    batchnorm_backward_cpu(r.data(), x.data(), gamma.data(), dx.data(), dg.buf.data(), db.buf.data(), B, D, p);
    inputs[0].grad = dx;
    inputs[1].grad = dg.delta();
    inputs[2].grad = db.delta();
  }
};

// The contrastive loss over a batch with graph distances: same-item rows (hops 0), neighbours,
// rows in the excluded band between pos_hops and neg_hops, far rows, one row without any
// positive (skipped in the mean but still a negative of the others) and, when asymmetric,
// hops[i][j] != hops[j][i] (both directions' terms must reach each row's gradient).
struct ContrastiveCase : GradCase {
  int N, E;
  ContrastiveLossParams p;
  Vec emb;
  std::vector<uint8_t> hops;
  ContrastiveCase(int N_, int E_, double tau, int pos_hops, int neg_hops, bool asymmetric) : N(N_), E(E_) {
    std::mt19937 rng(11);
    p.temperature = tau;
    p.pos_hops = pos_hops;
    p.neg_hops = neg_hops;
    emb = random_vec(static_cast<size_t>(N) * E, rng);
    normalize_rows(emb, E);
    hops.assign(static_cast<size_t>(N) * N, 0);
    std::uniform_int_distribution<int> h(0, neg_hops + 2);
    for (int i = 0; i < N; ++i)
      for (int j = 0; j < N; ++j) {
        if (i == j) continue;
        if (!asymmetric && j < i) {
          hops[static_cast<size_t>(i) * N + j] = hops[static_cast<size_t>(j) * N + i];
          continue;
        }
        hops[static_cast<size_t>(i) * N + j] = static_cast<uint8_t>(h(rng));
      }
    // Row N - 1 has no positive: far from every other row in its own view.
    for (int j = 0; j < N - 1; ++j) hops[static_cast<size_t>(N - 1) * N + j] = static_cast<uint8_t>(neg_hops + 5);
    inputs = {{"emb", &emb, {}}};
  }
  double objective() override { return contrastive_loss_cpu<double>(emb.data(), hops.data(), N, E, p, nullptr).loss; }
  void gradients() override {
    Vec g(emb.size(), kNaN);
    const auto r = contrastive_loss_cpu(emb.data(), hops.data(), N, E, p, g.data());
    EXPECT_GT(r.valid, 0) << "no row with a positive: the check would test nothing";
    EXPECT_LT(r.valid, N) << "the row without a positive must be skipped";
    inputs[0].grad = g;
  }
};

struct NamedCase {
  std::string name;
  std::function<std::unique_ptr<GradCase>()> make;
};

// gtest prints parameters in test names (and so in ctest's): the case name, not its bytes.
void PrintTo(const NamedCase& c, std::ostream* os) { *os << c.name; }

template <class C, class... A>
NamedCase named(std::string name, A... args) {
  return {std::move(name), [=] { return std::unique_ptr<GradCase>(new C(args...)); }};
}

std::vector<NamedCase> conv1d_grad_cases() {
  return {
      named<Conv1dCase>("conv1d_valid_k4", Conv1dDims{3, 5, 7, 29, 4, 0, 0}),
      named<Conv1dCase>("conv1d_valid_k1", Conv1dDims{2, 6, 3, 17, 1, 0, 0}),
      named<Conv1dCase>("conv1d_same_k4", Conv1dDims{2, 5, 6, 23, 4, 1, 2}),
      named<Conv1dCase>("conv1d_same_k3", Conv1dDims{3, 4, 5, 19, 3, 1, 1}),
      named<Conv1dCase>("conv1d_many_clips", Conv1dDims{19, 2, 3, 9, 4, 0, 0}),  // more clips than gradient chunks
  };
}

std::vector<NamedCase> relu_grad_cases() { return {named<ReluCase>("relu", 1001)}; }

std::vector<NamedCase> maxpool_grad_cases() {
  return {named<MaxPoolCase>("maxpool_w4_tail", 7, 43, 4), named<MaxPoolCase>("maxpool_w3", 5, 30, 3)};
}

std::vector<NamedCase> mean_time_grad_cases() {
  return {named<MeanTimeCase>("mean_time", 13, 23),
          named<TimeReduceCase>("mean_time_strided", TimeOp::Mean, int64_t{15}, 7, RowOut{5, 17}, false)};
}

// Max and L2 over time (the pooled head's other reductions), and the whole head.
std::vector<NamedCase> time_pool_grad_cases() {
  return {
      named<TimeReduceCase>("time_pool_max", TimeOp::Max, int64_t{13}, 23, RowOut{}, false),
      named<TimeReduceCase>("time_pool_max_strided", TimeOp::Max, int64_t{15}, 7, RowOut{5, 17}, false),
      named<TimeReduceCase>("time_pool_max_strided_accumulate", TimeOp::Max, int64_t{12}, 9, RowOut{3, 9}, true),
      named<TimeReduceCase>("time_pool_max_one_step", TimeOp::Max, int64_t{6}, 1, RowOut{2, 6}, false),
      named<TimeReduceCase>("time_pool_max_long_rows", TimeOp::Max, int64_t{4}, 97, RowOut{}, false),
      named<TimeReduceCase>("time_pool_l2", TimeOp::L2, int64_t{13}, 23, RowOut{}, false),
      named<TimeReduceCase>("time_pool_l2_strided", TimeOp::L2, int64_t{15}, 7, RowOut{5, 17}, false),
      named<TimeReduceCase>("time_pool_l2_strided_accumulate", TimeOp::L2, int64_t{12}, 9, RowOut{3, 9}, true),
      named<TimeReduceCase>("time_pool_l2_one_step", TimeOp::L2, int64_t{6}, 1, RowOut{2, 6}, false),
      named<PoolingHeadCase>("time_pool_head_mean_max_l2_dropout", 3, 5, 11, 0.25),
  };
}

std::vector<NamedCase> batchnorm_grad_cases() {
  return {named<BatchNormCase>("batchnorm", 7, 5), named<BatchNormCase>("batchnorm_two_rows", 2, 3)};
}

std::vector<NamedCase> dropout_grad_cases() {
  return {named<DropoutCase>("dropout_p03", 1001, 0.3), named<DropoutCase>("dropout_p0", 101, 0.0)};
}

std::vector<NamedCase> linear_grad_cases() { return {named<LinearCase>("linear", 6, 37, 11)}; }

std::vector<NamedCase> l2norm_grad_cases() {
  return {named<L2NormCase>("l2norm", 5, 17, 1.0, 1e-12), named<L2NormCase>("l2norm_below_eps", 3, 7, 1e-3, 1.0)};
}

std::vector<NamedCase> triplet_grad_cases() {
  return {
      named<TripletCase>("triplet_m02", 9, 16, 0.2, false, false),
      named<TripletCase>("triplet_m1_swap", 9, 16, 1.0, true, false),
      named<TripletCase>("triplet_shared_rows", 12, 8, 1.0, false, true),
      named<TripletCase>("triplet_shared_rows_swap", 12, 8, 1.0, true, true),
      named<UnminedTripletCase>("triplet_unmined_rows", false),
      named<UnminedTripletCase>("triplet_unmined_rows_swap", true),
  };
}

std::vector<NamedCase> contrastive_grad_cases() {
  return {
      named<ContrastiveCase>("contrastive_t01", 9, 16, 0.1, 1, 2, false),
      named<ContrastiveCase>("contrastive_t05_band", 11, 7, 0.5, 1, 3, false),
      named<ContrastiveCase>("contrastive_asymmetric", 10, 5, 0.2, 2, 4, true),
      named<ContrastiveCase>("contrastive_same_item_only", 8, 9, 0.3, 0, 1, false),
  };
}

// Every row of the op list (kernels/op_list.h) whose gradient is `central` adds its cases.
#define MG_GRAD_central(op) append(op##_grad_cases());
#define MG_GRAD_none(op)
#define MG_GRAD_CASES(op, gradient, reference, kernels) MG_GRAD_##gradient(op)
std::vector<NamedCase> all_cases() {
  std::vector<NamedCase> all;
  auto append = [&](std::vector<NamedCase> v) { all.insert(all.end(), v.begin(), v.end()); };
  MELGRAPH_OPS(MG_GRAD_CASES)
  return all;
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

TEST(GradCheckTable, EveryDifferentiableOpHasACase) {
  const std::vector<NamedCase> cases = all_cases();
  for (const OpRow& row : kOpRows) {
    if (std::string(row.gradient) != "central") continue;
    const std::string op = row.op;
    EXPECT_TRUE(std::any_of(cases.begin(), cases.end(),
                            [&](const NamedCase& c) { return c.name == op || c.name.rfind(op + "_", 0) == 0; }))
        << op << ": its gradient is `central` in kernels/op_list.h but " << op << "_grad_cases() adds no case";
  }
}

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

// Global max over time: the first maximum of a row wins ties and takes the gradient; a NaN
// wins over numbers (the first NaN), as in max-pool. Overwrite vs accumulate.
TEST(MaxTime, FirstMaximumWinsOnTiesAndNaNPropagates) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double x[12] = {1, 3, 3, 0, /**/ 2, nan, 5, nan, /**/ -1, -1, -1, -1};
  double y[3];
  max_time_forward_cpu(x, y, 3, 4);
  EXPECT_EQ(y[0], 3);
  EXPECT_TRUE(std::isnan(y[1]));
  EXPECT_EQ(y[2], -1);
  const double dy[3] = {5, 7, 9};
  double dx[12];
  max_time_backward_cpu(dy, x, dx, 3, 4, RowOut{}, false);
  const double want[12] = {0, 5, 0, 0, 0, 7, 0, 0, 9, 0, 0, 0};
  for (int i = 0; i < 12; ++i) EXPECT_EQ(dx[i], want[i]) << i;
  max_time_backward_cpu(dy, x, dx, 3, 4, RowOut{}, true);  // adds the same again
  for (int i = 0; i < 12; ++i) EXPECT_EQ(dx[i], 2 * want[i]) << i;
}

// An all-zero row (a channel the ReLU silenced for the whole clip) has norm 0 and passes no
// gradient (torch's choice for the norm at 0), not NaN; a tiny row is still exact, since
// |x / n| <= 1 needs no eps.
TEST(L2Time, AllZeroRowPassesNoGradientAndTinyRowsStayExact) {
  const double x[6] = {0, 0, 0, 3e-30, -4e-30, 0};
  double y[2];
  l2_time_forward_cpu(x, y, 2, 3);
  EXPECT_EQ(y[0], 0.0);
  EXPECT_NEAR(y[1], 5e-30, 1e-44);
  const double dy[2] = {2, 10};
  double dx[6];
  l2_time_backward_cpu(dy, x, dx, 2, 3, RowOut{}, false);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(dx[i], 0.0) << i;
  EXPECT_NEAR(dx[3], 6.0, 1e-14);
  EXPECT_NEAR(dx[4], -8.0, 1e-14);
  EXPECT_EQ(dx[5], 0.0);
  const float xf[3] = {0, 0, 0}, dyf[1] = {1};
  float dxf[3] = {1, 2, 3};
  l2_time_backward_cpu(dyf, xf, dxf, 1, 3, RowOut{}, true);  // accumulate: adds nothing
  EXPECT_EQ(dxf[0], 1.0f);
  EXPECT_EQ(dxf[2], 3.0f);
}

// Bad layouts are refused with the op's name, not run out of bounds.
TEST(TimeReductions, RejectBadLayouts) {
  const double x[6] = {1, 2, 3, 4, 5, 6};
  double y[6];
  EXPECT_THROW(max_time_forward_cpu(x, y, 3, 2, RowOut{2, 4}), std::invalid_argument);  // 3 rows, C = 2
  EXPECT_THROW(l2_time_forward_cpu(x, y, 2, 3, RowOut{2, 1}), std::invalid_argument);   // ld < C
  EXPECT_THROW(mean_time_forward_cpu(x, y, 2, 0, RowOut{}), std::invalid_argument);     // no steps
}

// The mask is the documented function of (seed, stream, i): 0 where philox_uniform < p, else
// exactly dropout_scale(p); about a fraction p is dropped; another step draws another mask.
TEST(Dropout, MaskFollowsPhiloxAndTheScaleIsExact) {
  const int64_t n = 20000;
  const double p = 0.3;
  std::vector<float> x(n), y(n), mask(n), mask2(n);
  for (int64_t i = 0; i < n; ++i) x[static_cast<size_t>(i)] = 0.5f + static_cast<float>(i % 7);
  dropout_forward_cpu(x.data(), y.data(), mask.data(), n, p, 42, dropout_stream(9));
  const float scale = dropout_scale<float>(p);
  EXPECT_EQ(scale, static_cast<float>(1.0 / 0.7));
  int64_t dropped = 0;
  for (int64_t i = 0; i < n; ++i) {
    const size_t k = static_cast<size_t>(i);
    const bool drop = philox_uniform(42, dropout_stream(9), static_cast<uint64_t>(i)) < p;
    ASSERT_EQ(mask[k], drop ? 0.0f : scale) << i;
    ASSERT_EQ(y[k], x[k] * mask[k]) << i;
    dropped += drop;
  }
  // Binomial(20000, 0.3): standard deviation 65; 5 of them.
  EXPECT_NEAR(static_cast<double>(dropped), p * n, 5 * std::sqrt(n * p * (1 - p)));
  dropout_forward_cpu(x.data(), y.data(), mask2.data(), n, p, 42, dropout_stream(10));
  EXPECT_NE(mask, mask2) << "another step must draw another mask";
  dropout_forward_cpu(x.data(), y.data(), mask2.data(), n, p, 42, dropout_stream(9));
  EXPECT_EQ(mask, mask2) << "the same (seed, step) must draw the same mask";
  EXPECT_THROW(dropout_forward_cpu(x.data(), y.data(), mask.data(), n, 1.0, 42, 0), std::invalid_argument);
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

// L_i written out for a batch of three rows by hand: row 0 and 1 the same item (hops 0), row 2
// far from both. With e0 = e1 and e2 orthogonal, s01 = 1 / tau and s02 = s12 = 0, so
// L_0 = L_1 = log(exp(1 / tau) + 1) - 1 / tau, and row 2 has no positive (skipped).
TEST(ContrastiveLoss, MatchesTheFormulaOnAHandCase) {
  const double tau = 0.25;
  const std::vector<double> emb = {1, 0, 1, 0, 0, 1};
  const std::vector<uint8_t> hops = {0, 0, 9, 0, 0, 9, 9, 9, 0};
  ContrastiveLossParams p;
  p.temperature = tau;
  std::vector<double> g(6, kNaN);
  const auto r = contrastive_loss_cpu(emb.data(), hops.data(), 3, 2, p, g.data());
  EXPECT_EQ(r.valid, 2);
  EXPECT_NEAR(r.loss, std::log(std::exp(1 / tau) + 1) - 1 / tau, 1e-15);
  for (double v : g) EXPECT_TRUE(std::isfinite(v));
}

TEST(ContrastiveLoss, RejectsBadParameters) {
  const std::vector<float> emb = {1, 0, 0, 1};
  const std::vector<uint8_t> hops = {0, 1, 1, 0};
  for (const ContrastiveLossParams& p : {ContrastiveLossParams{0.0, 1, 2}, ContrastiveLossParams{-1.0, 1, 2},
                                         ContrastiveLossParams{kNaN, 1, 2}, ContrastiveLossParams{0.1, 2, 2},
                                         ContrastiveLossParams{0.1, -1, 2}, ContrastiveLossParams{0.1, 1, 256}})
    EXPECT_THROW(contrastive_loss_cpu(emb.data(), hops.data(), 2, 2, p, static_cast<float*>(nullptr)),
                 std::invalid_argument);
  EXPECT_THROW(contrastive_loss_cpu(emb.data(), hops.data(), 0, 2, ContrastiveLossParams{}, static_cast<float*>(nullptr)),
               std::invalid_argument);
}

TEST(TripletLoss, RejectsOutOfRangeRows) {
  const double emb[4] = {1, 0, 0, 1};
  const int32_t trip[3] = {0, 1, 2};
  EXPECT_THROW(triplet_loss_cpu(emb, trip, 1, 2, 2, TripletLossParams{}, static_cast<double*>(nullptr)),
               std::out_of_range);
}

}  // namespace
}  // namespace mg
