#include "kernels/reduce_cpu.h"

#include <cmath>

namespace mg {

template <class T>
void mean_time_forward_cpu(const T* x, T* y, int64_t rows, int Tn) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * Tn;
    double s = 0;  // long rows: accumulate in double, round once
    for (int t = 0; t < Tn; ++t) s += static_cast<double>(xr[t]);
    y[r] = static_cast<T>(s / Tn);
  }
}

template <class T>
void mean_time_backward_cpu(const T* dy, T* dx, int64_t rows, int Tn) {
  const T inv = T(1) / static_cast<T>(Tn);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const T g = dy[r] * inv;
    T* dxr = dx + r * Tn;
    for (int t = 0; t < Tn; ++t) dxr[t] = g;
  }
}

template <class T>
static double row_norm(const T* x, int E) {
  double s = 0;
  for (int e = 0; e < E; ++e) s += static_cast<double>(x[e]) * static_cast<double>(x[e]);
  return std::sqrt(s);
}

template <class T>
void l2norm_forward_cpu(const T* x, T* y, int B, int E, double eps) {
#pragma omp parallel for schedule(static)
  for (int b = 0; b < B; ++b) {
    const T* xb = x + static_cast<int64_t>(b) * E;
    T* yb = y + static_cast<int64_t>(b) * E;
    const double inv = 1.0 / std::max(row_norm(xb, E), eps);
    for (int e = 0; e < E; ++e) yb[e] = static_cast<T>(xb[e] * inv);
  }
}

template <class T>
void l2norm_backward_cpu(const T* dy, const T* x, const T* y, T* dx, int B, int E, double eps) {
#pragma omp parallel for schedule(static)
  for (int b = 0; b < B; ++b) {
    const int64_t o = static_cast<int64_t>(b) * E;
    const double n = row_norm(x + o, E);
    if (n >= eps) {  // clamp_min passes the gradient at equality, as in F.normalize
      // d(x/|x|) = (I - y y^T) / |x|
      double ydy = 0;
      for (int e = 0; e < E; ++e) ydy += static_cast<double>(y[o + e]) * static_cast<double>(dy[o + e]);
      for (int e = 0; e < E; ++e) dx[o + e] = static_cast<T>((dy[o + e] - y[o + e] * ydy) / n);
    } else {
      // Below eps the op is x / eps, a linear map.
      for (int e = 0; e < E; ++e) dx[o + e] = static_cast<T>(dy[o + e] / eps);
    }
  }
}

template void mean_time_forward_cpu<float>(const float*, float*, int64_t, int);
template void mean_time_forward_cpu<double>(const double*, double*, int64_t, int);
template void mean_time_backward_cpu<float>(const float*, float*, int64_t, int);
template void mean_time_backward_cpu<double>(const double*, double*, int64_t, int);
template void l2norm_forward_cpu<float>(const float*, float*, int, int, double);
template void l2norm_forward_cpu<double>(const double*, double*, int, int, double);
template void l2norm_backward_cpu<float>(const float*, const float*, const float*, float*, int, int, double);
template void l2norm_backward_cpu<double>(const double*, const double*, const double*, double*, int, int, double);

}  // namespace mg
