#include "engine/report/pca.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>

#include "kernels/philox.h"

namespace mg::report {

namespace {

constexpr uint64_t kPcaStream = 0x706361ull;  // "pca": the starting vectors' random stream

// Symmetric d x d covariance (row-major) of the rows about `mean`, divisor n - 1 (0 for n = 1).
std::vector<double> covariance(const float* rows, int64_t n, int d, const std::vector<double>& mean) {
  const auto ud = static_cast<size_t>(d);
  std::vector<double> c(ud * ud, 0.0), x(ud);
  for (int64_t r = 0; r < n; ++r) {
    const float* row = rows + static_cast<size_t>(r) * ud;
    for (size_t i = 0; i < ud; ++i) x[i] = static_cast<double>(row[i]) - mean[i];
    for (size_t i = 0; i < ud; ++i) {
      const double xi = x[i];
      double* ci = c.data() + i * ud;
      for (size_t j = i; j < ud; ++j) ci[j] += xi * x[j];
    }
  }
  const double scale = n > 1 ? 1.0 / static_cast<double>(n - 1) : 0.0;
  for (size_t i = 0; i < ud; ++i) {
    for (size_t j = i; j < ud; ++j) {
      c[i * ud + j] *= scale;
      c[j * ud + i] = c[i * ud + j];
    }
  }
  return c;
}

double dot(const double* a, const double* b, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

// Makes the p columns of v ([p][d]) orthonormal (modified Gram-Schmidt, twice for accuracy); a
// column that has collapsed into the span of the others is replaced by a fresh random one.
void orthonormalize(std::vector<double>& v, size_t p, size_t d, uint64_t* draws) {
  for (size_t k = 0; k < p; ++k) {
    double* vk = v.data() + k * d;
    for (int attempt = 0;; ++attempt) {
      const double before = std::sqrt(dot(vk, vk, d));
      for (int pass = 0; pass < 2; ++pass) {
        for (size_t j = 0; j < k; ++j) {
          const double* vj = v.data() + j * d;
          const double a = dot(vj, vk, d);
          for (size_t i = 0; i < d; ++i) vk[i] -= a * vj[i];
        }
      }
      const double norm = std::sqrt(dot(vk, vk, d));
      if (norm > 1e-10 * before && norm > 0) {
        for (size_t i = 0; i < d; ++i) vk[i] /= norm;
        break;
      }
      if (attempt > 8) throw std::logic_error("principal_axes: cannot complete an orthonormal basis");
      for (size_t i = 0; i < d; ++i) vk[i] = philox_uniform(0, kPcaStream, (*draws)++) - 0.5;
    }
  }
}

// Eigen-decomposition of a small symmetric matrix a ([p][p], destroyed) by cyclic Jacobi
// rotations. Returns the eigenvalues; q ([p][p], row i = component i of every eigenvector:
// column k is eigenvector k) receives the eigenvectors.
std::vector<double> jacobi_eigen(std::vector<double> a, size_t p, std::vector<double>& q) {
  q.assign(p * p, 0.0);
  for (size_t i = 0; i < p; ++i) q[i * p + i] = 1;
  for (int sweep = 0; sweep < 100; ++sweep) {
    double off = 0, diag = 0;
    for (size_t i = 0; i < p; ++i) {
      diag += a[i * p + i] * a[i * p + i];
      for (size_t j = i + 1; j < p; ++j) off += a[i * p + j] * a[i * p + j];
    }
    if (off <= 1e-30 * diag || off == 0) break;
    for (size_t r = 0; r < p; ++r) {
      for (size_t s = r + 1; s < p; ++s) {
        const double ars = a[r * p + s];
        if (ars == 0) continue;
        const double theta = (a[s * p + s] - a[r * p + r]) / (2 * ars);
        const double t = (theta >= 0 ? 1.0 : -1.0) / (std::abs(theta) + std::sqrt(theta * theta + 1));
        const double c = 1 / std::sqrt(t * t + 1), sn = t * c;
        for (size_t k = 0; k < p; ++k) {  // columns r and s of a
          const double akr = a[k * p + r], aks = a[k * p + s];
          a[k * p + r] = c * akr - sn * aks;
          a[k * p + s] = sn * akr + c * aks;
        }
        for (size_t k = 0; k < p; ++k) {  // rows r and s
          const double ark = a[r * p + k], ask = a[s * p + k];
          a[r * p + k] = c * ark - sn * ask;
          a[s * p + k] = sn * ark + c * ask;
        }
        for (size_t k = 0; k < p; ++k) {
          const double qkr = q[k * p + r], qks = q[k * p + s];
          q[k * p + r] = c * qkr - sn * qks;
          q[k * p + s] = sn * qkr + c * qks;
        }
      }
    }
  }
  std::vector<double> w(p);
  for (size_t i = 0; i < p; ++i) w[i] = a[i * p + i];
  return w;
}

// out[k] = c . v[k] for the p columns.
void multiply(const std::vector<double>& c, const std::vector<double>& v, std::vector<double>& out, size_t p,
              size_t d) {
  out.assign(p * d, 0.0);
  for (size_t i = 0; i < d; ++i) {
    const double* ci = c.data() + i * d;
    for (size_t k = 0; k < p; ++k) out[k * d + i] = dot(ci, v.data() + k * d, d);
  }
}

// Columns of v rotated by q: column k becomes sum_j v[j] q[j][k], reordered by `order`.
std::vector<double> rotate(const std::vector<double>& v, const std::vector<double>& q, const std::vector<size_t>& order,
                           size_t p, size_t d) {
  std::vector<double> out(p * d, 0.0);
  for (size_t k = 0; k < p; ++k) {
    double* o = out.data() + k * d;
    for (size_t j = 0; j < p; ++j) {
      const double w = q[j * p + order[k]];
      const double* vj = v.data() + j * d;
      for (size_t i = 0; i < d; ++i) o[i] += w * vj[i];
    }
  }
  return out;
}

}  // namespace

PrincipalAxes principal_axes(const float* rows, int64_t n, int d, int count) {
  if (n < 1 || d < 1 || count < 1 || count > d)
    throw std::invalid_argument("principal_axes: need n >= 1, d >= 1 and 1 <= count <= d (got n " + std::to_string(n) +
                                ", d " + std::to_string(d) + ", count " + std::to_string(count) + ")");
  const auto ud = static_cast<size_t>(d);
  PrincipalAxes r;
  r.dim = d;
  r.mean.assign(ud, 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (size_t j = 0; j < ud; ++j) r.mean[j] += rows[static_cast<size_t>(i) * ud + j];
  for (double& m : r.mean) m /= static_cast<double>(n);
  const std::vector<double> c = covariance(rows, n, d, r.mean);
  for (size_t i = 0; i < ud; ++i) r.total_variance += c[i * ud + i];

  const size_t want = static_cast<size_t>(count);
  const size_t p = std::min(ud, want + 6);
  uint64_t draws = 0;
  std::vector<double> v(p * ud), w, q;
  for (double& x : v) x = philox_uniform(0, kPcaStream, draws++) - 0.5;
  orthonormalize(v, p, ud, &draws);
  std::vector<double> theta(p, 0.0);
  for (r.iterations = 1; r.iterations <= kPcaMaxIterations; ++r.iterations) {
    multiply(c, v, w, p, ud);
    std::vector<double> h(p * p);  // the Rayleigh quotient matrix V' C V
    for (size_t a = 0; a < p; ++a)
      for (size_t b = 0; b < p; ++b) h[a * p + b] = dot(v.data() + a * ud, w.data() + b * ud, ud);
    for (size_t a = 0; a < p; ++a)
      for (size_t b = a + 1; b < p; ++b) h[a * p + b] = h[b * p + a] = (h[a * p + b] + h[b * p + a]) / 2;
    const std::vector<double> ev = jacobi_eigen(h, p, q);
    std::vector<size_t> order(p);
    std::iota(order.begin(), order.end(), size_t{0});
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ev[a] > ev[b]; });
    v = rotate(v, q, order, p, ud);
    w = rotate(w, q, order, p, ud);
    for (size_t k = 0; k < p; ++k) theta[k] = ev[order[k]];
    double worst = 0;
    for (size_t k = 0; k < want; ++k) {
      double res = 0;
      for (size_t i = 0; i < ud; ++i) {
        const double e = w[k * ud + i] - theta[k] * v[k * ud + i];
        res += e * e;
      }
      worst = std::max(worst, std::sqrt(res));
    }
    if (worst <= kPcaTolerance * std::max(theta[0], 0.0)) {
      r.converged = true;
      break;
    }
    v = w;
    orthonormalize(v, p, ud, &draws);
  }
  r.iterations = std::min(r.iterations, kPcaMaxIterations);
  for (size_t k = 0; k < want; ++k) {
    std::vector<double> axis(v.begin() + static_cast<std::ptrdiff_t>(k * ud),
                             v.begin() + static_cast<std::ptrdiff_t>((k + 1) * ud));
    const auto big =
        std::max_element(axis.begin(), axis.end(), [](double a, double b) { return std::abs(a) < std::abs(b); });
    if (*big < 0)
      for (double& x : axis) x = -x;
    r.axes.push_back(std::move(axis));
    r.variance.push_back(std::max(theta[k], 0.0));
  }
  return r;
}

std::vector<double> project(const PrincipalAxes& p, const float* row) {
  std::vector<double> out;
  for (const std::vector<double>& axis : p.axes) {
    double s = 0;
    for (size_t i = 0; i < axis.size(); ++i) s += (static_cast<double>(row[i]) - p.mean[i]) * axis[i];
    out.push_back(s);
  }
  return out;
}

}  // namespace mg::report
