// Max-pool 1d with window = stride, no padding, floor mode (torch.nn.MaxPool1d(w)):
// x [R, Tin] -> y [R, Tin / w]; the Tin % w trailing steps are dropped. On ties the first
// maximum in the window wins, in forward and backward (the gradient goes to that element).
// The first NaN in a window counts as its maximum (PyTorch's rule), so NaN propagates.
#pragma once
#include <cstdint>

namespace mg {

template <class T>
void maxpool1d_forward_cpu(const T* x, T* y, int64_t rows, int Tin, int window);

// dx overwritten (zeros everywhere but the winning element of each window).
template <class T>
void maxpool1d_backward_cpu(const T* dy, const T* x, T* dx, int64_t rows, int Tin, int window);

}  // namespace mg
