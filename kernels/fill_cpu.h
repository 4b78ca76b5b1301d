// Filling a buffer: one value, or uniform random values from the counter-based Philox stream
// (kernels/philox.h), so that initialisation is the same on every backend and thread count:
// element i gets lo + (hi - lo) * u(seed, stream, i), the product and the sum rounded
// separately (fill_cuda.cu forbids the FMA contraction for the same bits).
#pragma once
#include <cstdint>

namespace mg {

void fill_cpu(float* p, int64_t n, float value);

void fill_uniform_cpu(float* p, int64_t n, float lo, float hi, uint64_t seed, uint64_t stream);

}  // namespace mg
