#include "kernels/dropout_cpu.h"

#include "kernels/philox.h"

namespace mg {

template <class T>
void dropout_forward_cpu(const T* x, T* y, T* mask, int64_t n, double p, uint64_t seed, uint64_t stream) {
  check_dropout_p("dropout_forward_cpu", p);
  const T scale = dropout_scale<T>(p);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const double u = philox_uniform(seed, stream, static_cast<uint64_t>(i));
    const T m = u < p ? T(0) : scale;
    mask[i] = m;
    y[i] = x[i] * m;
  }
}

template <class T>
void dropout_backward_cpu(const T* dy, const T* mask, T* dx, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * mask[i];
}

template void dropout_forward_cpu<float>(const float*, float*, float*, int64_t, double, uint64_t, uint64_t);
template void dropout_forward_cpu<double>(const double*, double*, double*, int64_t, double, uint64_t, uint64_t);
template void dropout_backward_cpu<float>(const float*, const float*, float*, int64_t);
template void dropout_backward_cpu<double>(const double*, const double*, double*, int64_t);

}  // namespace mg
