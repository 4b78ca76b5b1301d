#include "kernels/band_norm_cpu.h"

#include <stdexcept>
#include <string>

namespace mg {

template <class T>
void band_norm_forward_cpu(const T* x, const T* mean, const T* std, T* y, int64_t B, int C, int64_t Tn) {
  if (B < 0 || C < 1 || Tn < 0)
    throw std::invalid_argument("band_norm: need B >= 0, C >= 1, T >= 0 (got B " + std::to_string(B) + ", C " +
                                std::to_string(C) + ", T " + std::to_string(Tn) + ")");
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < B * C; ++row) {
    const int c = static_cast<int>(row % C);
    const T m = mean[c], s = std[c];
    const T* in = x + row * Tn;
    T* out = y + row * Tn;
    for (int64_t t = 0; t < Tn; ++t) out[t] = (in[t] - m) / s;
  }
}

template void band_norm_forward_cpu<float>(const float*, const float*, const float*, float*, int64_t, int, int64_t);
template void band_norm_forward_cpu<double>(const double*, const double*, const double*, double*, int64_t, int,
                                            int64_t);

}  // namespace mg
