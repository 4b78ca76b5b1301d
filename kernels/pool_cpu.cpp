#include "kernels/pool_cpu.h"

#include <algorithm>
#include <cmath>

namespace mg {

namespace {

// Index of the window's maximum: the first maximum, or the first NaN if there is one.
template <class T>
inline int window_argmax(const T* w, int window) {
  int arg = 0;
  for (int k = 1; k < window; ++k) {
    if (std::isnan(w[arg])) break;
    if (w[k] > w[arg] || std::isnan(w[k])) arg = k;
  }
  return arg;
}

// A row without NaN takes the branch-free path below; the NaN rule needs the exact scan.
template <class T>
inline bool row_has_nan(const T* x, int n) {
  bool nan = false;
  for (int i = 0; i < n; ++i) nan |= x[i] != x[i];
  return nan;
}

}  // namespace

template <class T>
void maxpool1d_forward_cpu(const T* x, T* y, int64_t rows, int Tin, int window) {
  const int Tout = Tin / window;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * Tin;
    T* yr = y + r * Tout;
    if (row_has_nan(xr, Tout * window)) {
      for (int t = 0; t < Tout; ++t) yr[t] = xr[static_cast<int64_t>(t) * window + window_argmax(xr + static_cast<int64_t>(t) * window, window)];
      continue;
    }
    for (int t = 0; t < Tout; ++t) {
      const T* w = xr + static_cast<int64_t>(t) * window;
      T m = w[0];
      for (int k = 1; k < window; ++k) m = w[k] > m ? w[k] : m;  // strict: the first maximum wins
      yr[t] = m;
    }
  }
}

template <class T>
void maxpool1d_backward_cpu(const T* dy, const T* x, T* dx, int64_t rows, int Tin, int window) {
  const int Tout = Tin / window;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * Tin;
    const T* dyr = dy + r * Tout;
    T* dxr = dx + r * Tin;
    const bool nan = row_has_nan(xr, Tout * window);
    for (int t = 0; t < Tout; ++t) {
      const T* w = xr + static_cast<int64_t>(t) * window;
      int arg = 0;
      if (nan) {
        arg = window_argmax(w, window);
      } else {
        T m = w[0];
        for (int k = 1; k < window; ++k) {
          const bool gt = w[k] > m;  // strict: the first maximum wins
          m = gt ? w[k] : m;
          arg = gt ? k : arg;
        }
      }
      T* d = dxr + static_cast<int64_t>(t) * window;
      const T g = dyr[t];  // loaded once: a select per element, not a load under a branch
      for (int k = 0; k < window; ++k) d[k] = k == arg ? g : T(0);
    }
    std::fill(dxr + static_cast<int64_t>(Tout) * window, dxr + Tin, T(0));  // the dropped tail
  }
}

template void maxpool1d_forward_cpu<float>(const float*, float*, int64_t, int, int);
template void maxpool1d_forward_cpu<double>(const double*, double*, int64_t, int, int);
template void maxpool1d_backward_cpu<float>(const float*, const float*, float*, int64_t, int, int);
template void maxpool1d_backward_cpu<double>(const double*, const double*, double*, int64_t, int, int);

}  // namespace mg
