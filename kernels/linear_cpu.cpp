#include "kernels/linear_cpu.h"

#include <cstdint>

#include "kernels/blas.h"

namespace mg {

template <class T>
void linear_forward_cpu(const T* x, const T* w, const T* b, T* y, int B, int C, int E) {
  for (int i = 0; i < B; ++i)
    for (int e = 0; e < E; ++e) y[static_cast<int64_t>(i) * E + e] = b[e];
  // y [B, E] += x [B, C] @ w^T [C, E]
  gemm(false, true, B, E, C, T(1), x, C, w, C, T(1), y, E);
}

template <class T>
void linear_backward_cpu(const T* dy, const T* x, const T* w, T* dx, T* dw, T* db, int B, int C,
                         int E) {
  if (dx) gemm(false, false, B, C, E, T(1), dy, E, w, C, T(0), dx, C);  // dx [B, C] = dy @ w
  gemm(true, false, E, C, B, T(1), dy, E, x, C, T(1), dw, C);           // dw [E, C] += dy^T @ x
  for (int e = 0; e < E; ++e) {
    T s = 0;
    for (int i = 0; i < B; ++i) s += dy[static_cast<int64_t>(i) * E + e];
    db[e] += s;
  }
}

template void linear_forward_cpu<float>(const float*, const float*, const float*, float*, int, int, int);
template void linear_forward_cpu<double>(const double*, const double*, const double*, double*, int, int, int);
template void linear_backward_cpu<float>(const float*, const float*, const float*, float*, float*, float*, int, int, int);
template void linear_backward_cpu<double>(const double*, const double*, const double*, double*, double*, double*, int, int, int);

}  // namespace mg
