// Batch normalisation over the rows of x [B, D] (torch.nn.BatchNorm1d on [B, D]): each
// feature j is standardised by statistics over the batch, then scaled and shifted.
//
// Training:  mu_j = mean_b x_bj,  var_j = mean_b (x_bj - mu_j)^2  (biased),
//            inv_j = 1 / sqrt(var_j + eps),  xhat_bj = (x_bj - mu_j) inv_j,
//            y_bj = gamma_j xhat_bj + beta_j;
//            running_mean_j <- (1 - m) running_mean_j + m mu_j,
//            running_var_j  <- (1 - m) running_var_j + m var_j B / (B - 1)  (unbiased, as torch).
//            B >= 2 (one row has no variance).
// Eval:      y_bj = gamma_j (x_bj - running_mean_j) / sqrt(running_var_j + eps) + beta_j.
// Backward (training statistics, recomputed from x in double rather than saved in float: a
// float mean would cost ulp(mu) / std of relative error in xhat, large for features whose mean
// dwarfs their spread; dx overwritten, may be null; dgamma and dbeta accumulated):
//            dbeta_j += sum_b dy_bj,  dgamma_j += sum_b dy_bj xhat_bj,
//            dx_bj = gamma_j inv_j (dy_bj - dbeta'_j / B - xhat_bj dgamma'_j / B)
//            with dbeta', dgamma' this call's sums.
//
// Sums run over b in increasing order in double, so the CPU is deterministic; the CUDA kernel
// sums the same terms in another fixed order (deterministic, within double rounding).
#pragma once
#include <cstdint>

namespace mg {

struct BatchNormParams {
  double eps = 1e-5;       // torch's default
  double momentum = 0.1;   // torch's default
};

template <class T>
void batchnorm_forward_train_cpu(const T* x, const T* gamma, const T* beta, T* y, T* running_mean, T* running_var,
                                 int B, int D, const BatchNormParams& p);
template <class T>
void batchnorm_forward_eval_cpu(const T* x, const T* gamma, const T* beta, const T* running_mean,
                                const T* running_var, T* y, int B, int D, const BatchNormParams& p);
template <class T>
void batchnorm_backward_cpu(const T* dy, const T* x, const T* gamma, T* dx, T* dgamma, T* dbeta, int B, int D,
                            const BatchNormParams& p);

// Shapes and parameters both backends accept: B >= 1 (>= 2 when training), D >= 1, eps finite
// and > 0, momentum in [0, 1]. Throws std::invalid_argument naming what is wrong.
void check_batchnorm(int B, int D, const BatchNormParams& p, bool training);

}  // namespace mg
