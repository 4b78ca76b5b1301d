// Reductions of the head: pooling over time (mean, max, L2 norm) and L2 normalisation of rows.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>

namespace mg {

// Where a reduction over time writes its results. x [R, T] holds R = B * C rows, r = b * C + c
// (clip b, channel c); row r's result goes to y[b * ld + c]. The default {1, 1} is the
// contiguous y [R]. The head's concatenation y [B, k C] = [mean | max | l2] per clip passes
// ld = k C and y offset by j C for feature j, so no copy joins the features.
struct RowOut {
  int C = 1;       // channels per clip: rows come in groups of C
  int64_t ld = 1;  // row stride of y, >= C
};

// Throws std::invalid_argument naming `op` unless rows is a multiple of out.C, ld >= C >= 1,
// and Tn >= 1 when there are rows (a reduction over no steps has no value).
inline void check_row_out(const char* op, int64_t rows, int Tn, const RowOut& out) {
  if (out.C < 1 || out.ld < out.C)
    throw std::invalid_argument(std::string(op) + ": output layout C = " + std::to_string(out.C) +
                                ", ld = " + std::to_string(out.ld) + "; need ld >= C >= 1");
  if (rows % out.C != 0)
    throw std::invalid_argument(std::string(op) + ": " + std::to_string(rows) + " rows are not whole clips of " +
                                std::to_string(out.C) + " channels");
  if (rows > 0 && Tn < 1)
    throw std::invalid_argument(std::string(op) + ": reduction over " + std::to_string(Tn) +
                                " time steps; the input must have at least one frame");
}

// x [R, T] -> y, y = mean over T.
template <class T>
void mean_time_forward_cpu(const T* x, T* y, int64_t rows, int Tn, const RowOut& out = {});
// dx [R, T] = dy[r] / T (overwritten); accumulate: dx += that instead (a stage that the head
// pools and the next stage reads, model.pool_stages = all).
template <class T>
void mean_time_backward_cpu(const T* dy, T* dx, int64_t rows, int Tn, const RowOut& out = {}, bool accumulate = false);

// x [R, T] -> y, y = max over T (torch.amax(x, -1) in value). The first maximum of a row wins
// ties, and the first NaN counts as its maximum, so NaN propagates (as max-pool, pool_cpu.h).
template <class T>
void max_time_forward_cpu(const T* x, T* y, int64_t rows, int Tn, const RowOut& out = {});
// The gradient goes to the winning element: dx[r, argmax] = dy[r], 0 elsewhere. On exact ties
// that is torch.max(x, -1)'s rule; torch.amax splits the gradient evenly among the tied
// elements instead (the two differ only at exact ties: after a ReLU those are zeros, where the
// ReLU's backward blocks the gradient either way). accumulate: dx += that instead of dx = (the
// head's concatenation adds the max's gradient to the mean's).
template <class T>
void max_time_backward_cpu(const T* dy, const T* x, T* dx, int64_t rows, int Tn, const RowOut& out,
                           bool accumulate);

// x [R, T] -> y, y = sqrt(sum over T of x^2) (torch.linalg.vector_norm(x, dim=-1)), summed in
// double.
template <class T>
void l2_time_forward_cpu(const T* x, T* y, int64_t rows, int Tn, const RowOut& out = {});
// dx[r, t] = dy[r] x[r, t] / n_r with n_r recomputed in double. Guard: n_r == 0 gives dx = 0
// (torch's subgradient at 0, norm_backward's masked_fill). Squares of floats cannot underflow
// in double, so n_r == 0 exactly when the row is all zeros (a channel the ReLU silenced for the
// whole clip); otherwise |x / n| <= 1, so no eps is needed. A NaN norm propagates.
// accumulate: dx += instead of dx =.
template <class T>
void l2_time_backward_cpu(const T* dy, const T* x, T* dx, int64_t rows, int Tn, const RowOut& out,
                          bool accumulate);

// y = x / max(||x||_2, eps) per row of [B, E] (torch.nn.functional.normalize).
template <class T>
void l2norm_forward_cpu(const T* x, T* y, int B, int E, double eps);
// dx = (dy - y (y . dy)) / ||x|| when ||x|| >= eps, else dy / eps (overwritten).
template <class T>
void l2norm_backward_cpu(const T* dy, const T* x, const T* y, T* dx, int B, int E, double eps);

}  // namespace mg
