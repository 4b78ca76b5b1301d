// The CPU backend: thin dispatch to the kernels/*_cpu.cpp oracles, which parallelise with
// OpenMP and use single-threaded OpenBLAS GEMMs inside their parallel loops.
#include <omp.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <new>
#include <span>
#include <stdexcept>
#include <tuple>

#include "engine/backend.h"
#include "engine/retrieval_metrics.h"
#include "kernels/activation_cpu.h"
#include "kernels/bf16_cpu.h"
#include "kernels/blas.h"
#include "kernels/dropout_cpu.h"
#include "kernels/fill_cpu.h"
#include "kernels/linear_cpu.h"
#include "kernels/pool_cpu.h"
#include "kernels/reduce_cpu.h"
#include "kernels/topk_cpu.h"

namespace mg {

namespace {

auto mel_key(const MelParams& p) {
  return std::make_tuple(p.sample_rate, p.n_fft, p.hop, p.n_mels, p.f_min, p.f_max, static_cast<int>(p.scale),
                         static_cast<int>(p.norm), p.power, p.log_eps);
}

// An empty copy may come with a null pointer (an empty vector's data()), which memcpy may not
// be given even for 0 bytes.
void copy_bytes(void* dst, const void* src, size_t bytes) {
  if (bytes > 0) std::memcpy(dst, src, bytes);
}

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int threads) {
    if (threads > 0) omp_set_num_threads(threads);
    threads_ = omp_get_max_threads();
    blas_set_threads(1);
  }

  Device device() const override { return Device::CPU; }
  std::string describe() const override {
    return "cpu (" + std::to_string(threads_) + " OpenMP threads, OpenBLAS)";
  }

  void* alloc_bytes(size_t bytes) override {
    const size_t rounded = (bytes + 255) / 256 * 256;
    void* p = std::aligned_alloc(256, rounded ? rounded : 256);
    if (!p) throw std::bad_alloc();
    return p;
  }
  void free_bytes(void* p) override { std::free(p); }
  void to_device(void* dst, const void* src, size_t bytes) override { copy_bytes(dst, src, bytes); }
  void to_host(void* dst, const void* src, size_t bytes) override { copy_bytes(dst, src, bytes); }
  void copy(void* dst, const void* src, size_t bytes) override { copy_bytes(dst, src, bytes); }
  void fill(float* p, int64_t n, float value) override { fill_cpu(p, n, value); }
  void synchronize() override {}

  void fill_uniform(float* p, int64_t n, float lo, float hi, uint64_t seed, uint64_t stream) override {
    fill_uniform_cpu(p, n, lo, hi, seed, stream);
  }

