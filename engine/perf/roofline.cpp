#include "engine/perf/roofline.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "engine/model_plan.h"
#include "kernels/blas.h"

namespace mg {

namespace {

constexpr double kF32 = 4.0;  // bytes per float

double d(int64_t v) { return static_cast<double>(v); }
double macs(const Conv1dDims& c) { return d(c.B) * c.Cout * c.Cin * c.K * c.Tout(); }

}  // namespace

double conv_forward_flops(const Conv1dDims& c) { return 2 * macs(c) + d(c.B) * c.Cout * c.Tout(); }
double conv_backward_data_flops(const Conv1dDims& c) { return 2 * macs(c); }
double conv_backward_filter_flops(const Conv1dDims& c) { return 2 * macs(c) + d(c.B) * c.Cout * c.Tout(); }

double fft_flops(int n) { return 2.5 * n * std::log2(static_cast<double>(n)); }

double mel_flops(const MelParams& p, int B, int64_t S, int64_t filter_nonzeros) {
  const double per_frame = p.n_fft + fft_flops(p.n_fft) + 3.0 * p.n_freqs() + 2.0 * d(filter_nonzeros) + 2.0 * p.n_mels;
  return d(B) * mel_frames(S, p.hop) * per_frame;
}

double linear_forward_flops(int B, int C, int E) { return 2 * d(B) * C * E + d(B) * E; }
double linear_backward_flops(int B, int C, int E) { return 4 * d(B) * C * E + d(B) * E; }
double l2norm_forward_flops(int B, int E) { return 3 * d(B) * E; }
double l2norm_backward_flops(int B, int E) { return 5 * d(B) * E; }
double triplet_loss_flops(int n_triplets, int E, bool swap) { return d(n_triplets) * E * (swap ? 14 : 12); }

double contrastive_loss_flops(int N, int E) { return 6 * d(N) * N * E + 2 * d(N) * N; }
double batchnorm_forward_flops(int B, int D) { return 5 * d(B) * D; }
double batchnorm_backward_flops(int B, int D) { return 8 * d(B) * D; }
double band_norm_flops(int64_t n) { return 2 * d(n); }

double adam_flops(int64_t n_params, const OptimConfig& o) {
  double per = 14;
  if (o.adam.weight_decay > 0) per += 2;
  if (o.clip_norm > 0) per += 3;
  return d(n_params) * per;
}

double StepCost::flops() const {
  double s = 0;
  for (const auto& p : parts) s += p.flops;
  return s;
}

double StepCost::bytes() const {
  double s = 0;
  for (const auto& p : parts) s += p.bytes;
  return s;
}

StepCost training_step_cost(const Config& c, int batch, int n_triplets) {
  const ModelPlan plan = make_model_plan(c, batch);
  const MelFilterbank fb = make_mel_filterbank(c.mel);
  const int B = batch;
  const double logmel = d(B) * plan.n_mels * plan.frames;  // floats

  CostPart mel{"mel", mel_flops(c.mel, B, plan.samples, static_cast<int64_t>(fb.weights.size())),
               kF32 * (d(B) * d(plan.samples) + logmel)};  // audio read, log-mel written
  if (plan.input_norm) {  // the log-mel read again, the standardised copy written
    mel.flops += band_norm_flops(static_cast<int64_t>(logmel));
    mel.bytes += kF32 * 2 * logmel;
  }

  // Conv stack: reads the log-mel; every tensor it makes and its gradient is written and read
  // once inside the stack, except the last stage's output (written here, read by the head)
  // and its gradient (written by the head, read here).
  CostPart conv{"conv stack fwd+bwd", 0, kF32 * logmel};
  double conv_params = 0;
  for (size_t i = 0; i < plan.stages.size(); ++i) {
    const StagePlan& s = plan.stages[i];
    Conv1dDims cd = s.conv;
    cd.B = B;
    const double conv_out = d(B) * cd.Cout * s.t_conv, pooled = d(B) * cd.Cout * s.t_out;
    const bool last = i + 1 == plan.stages.size();
    conv.flops += conv_forward_flops(cd) + conv_out;  // + ReLU
    conv.flops += conv_backward_filter_flops(cd) + conv_out;
    if (i > 0) conv.flops += conv_backward_data_flops(cd);  // the log-mel needs no gradient
    if (s.pool) conv.flops += pooled * (c.model.pool - 1) + conv_out;  // max over the window; routing back
    conv_params += d(cd.Cout) * cd.Cin * cd.K + cd.Cout;
    // Activations and their gradients: conv output (x2 with its gradient), pool output.
    conv.bytes += kF32 * (last ? 1 : 2) * 2 * pooled;  // the stage's output and its gradient
    if (s.pool) conv.bytes += kF32 * 2 * 2 * conv_out;  // the conv output before pooling, and its gradient
  }
  conv.bytes += kF32 * 2 * conv_params;  // weights read, gradients written

  // Head: global pooling (k features per channel: mean, max, L2 over time; 1 FLOP per input
  // element each, forward and backward), dropout (1 per element each way), linear, L2, loss.
  // The pooling reads the last stage's output (model.pool_stages = all: every stage's).
  const int E = plan.embedding, D = plan.head_width(), k = plan.pooled_features();
  double pooled_in = 0;  // elements per clip the global pooling reads
  for (size_t i = plan.first_pooled_stage(); i < plan.stages.size(); ++i)
    pooled_in += d(plan.stages[i].conv.Cout) * plan.stages[i].t_out;
  const bool dropped = plan.dropout > 0;
  CostPart head{"head + loss", 0, 0};
  const bool contrastive = c.loss.name == LossKind::Contrastive;
  head.flops = 2.0 * k * d(B) * pooled_in + (dropped ? 2.0 * d(B) * D : 0.0) + linear_forward_flops(B, D, E) +
               linear_backward_flops(B, D, E) + l2norm_forward_flops(B, E) + l2norm_backward_flops(B, E) +
               (contrastive ? contrastive_loss_flops(B, E) : triplet_loss_flops(n_triplets, E, c.loss.swap));
  if (plan.head_norm) head.flops += batchnorm_forward_flops(B, D) + batchnorm_backward_flops(B, D);
  // The pooled stages' outputs read, their gradients written; the pooled features (and with dropout
  // the dropped ones, and the mask written and read), linear and embedding, and their
  // gradients, written and read once each; the linear layer's weights read, gradients written.
  const double linear_params = d(E) * D + E + (plan.head_norm ? 2.0 * D : 0.0);  // with batch norm's scale and shift
  const double head_acts = d(B) * D * (1 + (dropped ? 1 : 0) + (plan.head_norm ? 1 : 0)) + 2 * d(B) * E;
  head.bytes = kF32 * (2 * d(B) * pooled_in + 2 * 2 * head_acts + (dropped ? 2 * d(B) * D : 0.0) + 2 * linear_params);

  const int64_t n_params = plan.param_count();
  CostPart opt{"optimizer", adam_flops(n_params, c.optim), kF32 * 7 * d(n_params)};
  return StepCost{{mel, conv, head, opt}};
}

RooflineFloor roofline_floor(double flops, double bytes, const DevicePeak& peak) {
  if (!(peak.flops_per_s > 0) || !(peak.bytes_per_s > 0))
    throw std::invalid_argument("roofline_floor: peak FLOP/s and bandwidth must be positive");
  return RooflineFloor{flops / peak.flops_per_s, bytes / peak.bytes_per_s};
}

DevicePeak measure_cpu_peak(int threads) {
  using clock = std::chrono::steady_clock;
  if (threads <= 0) threads = omp_get_max_threads();
  blas_set_threads(1);  // one single-threaded GEMM per thread, as the CPU kernels run them

  // sgemm: 2 n^3 per thread, best of 3 (the first also pays for page faults).
  constexpr int n = 1024;
  const size_t nn = static_cast<size_t>(n) * n;
  std::vector<float> a(nn * threads), b(nn * threads), cm(nn * threads);
  for (size_t i = 0; i < a.size(); ++i) {
    a[i] = static_cast<float>(i % 17) * 0.01f;
    b[i] = static_cast<float>(i % 13) * 0.02f;
  }
  double best_gemm = 1e30;
  for (int rep = 0; rep < 3; ++rep) {
    const auto t0 = clock::now();
#pragma omp parallel num_threads(threads)
    {
      const size_t t = static_cast<size_t>(omp_get_thread_num());
      gemm(false, false, n, n, n, 1.0f, a.data() + t * nn, n, b.data() + t * nn, n, 0.0f, cm.data() + t * nn, n);
    }
    best_gemm = std::min(best_gemm, std::chrono::duration<double>(clock::now() - t0).count());
  }

  // Copy 128 MiB (far beyond any last-level cache), pages touched by the threads that copy.
  const int64_t words = int64_t{128} << 18;  // floats in 128 MiB
  std::vector<float> src(static_cast<size_t>(words)), dst(static_cast<size_t>(words));
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t i = 0; i < words; ++i) {
    src[static_cast<size_t>(i)] = 1.0f;
    dst[static_cast<size_t>(i)] = 0.0f;
  }
  double best_copy = 1e30;
  for (int rep = 0; rep < 3; ++rep) {
    const auto t0 = clock::now();
#pragma omp parallel num_threads(threads)
    {
      const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
      const int64_t lo = words * t / nt, hi = words * (t + 1) / nt;
      std::memcpy(dst.data() + lo, src.data() + lo, static_cast<size_t>(hi - lo) * sizeof(float));
    }
    best_copy = std::min(best_copy, std::chrono::duration<double>(clock::now() - t0).count());
  }

  DevicePeak p;
  p.device = "cpu, " + std::to_string(threads) + " threads";
  p.flops_per_s = 2.0 * n * n * n * threads / best_gemm;
  p.bytes_per_s = 2.0 * static_cast<double>(words) * sizeof(float) / best_copy;
  p.source = "measured here: " + std::to_string(threads) + " concurrent single-threaded OpenBLAS sgemm (1024^3) and a " +
             std::to_string(threads) + "-thread 128 MiB memcpy (read + write)";
  p.cache_bytes = 0;
  return p;
}

#ifndef MELGRAPH_HAVE_CUDA
DevicePeak cuda_peak(int) { throw std::runtime_error("cuda_peak: this build has no CUDA backend"); }
#endif

}  // namespace mg
