// Linear layer (torch.nn.Linear layout): x [B, C], w [E, C], b [E] -> y [B, E] = x w^T + b.
#pragma once

namespace mg {

template <class T>
void linear_forward_cpu(const T* x, const T* w, const T* b, T* y, int B, int C, int E);

// dx = dy w (overwritten; skipped when null); dw += dy^T x; db += sum_b dy (accumulated).
template <class T>
void linear_backward_cpu(const T* dy, const T* x, const T* w, T* dx, T* dw, T* db, int B, int C,
                         int E);

}  // namespace mg