  void mel_forward(const float* audio, float* out, int B, int64_t S, const MelParams& p) override {
    auto key = mel_key(p);
    auto it = mel_.find(key);
    if (it == mel_.end()) it = mel_.emplace(key, std::make_unique<MelCpu>(p)).first;
    it->second->forward(audio, out, B, S);
  }
  void conv1d_forward(const float* x, const float* w, const float* b, float* y, const Conv1dDims& d,
                      Precision prec) override {
    if (prec == Precision::BF16)
      conv1d_forward_bf16_cpu(x, w, b, y, d);
    else
      conv1d_forward_cpu(x, w, b, y, d);
  }
  void conv1d_backward(const float* dy, const float* x, const float* w, float* dx, float* dw, float* db,
                       const Conv1dDims& d, Precision prec) override {
    if (prec == Precision::BF16)
      conv1d_backward_bf16_cpu(dy, x, w, dx, dw, db, d);
    else
      conv1d_backward_cpu(dy, x, w, dx, dw, db, d);
  }
  void relu_forward(const float* x, float* y, int64_t n) override { relu_forward_cpu(x, y, n); }
  void relu_backward(const float* dy, const float* y, float* dx, int64_t n) override {
    relu_backward_cpu(dy, y, dx, n);
  }
  void maxpool_forward(const float* x, float* y, int64_t rows, int Tin, int w) override {
    maxpool1d_forward_cpu(x, y, rows, Tin, w);
  }
  void maxpool_backward(const float* dy, const float* x, float* dx, int64_t rows, int Tin, int w) override {
    maxpool1d_backward_cpu(dy, x, dx, rows, Tin, w);
  }
  void mean_time_forward(const float* x, float* y, int64_t rows, int Tn, const RowOut& out) override {
    mean_time_forward_cpu(x, y, rows, Tn, out);
  }
  void mean_time_backward(const float* dy, float* dx, int64_t rows, int Tn, const RowOut& out,
                          bool accumulate) override {
    mean_time_backward_cpu(dy, dx, rows, Tn, out, accumulate);
  }
  void max_time_forward(const float* x, float* y, int64_t rows, int Tn, const RowOut& out) override {
    max_time_forward_cpu(x, y, rows, Tn, out);
  }
  void max_time_backward(const float* dy, const float* x, float* dx, int64_t rows, int Tn, const RowOut& out,
                         bool accumulate) override {
    max_time_backward_cpu(dy, x, dx, rows, Tn, out, accumulate);
  }
  void l2_time_forward(const float* x, float* y, int64_t rows, int Tn, const RowOut& out) override {
    l2_time_forward_cpu(x, y, rows, Tn, out);
  }
  void l2_time_backward(const float* dy, const float* x, float* dx, int64_t rows, int Tn, const RowOut& out,
                        bool accumulate) override {
    l2_time_backward_cpu(dy, x, dx, rows, Tn, out, accumulate);
  }
  void dropout_forward(const float* x, float* y, float* mask, int64_t n, double p, const uint64_t* rng) override {
    dropout_forward_cpu(x, y, mask, n, p, rng[0], rng[1]);  // "device" memory is host memory here
  }
  void dropout_backward(const float* dy, const float* mask, float* dx, int64_t n) override {
    dropout_backward_cpu(dy, mask, dx, n);
  }
  void band_norm_forward(const float* x, const float* mean, const float* std, float* y, int64_t B, int C,
                         int64_t Tn) override {
    band_norm_forward_cpu(x, mean, std, y, B, C, Tn);
  }
  void batchnorm_forward(const float* x, const float* gamma, const float* beta, float* y, float* running_mean,
                         float* running_var, int B, int D, const BatchNormParams& p, bool training) override {
    if (training)
      batchnorm_forward_train_cpu(x, gamma, beta, y, running_mean, running_var, B, D, p);
    else
      batchnorm_forward_eval_cpu(x, gamma, beta, running_mean, running_var, y, B, D, p);
  }
  void batchnorm_backward(const float* dy, const float* x, const float* gamma, float* dx, float* dgamma, float* dbeta,
                          int B, int D, const BatchNormParams& p) override {
    batchnorm_backward_cpu(dy, x, gamma, dx, dgamma, dbeta, B, D, p);
  }
  void linear_forward(const float* x, const float* w, const float* b, float* y, int B, int C, int E,
                      Precision prec) override {
    if (prec == Precision::BF16)
      linear_forward_bf16_cpu(x, w, b, y, B, C, E);
    else
      linear_forward_cpu(x, w, b, y, B, C, E);
  }
  void linear_backward(const float* dy, const float* x, const float* w, float* dx, float* dw, float* db, int B, int C,
                       int E, Precision prec) override {
    if (prec == Precision::BF16)
      linear_backward_bf16_cpu(dy, x, w, dx, dw, db, B, C, E);
    else
      linear_backward_cpu(dy, x, w, dx, dw, db, B, C, E);
  }
  void l2norm_forward(const float* x, float* y, int B, int E, double eps) override {
    l2norm_forward_cpu(x, y, B, E, eps);
  }
  void l2norm_backward(const float* dy, const float* x, const float* y, float* dx, int B, int E,
                       double eps) override {
    l2norm_backward_cpu(dy, x, y, dx, B, E, eps);
  }
  void triplet_loss(const float* emb, const int32_t* triplets, int n_triplets, int N, int E,
                    const TripletLossParams& p, float* stats, float* demb) override {
    const TripletLossResult r = triplet_loss_cpu(emb, triplets, n_triplets, N, E, p, demb);
    stats[0] = static_cast<float>(r.loss);
    stats[1] = static_cast<float>(r.active);
  }
  void contrastive_loss(const float* emb, const uint8_t* hops, int N, int E, const ContrastiveLossParams& p,
                        float* stats, float* demb, void* /*workspace*/) override {
    if (N > kMaxContrastiveRows)  // the CUDA backend's limit, so both accept the same batches
      throw std::invalid_argument("contrastive_loss: " + std::to_string(N) + " rows; at most " +
                                  std::to_string(kMaxContrastiveRows) + " (the valid count travels as a float)");
    const ContrastiveLossResult r = contrastive_loss_cpu(emb, hops, N, E, p, demb);
    stats[0] = static_cast<float>(r.loss);
    stats[1] = static_cast<float>(r.valid);
  }
  void mine_triplets(const float* emb, const uint8_t* hops, int B, int E, const MiningParams& p, int32_t* triplets,
                     float* counts) override {
    if (B > kMaxMiningAnchors)  // the CUDA backend's limit, so both accept the same batches
      throw std::invalid_argument("mine_triplets: " + std::to_string(B) + " anchors; at most " +
                                  std::to_string(kMaxMiningAnchors) + " per batch (the float counts must stay exact)");
    const MiningCounts c = mine_triplets_cpu(emb, hops, B, E, p, triplets);
    counts[0] = static_cast<float>(c.valid);
    counts[1] = static_cast<float>(c.candidates);
  }
  void topk_cosine(const float* queries, int64_t Q, const float* items, int64_t N, int D, int k,
                   const int32_t* exclude, int32_t* out_items, float* out_sims) override {
    const std::span<const int32_t> ex = exclude ? std::span<const int32_t>(exclude, static_cast<size_t>(Q))
                                                : std::span<const int32_t>();
    mg::topk_cosine(queries, Q, items, N, D, k, ex, out_items, out_sims);
  }
  void adam_step(float* p, const float* g, float* m, float* v, int64_t n, const AdamParams& a,
                 const double* scalars) override {
    AdamParams at = a;
    at.lr = scalars[0];
    adam_step_cpu(p, g, m, v, n, at, static_cast<int64_t>(scalars[1]));
  }
  void clip_grad_norm(float* g, int64_t n, double max_norm, float* norm_out) override {
    norm_out[0] = static_cast<float>(max_norm > 0 ? clip_grad_norm_cpu(g, n, max_norm) : global_norm_cpu(g, n));
  }

 private:
  int threads_ = 1;
  std::map<decltype(mel_key(MelParams{})), std::unique_ptr<MelCpu>> mel_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(int threads) { return std::make_unique<CpuBackend>(threads); }

}  // namespace mg
