// Conv1d over time, stride 1, CPU implementation (the oracle for the cuDNN path).
// Layouts follow torch.nn.Conv1d: x [B, Cin, Tin], w [Cout, Cin, K], b [Cout],
// y [B, Cout, Tout] with Tout = Tin + pad_left + pad_right - K + 1. "valid" padding is
// pad_left = pad_right = 0; "same" is pad_left = (K-1)/2, pad_right = K-1-pad_left (PyTorch's
// split for even K). Zero padding.
//
// Implementation: per clip, im2col to [Cin*K, Tout] and one GEMM with OpenBLAS; clips run in
// parallel on OpenMP threads. T is float or double (double for gradient checks).
#pragma once

namespace mg {

struct Conv1dDims {
  int B, Cin, Cout, Tin, K, pad_left, pad_right;
  int Tout() const { return Tin + pad_left + pad_right - K + 1; }
};

// y = conv(x, w) + b  (y overwritten)
template <class T>
void conv1d_forward_cpu(const T* x, const T* w, const T* b, T* y, const Conv1dDims& d);

// dx = conv^T(dy, w)   (overwritten; skipped when dx is null)
// dw += corr(x, dy), db += sum over (B, Tout) of dy   (accumulated)
// The weight-gradient reduction over clips uses a fixed split into chunks, so results do not
// depend on the number of threads.
template <class T>
void conv1d_backward_cpu(const T* dy, const T* x, const T* w, T* dx, T* dw, T* db,
                         const Conv1dDims& d);

}  // namespace mg
