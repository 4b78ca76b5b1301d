#include "kernels/triplet_loss_cpu.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace mg {

namespace {

// Distance and its gradient factor: d = sqrt(max(s, eps)), s = 2 (1 - x.y).
// dd/dx = -y / d when s >= eps (clamp passes), else 0.
struct Dist {
  double d;
  double gcoef;  // dd/dx = gcoef * y, dd/dy = gcoef * x
};

template <class T>
Dist cos_dist(const T* x, const T* y, int E, double eps) {
  double dot = 0;
  for (int e = 0; e < E; ++e) dot += static_cast<double>(x[e]) * static_cast<double>(y[e]);
  const double s = 2.0 * (1.0 - dot);
  if (s >= eps) {
    const double d = std::sqrt(s);
    return {d, -1.0 / d};
  }
  return {std::sqrt(eps), 0.0};
}

// In-batch mining's marker for an anchor without a negative.
bool is_invalid_row(const int32_t* t) { return t[0] == -1 && t[1] == -1 && t[2] == -1; }

template <class T>
void axpy(T* out, double a, const T* x, int E) {
  for (int e = 0; e < E; ++e) out[e] = static_cast<T>(out[e] + a * x[e]);
}

}  // namespace

template <class T>
TripletLossResult triplet_loss_cpu(const T* emb, const int32_t* triplets, int n_triplets, int N,
                                   int E, const TripletLossParams& p, T* demb) {
  TripletLossResult r;
  if (n_triplets <= 0) throw std::invalid_argument("triplet_loss: no triplets");
  for (int i = 0; i < n_triplets; ++i) {
    const int32_t* t = triplets + 3 * static_cast<int64_t>(i);
    if (is_invalid_row(t)) continue;
    ++r.valid;
    for (int k = 0; k < 3; ++k)
      if (t[k] < 0 || t[k] >= N)
        throw std::out_of_range("triplet_loss: triplet " + std::to_string(i) + " refers to row " +
                                std::to_string(t[k]) + " of " + std::to_string(N) +
                                " (only a whole row of -1 marks a triplet as invalid)");
  }
  if (demb) std::fill(demb, demb + static_cast<int64_t>(N) * E, T(0));
  if (r.valid == 0) return r;  // loss 0, zero gradient
  const double scale = 1.0 / static_cast<double>(r.valid);
  double total = 0;
  // Sequential over triplets: a row may appear in several triplets, and a fixed summation
  // order keeps the CPU backend deterministic. The cost is O(n_triplets * E), negligible
  // next to the conv stack.
  for (int i = 0; i < n_triplets; ++i) {
    if (is_invalid_row(triplets + 3 * static_cast<int64_t>(i))) continue;
    const T* a = emb + static_cast<int64_t>(triplets[3 * i + 0]) * E;
    const T* pp = emb + static_cast<int64_t>(triplets[3 * i + 1]) * E;
    const T* n = emb + static_cast<int64_t>(triplets[3 * i + 2]) * E;
    const Dist dap = cos_dist(a, pp, E, p.eps);
    const Dist dan = cos_dist(a, n, E, p.eps);
    bool swapped = false;
    Dist dneg = dan;
    if (p.swap) {
      const Dist dpn = cos_dist(pp, n, E, p.eps);
      if (dpn.d < dan.d) {
        dneg = dpn;
        swapped = true;
      }
    }
    const double h = dap.d - dneg.d + p.margin;
    if (h < 0) continue;  // clamp_min(h, 0) passes the gradient at h == 0
    total += h;
    ++r.active;
    if (!demb) continue;
    T* ga = demb + static_cast<int64_t>(triplets[3 * i + 0]) * E;
    T* gp = demb + static_cast<int64_t>(triplets[3 * i + 1]) * E;
    T* gn = demb + static_cast<int64_t>(triplets[3 * i + 2]) * E;
    // + d(a, p)
    axpy(ga, scale * dap.gcoef, pp, E);
    axpy(gp, scale * dap.gcoef, a, E);
    // - d(neg pair): (a, n) or (p, n)
    const T* first = swapped ? pp : a;
    T* gfirst = swapped ? gp : ga;
    axpy(gfirst, -scale * dneg.gcoef, n, E);
    axpy(gn, -scale * dneg.gcoef, first, E);
  }
  r.loss = total * scale;
  return r;
}

template TripletLossResult triplet_loss_cpu<float>(const float*, const int32_t*, int, int, int, const TripletLossParams&, float*);
template TripletLossResult triplet_loss_cpu<double>(const double*, const int32_t*, int, int, int, const TripletLossParams&, double*);

}  // namespace mg
