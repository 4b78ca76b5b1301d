// Inverted dropout (torch.nn.functional.dropout in training mode): y = x * m with m_i = 0 with
// probability p and 1 / (1 - p) otherwise, so E[y] = x and evaluation is the identity.
//
// The mask is a pure function of (seed, stream, i), from Philox (kernels/philox.h):
//   m_i = philox_uniform(seed, stream, i) < p ? 0 : dropout_scale(p)
// so the CPU and CUDA backends draw the same mask however the work is split. The forward
// stores m (the caller's buffer); the backward reads it: dx = dy * m.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>

namespace mg {

// The Philox stream of the dropout mask of training step `step`: a tag in the high 32 bits
// keeps it apart from the parameter init streams (tensor indices) drawn under the same seed.
constexpr uint64_t dropout_stream(uint64_t step) { return (uint64_t{0x64726f70} << 32) + step; }

// Throws std::invalid_argument naming `op` unless 0 <= p < 1.
inline void check_dropout_p(const char* op, double p) {
  if (!(p >= 0.0 && p < 1.0))
    throw std::invalid_argument(std::string(op) + ": dropout probability " + std::to_string(p) +
                                " outside [0, 1)");
}

// The kept elements' factor 1 / (1 - p), rounded once to T.
template <class T>
T dropout_scale(double p) {
  return static_cast<T>(1.0 / (1.0 - p));
}

// x, y, mask [n]; y may alias x. mask is overwritten with 0 or dropout_scale(p).
template <class T>
void dropout_forward_cpu(const T* x, T* y, T* mask, int64_t n, double p, uint64_t seed, uint64_t stream);
// dx = dy * mask (overwritten); dx may alias dy.
template <class T>
void dropout_backward_cpu(const T* dy, const T* mask, T* dx, int64_t n);

}  // namespace mg
