#include "kernels/conv1d_cpu.h"

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/blas.h"

namespace mg {

// col [Cin*K, Tout]: col[(ci*K + k), t] = x[ci, t + k - pad_left], zero outside [0, Tin).
template <class T>
static void im2col(const T* x, T* col, const Conv1dDims& d) {
  const int Tout = d.Tout();
  for (int ci = 0; ci < d.Cin; ++ci) {
    const T* xr = x + static_cast<int64_t>(ci) * d.Tin;
    for (int k = 0; k < d.K; ++k) {
      T* cr = col + (static_cast<int64_t>(ci) * d.K + k) * Tout;
      const int shift = k - d.pad_left;  // col[t] = x[t + shift]
      const int t0 = std::clamp(-shift, 0, Tout);
      const int t1 = std::clamp(d.Tin - shift, t0, Tout);
      std::fill(cr, cr + t0, T(0));
      std::copy(xr + t0 + shift, xr + t1 + shift, cr + t0);
      std::fill(cr + t1, cr + Tout, T(0));
    }
  }
}

// Adjoint of im2col: dx[ci, t + k - pad_left] += dcol[(ci*K + k), t]; dx overwritten.
template <class T>
static void col2im(const T* dcol, T* dx, const Conv1dDims& d) {
  const int Tout = d.Tout();
  std::fill(dx, dx + static_cast<int64_t>(d.Cin) * d.Tin, T(0));
  for (int ci = 0; ci < d.Cin; ++ci) {
    T* xr = dx + static_cast<int64_t>(ci) * d.Tin;
    for (int k = 0; k < d.K; ++k) {
      const T* cr = dcol + (static_cast<int64_t>(ci) * d.K + k) * Tout;
      const int shift = k - d.pad_left;
      const int t0 = std::clamp(-shift, 0, Tout);
      const int t1 = std::clamp(d.Tin - shift, t0, Tout);
      for (int t = t0; t < t1; ++t) xr[t + shift] += cr[t];
    }
  }
}

template <class T>
void conv1d_forward_cpu(const T* x, const T* w, const T* b, T* y, const Conv1dDims& d) {
  const int Tout = d.Tout();
  const int CK = d.Cin * d.K;
#pragma omp parallel
  {
    std::vector<T> col(static_cast<size_t>(CK) * Tout);
#pragma omp for schedule(static)
    for (int bi = 0; bi < d.B; ++bi) {
      const T* xb = x + static_cast<int64_t>(bi) * d.Cin * d.Tin;
      T* yb = y + static_cast<int64_t>(bi) * d.Cout * Tout;
      for (int co = 0; co < d.Cout; ++co) std::fill(yb + static_cast<int64_t>(co) * Tout, yb + static_cast<int64_t>(co + 1) * Tout, b[co]);
      im2col(xb, col.data(), d);
      // y_b [Cout, Tout] += w [Cout, CK] @ col [CK, Tout]
      gemm(false, false, d.Cout, Tout, CK, T(1), w, CK, col.data(), Tout, T(1), yb, Tout);
    }
  }
}

// Clips are reduced into a fixed number of chunk partials, then the partials are summed in
// chunk order: the weight gradient is bit-identical whatever the OpenMP thread count.
static constexpr int kGradChunks = 16;

template <class T>
void conv1d_backward_cpu(const T* dy, const T* x, const T* w, T* dx, T* dw, T* db,
                         const Conv1dDims& d) {
  const int Tout = d.Tout();
  const int CK = d.Cin * d.K;
  const int nchunks = std::min(d.B, kGradChunks);
  const int64_t wsize = static_cast<int64_t>(d.Cout) * CK;
  std::vector<T> dw_part(static_cast<size_t>(nchunks) * wsize, T(0));
  std::vector<T> db_part(static_cast<size_t>(nchunks) * d.Cout, T(0));
#pragma omp parallel
  {
    std::vector<T> col(static_cast<size_t>(CK) * Tout);
    std::vector<T> dcol(dx ? static_cast<size_t>(CK) * Tout : 0);
#pragma omp for schedule(static)
    for (int c = 0; c < nchunks; ++c) {
      const int b0 = static_cast<int>(static_cast<int64_t>(d.B) * c / nchunks);
      const int b1 = static_cast<int>(static_cast<int64_t>(d.B) * (c + 1) / nchunks);
      T* dwc = dw_part.data() + c * wsize;
      T* dbc = db_part.data() + static_cast<int64_t>(c) * d.Cout;
      for (int bi = b0; bi < b1; ++bi) {
        const T* xb = x + static_cast<int64_t>(bi) * d.Cin * d.Tin;
        const T* dyb = dy + static_cast<int64_t>(bi) * d.Cout * Tout;
        im2col(xb, col.data(), d);
        // dw [Cout, CK] += dy_b [Cout, Tout] @ col^T [Tout, CK]
        gemm(false, true, d.Cout, CK, Tout, T(1), dyb, Tout, col.data(), Tout, T(1), dwc, CK);
        for (int co = 0; co < d.Cout; ++co) {
          const T* r = dyb + static_cast<int64_t>(co) * Tout;
          T s = 0;
          for (int t = 0; t < Tout; ++t) s += r[t];
          dbc[co] += s;
        }
        if (dx) {
          // dcol [CK, Tout] = w^T [CK, Cout] @ dy_b [Cout, Tout]
          gemm(true, false, CK, Tout, d.Cout, T(1), w, CK, dyb, Tout, T(0), dcol.data(), Tout);
          col2im(dcol.data(), dx + static_cast<int64_t>(bi) * d.Cin * d.Tin, d);
        }
      }
    }
  }
  // Fixed-order reduction of the partials, parallel over weight elements.
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < wsize; ++i) {
    T s = 0;
    for (int c = 0; c < nchunks; ++c) s += dw_part[c * wsize + i];
    dw[i] += s;
  }
  for (int co = 0; co < d.Cout; ++co) {
    T s = 0;
    for (int c = 0; c < nchunks; ++c) s += db_part[static_cast<int64_t>(c) * d.Cout + co];
    db[co] += s;
  }
}

template void conv1d_forward_cpu<float>(const float*, const float*, const float*, float*, const Conv1dDims&);
template void conv1d_forward_cpu<double>(const double*, const double*, const double*, double*, const Conv1dDims&);
template void conv1d_backward_cpu<float>(const float*, const float*, const float*, float*, float*, float*, const Conv1dDims&);
template void conv1d_backward_cpu<double>(const double*, const double*, const double*, double*, double*, double*, const Conv1dDims&);

}  // namespace mg
