#include "kernels/optim_cpu.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace mg {

template <class T>
void adam_step_cpu(T* p, const T* g, T* m, T* v, int64_t n, const AdamParams& a, int64_t step) {
  const double bc1 = 1.0 - std::pow(a.beta1, static_cast<double>(step));
  const double bc2 = 1.0 - std::pow(a.beta2, static_cast<double>(step));
  const double step_size = a.lr / bc1;
  const double sqrt_bc2 = std::sqrt(bc2);
  const double decay = a.decoupled ? 1.0 - a.lr * a.weight_decay : 1.0;
  const double l2 = a.decoupled ? 0.0 : a.weight_decay;
  const double b1 = a.beta1, b2 = a.beta2;
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const double pi = static_cast<double>(p[i]) * decay;
    const double gi = static_cast<double>(g[i]) + l2 * static_cast<double>(p[i]);
    const double mi = b1 * m[i] + (1.0 - b1) * gi;
    const double vi = b2 * v[i] + (1.0 - b2) * gi * gi;
    m[i] = static_cast<T>(mi);
    v[i] = static_cast<T>(vi);
    // torch.optim's form: p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps)
    p[i] = static_cast<T>(pi - step_size * mi / (std::sqrt(vi) / sqrt_bc2 + a.eps));
  }
}

// Blocks of fixed size summed in double, then the block sums added in order: the result does
// not depend on the thread count.
template <class T>
double global_norm_cpu(const T* g, int64_t n) {
  constexpr int64_t kBlock = 1 << 14;
  const int64_t nblocks = (n + kBlock - 1) / kBlock;
  std::vector<double> part(static_cast<size_t>(nblocks));
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < nblocks; ++b) {
    double s = 0;
    const int64_t end = std::min(n, (b + 1) * kBlock);
    for (int64_t i = b * kBlock; i < end; ++i) s += static_cast<double>(g[i]) * static_cast<double>(g[i]);
    part[b] = s;
  }
  double s = 0;
  for (double x : part) s += x;
  return std::sqrt(s);
}

template <class T>
void scale_cpu(T* g, int64_t n, double s) {
  const T ts = static_cast<T>(s);
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) g[i] *= ts;
}

template <class T>
double clip_grad_norm_cpu(T* g, int64_t n, double max_norm) {
  const double norm = global_norm_cpu(g, n);
  const double coef = max_norm / (norm + 1e-6);
  if (coef < 1.0) scale_cpu(g, n, coef);
  return norm;
}

template void adam_step_cpu<float>(float*, const float*, float*, float*, int64_t, const AdamParams&, int64_t);
template void adam_step_cpu<double>(double*, const double*, double*, double*, int64_t, const AdamParams&, int64_t);
template double global_norm_cpu<float>(const float*, int64_t);
template double global_norm_cpu<double>(const double*, int64_t);
template void scale_cpu<float>(float*, int64_t, double);
template void scale_cpu<double>(double*, int64_t, double);
template double clip_grad_norm_cpu<float>(float*, int64_t, double);
template double clip_grad_norm_cpu<double>(double*, int64_t, double);

}  // namespace mg
