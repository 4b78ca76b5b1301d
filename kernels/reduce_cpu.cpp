#include "kernels/reduce_cpu.h"

#include <cmath>

namespace mg {

namespace {

// Index in y of row r's result (RowOut's layout).
inline int64_t out_index(int64_t r, const RowOut& out) { return (r / out.C) * out.ld + r % out.C; }

// Index of a row's maximum: the first maximum, or the first NaN if there is one.
template <class T>
inline int time_argmax(const T* x, int Tn) {
  int arg = 0;
  for (int t = 1; t < Tn; ++t) {
    if (std::isnan(x[arg])) break;
    if (x[t] > x[arg] || std::isnan(x[t])) arg = t;
  }
  return arg;
}

template <class T>
double sum_squares(const T* x, int n) {
  double s = 0;
  for (int i = 0; i < n; ++i) s += static_cast<double>(x[i]) * static_cast<double>(x[i]);
  return s;
}

}  // namespace

template <class T>
void mean_time_forward_cpu(const T* x, T* y, int64_t rows, int Tn, const RowOut& out) {
  check_row_out("mean_time_forward_cpu", rows, Tn, out);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * Tn;
    double s = 0;  // long rows: accumulate in double, round once
    for (int t = 0; t < Tn; ++t) s += static_cast<double>(xr[t]);
    y[out_index(r, out)] = static_cast<T>(s / Tn);
  }
}

template <class T>
void mean_time_backward_cpu(const T* dy, T* dx, int64_t rows, int Tn, const RowOut& out, bool accumulate) {
  check_row_out("mean_time_backward_cpu", rows, Tn, out);
  const T inv = T(1) / static_cast<T>(Tn);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const T g = dy[out_index(r, out)] * inv;
    T* dxr = dx + r * Tn;
    if (accumulate) {
      for (int t = 0; t < Tn; ++t) dxr[t] += g;
    } else {
      for (int t = 0; t < Tn; ++t) dxr[t] = g;
    }
  }
}

template <class T>
void max_time_forward_cpu(const T* x, T* y, int64_t rows, int Tn, const RowOut& out) {
  check_row_out("max_time_forward_cpu", rows, Tn, out);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * Tn;
    y[out_index(r, out)] = xr[time_argmax(xr, Tn)];
  }
}

template <class T>
void max_time_backward_cpu(const T* dy, const T* x, T* dx, int64_t rows, int Tn, const RowOut& out,
                           bool accumulate) {
  check_row_out("max_time_backward_cpu", rows, Tn, out);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const int arg = time_argmax(x + r * Tn, Tn);
    const T g = dy[out_index(r, out)];
    T* dxr = dx + r * Tn;
    if (accumulate) {
      dxr[arg] += g;
    } else {
      for (int t = 0; t < Tn; ++t) dxr[t] = t == arg ? g : T(0);
    }
  }
}

template <class T>
void l2_time_forward_cpu(const T* x, T* y, int64_t rows, int Tn, const RowOut& out) {
  check_row_out("l2_time_forward_cpu", rows, Tn, out);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) y[out_index(r, out)] = static_cast<T>(std::sqrt(sum_squares(x + r * Tn, Tn)));
}

template <class T>
void l2_time_backward_cpu(const T* dy, const T* x, T* dx, int64_t rows, int Tn, const RowOut& out,
                          bool accumulate) {
  check_row_out("l2_time_backward_cpu", rows, Tn, out);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * Tn;
    T* dxr = dx + r * Tn;
    const double n = std::sqrt(sum_squares(xr, Tn));
    const double g = static_cast<double>(dy[out_index(r, out)]);
    for (int t = 0; t < Tn; ++t) {
      const T d = n == 0.0 ? T(0) : static_cast<T>(g * static_cast<double>(xr[t]) / n);
      dxr[t] = accumulate ? dxr[t] + d : d;
    }
  }
}

template <class T>
static double row_norm(const T* x, int E) {
  return std::sqrt(sum_squares(x, E));
}

template <class T>
void l2norm_forward_cpu(const T* x, T* y, int B, int E, double eps) {
#pragma omp parallel for schedule(static)
  for (int b = 0; b < B; ++b) {
    const T* xb = x + static_cast<int64_t>(b) * E;
    T* yb = y + static_cast<int64_t>(b) * E;
    const double inv = 1.0 / std::max(row_norm(xb, E), eps);
    for (int e = 0; e < E; ++e) yb[e] = static_cast<T>(xb[e] * inv);
  }
}

template <class T>
void l2norm_backward_cpu(const T* dy, const T* x, const T* y, T* dx, int B, int E, double eps) {
#pragma omp parallel for schedule(static)
  for (int b = 0; b < B; ++b) {
    const int64_t o = static_cast<int64_t>(b) * E;
    const double n = row_norm(x + o, E);
    if (n >= eps) {  // clamp_min passes the gradient at equality, as in F.normalize
      // d(x/|x|) = (I - y y^T) / |x|
      double ydy = 0;
      for (int e = 0; e < E; ++e) ydy += static_cast<double>(y[o + e]) * static_cast<double>(dy[o + e]);
      for (int e = 0; e < E; ++e) dx[o + e] = static_cast<T>((dy[o + e] - y[o + e] * ydy) / n);
    } else {
      // Below eps the op is x / eps, a linear map.
      for (int e = 0; e < E; ++e) dx[o + e] = static_cast<T>(dy[o + e] / eps);
    }
  }
}

template void mean_time_forward_cpu<float>(const float*, float*, int64_t, int, const RowOut&);
template void mean_time_forward_cpu<double>(const double*, double*, int64_t, int, const RowOut&);
template void mean_time_backward_cpu<float>(const float*, float*, int64_t, int, const RowOut&, bool);
template void mean_time_backward_cpu<double>(const double*, double*, int64_t, int, const RowOut&, bool);
template void max_time_forward_cpu<float>(const float*, float*, int64_t, int, const RowOut&);
template void max_time_forward_cpu<double>(const double*, double*, int64_t, int, const RowOut&);
template void max_time_backward_cpu<float>(const float*, const float*, float*, int64_t, int, const RowOut&, bool);
template void max_time_backward_cpu<double>(const double*, const double*, double*, int64_t, int, const RowOut&,
                                            bool);
template void l2_time_forward_cpu<float>(const float*, float*, int64_t, int, const RowOut&);
template void l2_time_forward_cpu<double>(const double*, double*, int64_t, int, const RowOut&);
template void l2_time_backward_cpu<float>(const float*, const float*, float*, int64_t, int, const RowOut&, bool);
template void l2_time_backward_cpu<double>(const double*, const double*, double*, int64_t, int, const RowOut&,
                                           bool);
template void l2norm_forward_cpu<float>(const float*, float*, int, int, double);
template void l2norm_forward_cpu<double>(const double*, double*, int, int, double);
template void l2norm_backward_cpu<float>(const float*, const float*, const float*, float*, int, int, double);
template void l2norm_backward_cpu<double>(const double*, const double*, const double*, double*, int, int, double);

}  // namespace mg
