#include "kernels/pool_cpu.h"

#include <algorithm>
#include <cmath>

namespace mg {

template <class T>
void maxpool1d_forward_cpu(const T* x, T* y, int64_t rows, int Tin, int window) {
  const int Tout = Tin / window;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * Tin;
    T* yr = y + r * Tout;
    for (int t = 0; t < Tout; ++t) {
      const T* win = xr + static_cast<int64_t>(t) * window;
      T m = win[0];
      // Strict: the first maximum wins. A NaN counts as the maximum (and propagates), as in
      // PyTorch, so a diverging run shows NaN instead of hiding it.
      for (int k = 1; k < window; ++k) m = (win[k] > m || std::isnan(win[k])) && !std::isnan(m) ? win[k] : m;
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
    std::fill(dxr, dxr + Tin, T(0));
    for (int t = 0; t < Tout; ++t) {
      const int64_t base = static_cast<int64_t>(t) * window;
      int arg = 0;
      for (int k = 1; k < window; ++k)
        if ((xr[base + k] > xr[base + arg] || std::isnan(xr[base + k])) && !std::isnan(xr[base + arg])) arg = k;
      dxr[base + arg] = dyr[t];
    }
  }
}

template void maxpool1d_forward_cpu<float>(const float*, float*, int64_t, int, int);
template void maxpool1d_forward_cpu<double>(const double*, double*, int64_t, int, int);
template void maxpool1d_backward_cpu<float>(const float*, const float*, float*, int64_t, int, int);
template void maxpool1d_backward_cpu<double>(const double*, const double*, double*, int64_t, int, int);

}  // namespace mg
