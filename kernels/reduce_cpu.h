// Reductions of the head: mean over time and L2 normalisation of rows.
#pragma once
#include <cstdint>

namespace mg {

// x [R, T] -> y [R], y = mean over T.
template <class T>
void mean_time_forward_cpu(const T* x, T* y, int64_t rows, int Tn);
// dx [R, T] = dy[r] / T (overwritten).
template <class T>
void mean_time_backward_cpu(const T* dy, T* dx, int64_t rows, int Tn);

// y = x / max(||x||_2, eps) per row of [B, E] (torch.nn.functional.normalize).
template <class T>
void l2norm_forward_cpu(const T* x, T* y, int B, int E, double eps);
// dx = (dy - y (y . dy)) / ||x|| when ||x|| >= eps, else dy / eps (overwritten).
template <class T>
void l2norm_backward_cpu(const T* dy, const T* x, const T* y, T* dx, int B, int E, double eps);

}  // namespace mg
