// ReLU: y = max(x, 0). Backward uses the output: dx = dy where y > 0, else 0 (as PyTorch).
#pragma once
#include <cstdint>

namespace mg {

template <class T>
void relu_forward_cpu(const T* x, T* y, int64_t n);  // y may alias x

template <class T>
void relu_backward_cpu(const T* dy, const T* y, T* dx, int64_t n);  // dx may alias dy

}  // namespace mg
