#include "kernels/fill_cpu.h"

#include "kernels/philox.h"

namespace mg {

void fill_cpu(float* p, int64_t n, float value) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) p[i] = value;
}

void fill_uniform_cpu(float* p, int64_t n, float lo, float hi, uint64_t seed, uint64_t stream) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) p[i] = lo + (hi - lo) * philox_uniform(seed, stream, static_cast<uint64_t>(i));
}

}  // namespace mg
