#include "kernels/batchnorm_cpu.h"

#include <cmath>
#include <stdexcept>
#include <string>

namespace mg {

namespace {

// The batch statistics of column j: mean and 1 / sqrt(var + eps), two passes in double.
template <class T>
void column_stats(const T* x, int B, int D, int j, double eps, double* mu, double* var, double* inv) {
  double s = 0;
  for (int b = 0; b < B; ++b) s += static_cast<double>(x[static_cast<int64_t>(b) * D + j]);
  *mu = s / B;
  double ss = 0;
  for (int b = 0; b < B; ++b) {
    const double c = static_cast<double>(x[static_cast<int64_t>(b) * D + j]) - *mu;
    ss += c * c;
  }
  *var = ss / B;
  *inv = 1.0 / std::sqrt(*var + eps);
}

}  // namespace

void check_batchnorm(int B, int D, const BatchNormParams& p, bool training) {
  if (B < (training ? 2 : 1) || D < 1)
    throw std::invalid_argument("batchnorm: need D >= 1 and B >= " + std::string(training ? "2 in training" : "1") +
                                " (a batch of one row has no variance); got B " + std::to_string(B) + ", D " +
                                std::to_string(D));
  if (!(p.eps > 0) || !std::isfinite(p.eps))
    throw std::invalid_argument("batchnorm: eps must be finite and > 0 (got " + std::to_string(p.eps) + ")");
  if (!(p.momentum >= 0 && p.momentum <= 1))
    throw std::invalid_argument("batchnorm: momentum must be in [0, 1] (got " + std::to_string(p.momentum) + ")");
}

template <class T>
void batchnorm_forward_train_cpu(const T* x, const T* gamma, const T* beta, T* y, T* running_mean, T* running_var,
                                 int B, int D, const BatchNormParams& p) {
  check_batchnorm(B, D, p, true);
  const auto at = [D](int b, int j) { return static_cast<int64_t>(b) * D + j; };
  for (int j = 0; j < D; ++j) {
    double mu, var, inv;
    column_stats(x, B, D, j, p.eps, &mu, &var, &inv);
    for (int b = 0; b < B; ++b)
      y[at(b, j)] = static_cast<T>(static_cast<double>(gamma[j]) * ((static_cast<double>(x[at(b, j)]) - mu) * inv) +
                                   static_cast<double>(beta[j]));
    running_mean[j] = static_cast<T>((1 - p.momentum) * static_cast<double>(running_mean[j]) + p.momentum * mu);
    running_var[j] = static_cast<T>((1 - p.momentum) * static_cast<double>(running_var[j]) +
                                    p.momentum * var * B / (B - 1));
  }
}

template <class T>
void batchnorm_forward_eval_cpu(const T* x, const T* gamma, const T* beta, const T* running_mean,
                                const T* running_var, T* y, int B, int D, const BatchNormParams& p) {
  check_batchnorm(B, D, p, false);
  for (int j = 0; j < D; ++j) {
    const double inv = 1.0 / std::sqrt(static_cast<double>(running_var[j]) + p.eps);
    const double mu = running_mean[j];
    for (int b = 0; b < B; ++b) {
      const int64_t i = static_cast<int64_t>(b) * D + j;
      y[i] = static_cast<T>(static_cast<double>(gamma[j]) * ((static_cast<double>(x[i]) - mu) * inv) +
                            static_cast<double>(beta[j]));
    }
  }
}

template <class T>
void batchnorm_backward_cpu(const T* dy, const T* x, const T* gamma, T* dx, T* dgamma, T* dbeta, int B, int D,
                            const BatchNormParams& p) {
  check_batchnorm(B, D, p, true);
  for (int j = 0; j < D; ++j) {
    double mu, var, inv;
    column_stats(x, B, D, j, p.eps, &mu, &var, &inv);
    double sum_dy = 0, sum_dy_xhat = 0;
    for (int b = 0; b < B; ++b) {
      const int64_t i = static_cast<int64_t>(b) * D + j;
      const double g = dy[i];
      sum_dy += g;
      sum_dy_xhat += g * (static_cast<double>(x[i]) - mu) * inv;
    }
    dbeta[j] = static_cast<T>(static_cast<double>(dbeta[j]) + sum_dy);
    dgamma[j] = static_cast<T>(static_cast<double>(dgamma[j]) + sum_dy_xhat);
    if (!dx) continue;
    const double scale = static_cast<double>(gamma[j]) * inv;
    for (int b = 0; b < B; ++b) {
      const int64_t i = static_cast<int64_t>(b) * D + j;
      const double xhat = (static_cast<double>(x[i]) - mu) * inv;
      dx[i] = static_cast<T>(scale * (static_cast<double>(dy[i]) - sum_dy / B - xhat * sum_dy_xhat / B));
    }
  }
}

template void batchnorm_forward_train_cpu<float>(const float*, const float*, const float*, float*, float*, float*,
                                                 int, int, const BatchNormParams&);
template void batchnorm_forward_train_cpu<double>(const double*, const double*, const double*, double*, double*,
                                                  double*, int, int, const BatchNormParams&);
template void batchnorm_forward_eval_cpu<float>(const float*, const float*, const float*, const float*, const float*,
                                                float*, int, int, const BatchNormParams&);
template void batchnorm_forward_eval_cpu<double>(const double*, const double*, const double*, const double*,
                                                 const double*, double*, int, int, const BatchNormParams&);
template void batchnorm_backward_cpu<float>(const float*, const float*, const float*, float*, float*, float*, int, int,
                                            const BatchNormParams&);
template void batchnorm_backward_cpu<double>(const double*, const double*, const double*, double*, double*, double*,
                                             int, int, const BatchNormParams&);

}  // namespace mg
