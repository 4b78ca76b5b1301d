// Every op of the op list (kernels/op_list.h: register_<op> below, benchmarks named
// <op>[_variant]), and the whole step, through the Backend interface on each backend this
// build has (cpu, and cuda when a GPU is present), in three families:
//
//   ref/<op>/<device>/...    the reference configuration (22050 Hz, 10 s clips, n_fft 1024,
//                            hop 512, 128 mels, channels 128, kernel 4, pool 4, embedding 128,
//                            192 clips, Adam) with the default recipe (per-band input
//                            standardisation, mean + max pooling, batch norm before the head,
//                            the contrastive loss over 96 anchors and their positives); conv
//                            and pool per stage of the model
//   small/<op>/<device>/...  a tiny model (6 clips of 2 s, 16 channels): seconds in all, for CI
//   sweep/<op>/<device>/...  mel, conv and the whole step over batch x clip seconds x channels;
//                            registered only when --benchmark_filter names "sweep" (minutes on
//                            a CPU)
//
// Arguments are named: B (clips), sec (clip seconds), C (channels of every stage), stage.
// Counters: FLOPS (the op's arithmetic per second, counted as engine/perf/roofline.h does),
// bytes_per_second (its inputs read and outputs written once), clips/s.
//
// Timing: every iteration is measured by the backend's stopwatch (CUDA events on the GPU, the
// host clock on the CPU) as manual time, after one untimed run of each input set (plans,
// algorithm searches, first touches). On the GPU the inputs and outputs rotate among as many
// copies as it takes to span twice the L2 cache, so consecutive iterations do not find their
// data there. Examples:
//
//   bench_backend_ops                                         # ref and small, both devices
//   bench_backend_ops --benchmark_filter='^ref/.*/cuda'       # the GPU at the reference config
//   bench_backend_ops --benchmark_filter=sweep/train_step/cpu
//   bench_backend_ops --benchmark_format=json > ops.json      # Google Benchmark's JSON
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "bench/bench_backends.h"
#include "engine/backend_factory.h"
#include "engine/model.h"
#include "engine/model_plan.h"
#include "engine/optimizer.h"
#include "engine/perf/roofline.h"
#include "engine/train_step.h"
#include "kernels/op_list.h"

namespace mg {
namespace {

// ---- backends -----------------------------------------------------------------------------

// ---- shapes -------------------------------------------------------------------------------

// The reference configuration with B clips of `seconds`, every stage C channels.
Config shape_config(int B, double seconds, int C) {
  Config c = default_config();
  c.audio.clip_seconds = seconds;
  c.model.channels.assign(c.model.channels.size(), C);
  c.train.batch_triplets = B / 3;
  return c;
}

struct Shape {
  Config cfg;
  ModelPlan plan;
  int B;
  int stage;  // -1 when the op is not per stage
};

Shape shape_of(const benchmark::State& st, bool per_stage = false) {
  const int B = static_cast<int>(st.range(0));
  Config c = shape_config(B, static_cast<double>(st.range(1)), static_cast<int>(st.range(2)));
  ModelPlan p = make_model_plan(c, B);
  const int stage = per_stage ? static_cast<int>(st.range(3)) : -1;
  return Shape{c, p, B, stage};
}

Conv1dDims stage_dims(const Shape& s) {
  Conv1dDims d = s.plan.stages.at(static_cast<size_t>(s.stage)).conv;
  d.B = s.B;
  return d;
}

// ---- buffers ------------------------------------------------------------------------------

// `copies` copies of an n-float tensor in one allocation, each on a 256-byte boundary, filled
// with uniform random values (random inputs: never zeros).
class Rotating {
 public:
  Rotating(Backend& be, int64_t n, int copies, float lo, float hi, uint64_t stream)
      : be_(be), stride_((n + 63) / 64 * 64), copies_(copies) {
    base_ = be.alloc<float>(stride_ * copies);
    be.fill_uniform(base_, stride_ * copies, lo, hi, 7, stream);
  }
  ~Rotating() { be_.free_bytes(base_); }
  Rotating(const Rotating&) = delete;
  Rotating& operator=(const Rotating&) = delete;
  float* at(int r) const { return base_ + stride_ * (r % copies_); }

 private:
  Backend& be_;
  int64_t stride_;
  int copies_;
  float* base_ = nullptr;
};

// How many copies of a working set of `bytes` span twice the GPU's L2 (1 on the CPU, whose
// caches are far smaller than the reference shapes and would need gigabytes to defeat).
int copies_for(const BenchBackend& c, double bytes) {
  if (c.cache_bytes <= 0 || bytes <= 0) return 1;
  return static_cast<int>(std::clamp(std::ceil(2.0 * static_cast<double>(c.cache_bytes) / bytes), 1.0, 4096.0));
}

// ---- timing -------------------------------------------------------------------------------

// One untimed run per copy, then every iteration between stopwatch marks (manual time).
void timed(benchmark::State& st, Backend& be, int copies, const std::function<void(int)>& run) {
  for (int r = 0; r < copies; ++r) run(r);
  be.synchronize();
  auto sw = be.stopwatch();
  int r = 0;
  for (auto _ : st) {
    sw->start();
    run(r);
    sw->stop();
    st.SetIterationTime(sw->seconds());
    r = (r + 1) % copies;
  }
}

void counters(benchmark::State& st, double flops, double bytes, int clips) {
  const double it = static_cast<double>(st.iterations());
  st.counters["FLOPS"] = benchmark::Counter(flops * it, benchmark::Counter::kIsRate);
  st.counters["clips/s"] = benchmark::Counter(clips * it, benchmark::Counter::kIsRate);
  st.SetBytesProcessed(static_cast<int64_t>(bytes * it));
}

#define MG_BACKEND_OR_SKIP(dev)                                 \
  BenchBackend& ctx = bench_backend(dev);                       \
  if (!ctx.be) return st.SkipWithError(ctx.skip.c_str());       \
  Backend& be = *ctx.be

constexpr double kF = 4.0;  // bytes per float

// ---- ops ----------------------------------------------------------------------------------

void BM_Mel(benchmark::State& st, const std::string& dev) {
  MG_BACKEND_OR_SKIP(dev);
  const Shape s = shape_of(st);
  const int64_t S = s.plan.samples, out_n = static_cast<int64_t>(s.B) * s.plan.n_mels * s.plan.frames;
  const double bytes = kF * static_cast<double>(s.B * S + out_n);
  const int k = copies_for(ctx, bytes);
  Rotating audio(be, s.B * S, k, -0.5f, 0.5f, 1), out(be, out_n, k, 0.f, 1.f, 2);
  timed(st, be, k, [&](int r) { be.mel_forward(audio.at(r), out.at(r), s.B, S, s.cfg.mel); });
  const int64_t nnz = static_cast<int64_t>(make_mel_filterbank(s.cfg.mel).weights.size());
  counters(st, mel_flops(s.cfg.mel, s.B, S, nnz), bytes, s.B);
}

enum class ConvOp { Forward, BackwardFilter, BackwardDataFilter };

// The Backend has one conv backward: with dx null it computes the weight and bias gradients
// only (what stage 0 runs, its input being the log-mel); with dx, the input gradient as well.
// The input gradient's cost is the difference of the two.
void BM_Conv(benchmark::State& st, const std::string& dev, ConvOp op, Precision prec = Precision::F32) {
  MG_BACKEND_OR_SKIP(dev);
  const Shape s = shape_of(st, true);
  const Conv1dDims d = stage_dims(s);
  const int64_t nx = static_cast<int64_t>(d.B) * d.Cin * d.Tin, ny = static_cast<int64_t>(d.B) * d.Cout * d.Tout(),
                nw = static_cast<int64_t>(d.Cout) * d.Cin * d.K;
  double flops = 0, bytes = 0;
  switch (op) {
    case ConvOp::Forward:
      flops = conv_forward_flops(d);
      bytes = kF * static_cast<double>(nx + nw + d.Cout + ny);
      break;
    case ConvOp::BackwardFilter:
      flops = conv_backward_filter_flops(d);
      bytes = kF * static_cast<double>(ny + nx + 2 * (nw + d.Cout));  // dy, x read; dw, db accumulated
      break;
    case ConvOp::BackwardDataFilter:
      flops = conv_backward_filter_flops(d) + conv_backward_data_flops(d);
      bytes = kF * static_cast<double>(ny + 2 * nx + nw + 2 * (nw + d.Cout));  // + w read, dx written
      break;
  }
  const int k = copies_for(ctx, bytes);
  Rotating x(be, nx, k, -1.f, 1.f, 1), y(be, ny, k, -1.f, 1.f, 2), dx(be, nx, k, -1.f, 1.f, 3);
  Rotating w(be, nw, 1, -0.1f, 0.1f, 4), b(be, d.Cout, 1, -0.1f, 0.1f, 5), dw(be, nw, 1, -1.f, 1.f, 6),
      db(be, d.Cout, 1, -1.f, 1.f, 7);
  timed(st, be, k, [&](int r) {
    if (op == ConvOp::Forward)
      be.conv1d_forward(x.at(r), w.at(0), b.at(0), y.at(r), d, prec);
    else
      be.conv1d_backward(y.at(r), x.at(r), w.at(0), op == ConvOp::BackwardDataFilter ? dx.at(r) : nullptr, dw.at(0),
                         db.at(0), d, prec);
  });
  counters(st, flops, bytes, s.B);
}

// ReLU over a stage's conv output, in place as the model runs it.
void BM_Relu(benchmark::State& st, const std::string& dev, bool backward) {
  MG_BACKEND_OR_SKIP(dev);
  const Shape s = shape_of(st, true);
  const StagePlan& sp = s.plan.stages.at(static_cast<size_t>(s.stage));
  const int64_t n = static_cast<int64_t>(s.B) * sp.conv.Cout * sp.t_conv;
  const double bytes = kF * static_cast<double>(n) * (backward ? 3 : 2);
  const int k = copies_for(ctx, bytes);
  Rotating y(be, n, k, -1.f, 1.f, 1), dy(be, n, k, -1.f, 1.f, 2);
  timed(st, be, k, [&](int r) {
    if (backward)
      be.relu_backward(dy.at(r), y.at(r), dy.at(r), n);
    else
      be.relu_forward(y.at(r), y.at(r), n);
  });
  counters(st, static_cast<double>(n), bytes, s.B);
}

void BM_Pool(benchmark::State& st, const std::string& dev, bool backward) {
  MG_BACKEND_OR_SKIP(dev);
  const Shape s = shape_of(st, true);
  const StagePlan& sp = s.plan.stages.at(static_cast<size_t>(s.stage));
  if (!sp.pool) return st.SkipWithError("this stage has no max-pool");
  const int64_t rows = static_cast<int64_t>(s.B) * sp.conv.Cout, nx = rows * sp.t_conv, ny = rows * sp.t_out;
  const int P = s.cfg.model.pool;
  const double bytes = kF * static_cast<double>(backward ? 2 * nx + ny : nx + ny);
  const double flops = backward ? static_cast<double>(nx) : static_cast<double>(ny) * (P - 1);
  const int k = copies_for(ctx, bytes);
  Rotating x(be, nx, k, -1.f, 1.f, 1), y(be, ny, k, -1.f, 1.f, 2), dx(be, nx, k, -1.f, 1.f, 3);
  timed(st, be, k, [&](int r) {
    if (backward)
      be.maxpool_backward(y.at(r), x.at(r), dx.at(r), rows, sp.t_conv, P);
    else
      be.maxpool_forward(x.at(r), y.at(r), rows, sp.t_conv, P);
  });
  counters(st, flops, bytes, s.B);
}

// Mean over time of the last stage's output [B, C, T] -> [B, C]. add: the backward that adds
// to the gradient already there, over the first stage's pooled output (model.pool_stages =
// all: the largest stage the head pools; dx read and written).
void BM_Mean(benchmark::State& st, const std::string& dev, bool backward, bool add = false) {
  MG_BACKEND_OR_SKIP(dev);
  const Shape s = shape_of(st);
  const StagePlan& stage = add ? s.plan.stages.front() : s.plan.stages.back();
  const int64_t rows = static_cast<int64_t>(s.B) * stage.conv.Cout, nx = rows * stage.t_out;
  const double bytes = kF * static_cast<double>((add ? 2 : 1) * nx + rows);
  const int k = copies_for(ctx, bytes);
  Rotating x(be, nx, k, -1.f, 1.f, 1), y(be, rows, k, -1.f, 1.f, 2);
  timed(st, be, k, [&](int r) {
    if (backward)
      be.mean_time_backward(y.at(r), x.at(r), rows, stage.t_out, RowOut{}, add);
    else
      be.mean_time_forward(x.at(r), y.at(r), rows, stage.t_out);
  });
  counters(st, static_cast<double>(nx), bytes, s.B);
}

void BM_Linear(benchmark::State& st, const std::string& dev, bool backward, Precision prec = Precision::F32) {
  MG_BACKEND_OR_SKIP(dev);
  const Shape s = shape_of(st);
  const int B = s.B, C = s.plan.head_width(), E = s.plan.embedding;
  const int64_t nx = static_cast<int64_t>(B) * C, ny = static_cast<int64_t>(B) * E, nw = static_cast<int64_t>(E) * C;
  const double bytes = kF * static_cast<double>(backward ? ny + 2 * nx + nw + 2 * (nw + E) : nx + nw + E + ny);
  const int k = copies_for(ctx, bytes);
  Rotating x(be, nx, k, -1.f, 1.f, 1), y(be, ny, k, -1.f, 1.f, 2), dx(be, nx, k, -1.f, 1.f, 3);
  Rotating w(be, nw, 1, -0.1f, 0.1f, 4), b(be, E, 1, -0.1f, 0.1f, 5), dw(be, nw, 1, -1.f, 1.f, 6),
      db(be, E, 1, -1.f, 1.f, 7);
  timed(st, be, k, [&](int r) {
    if (backward)
      be.linear_backward(y.at(r), x.at(r), w.at(0), dx.at(r), dw.at(0), db.at(0), B, C, E, prec);
    else
      be.linear_forward(x.at(r), w.at(0), b.at(0), y.at(r), B, C, E, prec);
  });
  counters(st, backward ? linear_backward_flops(B, C, E) : linear_forward_flops(B, C, E), bytes, B);
}

void BM_L2(benchmark::State& st, const std::string& dev, bool backward) {
  MG_BACKEND_OR_SKIP(dev);
  const Shape s = shape_of(st);
  const int B = s.B, E = s.plan.embedding;
  const int64_t n = static_cast<int64_t>(B) * E;
  const double eps = s.cfg.model.l2_eps;
  const double bytes = kF * static_cast<double>(n) * (backward ? 4 : 2);
  const int k = copies_for(ctx, bytes);
  Rotating x(be, n, k, -1.f, 1.f, 1), y(be, n, k, -1.f, 1.f, 2), dy(be, n, k, -1.f, 1.f, 3), dx(be, n, k, 0.f, 1.f, 4);
  be.l2norm_forward(x.at(0), y.at(0), B, E, eps);  // y: the forward's output, as the backward expects
  timed(st, be, k, [&](int r) {
    if (backward)
      be.l2norm_backward(dy.at(r), x.at(r), y.at(r), dx.at(r), B, E, eps);
    else
      be.l2norm_forward(x.at(r), y.at(r), B, E, eps);
  });
  counters(st, backward ? l2norm_backward_flops(B, E) : l2norm_forward_flops(B, E), bytes, B);
}

// The fused triplet loss with its gradient, offline triplets (i, n + i, 2n + i).
void BM_Loss(benchmark::State& st, const std::string& dev) {
  MG_BACKEND_OR_SKIP(dev);
  const Shape s = shape_of(st);
  const int n = s.B / 3, N = 3 * n, E = s.plan.embedding;
  const int64_t ne = static_cast<int64_t>(N) * E;
  const double bytes = kF * 2.0 * static_cast<double>(ne);
  const int k = copies_for(ctx, bytes);
  Rotating raw(be, ne, k, -1.f, 1.f, 1), emb(be, ne, k, -1.f, 1.f, 2), demb(be, ne, k, -1.f, 1.f, 3);
  for (int r = 0; r < k; ++r) be.l2norm_forward(raw.at(r), emb.at(r), N, E, 1e-12);  // unit rows, as the model's
  const std::vector<int32_t> table = TrainStep::offline_triplets(n);
  int32_t* trip = be.alloc<int32_t>(static_cast<int64_t>(table.size()));
  be.to_device(trip, table.data(), table.size() * sizeof(int32_t));
  float* stats = be.alloc<float>(2);
  timed(st, be, k, [&](int r) { be.triplet_loss(emb.at(r), trip, n, N, E, s.cfg.loss, stats, demb.at(r)); });
  counters(st, triplet_loss_flops(n, E, s.cfg.loss.swap), bytes, N);
  be.free_bytes(trip);
  be.free_bytes(stats);
}

// The fused contrastive loss with its gradient over the batch's B rows (B / 2 anchors, then
// their positives): graph distances as a real batch has them (TrainStep::pair_hops).
void BM_Contrastive(benchmark::State& st, const std::string& dev) {
  MG_BACKEND_OR_SKIP(dev);
  const Shape s = shape_of(st);
  const int A = std::max(s.B / 2, 1), N = 2 * A, E = s.plan.embedding;
  const int64_t ne = static_cast<int64_t>(N) * E;
  const double bytes = kF * 2.0 * static_cast<double>(ne) + static_cast<double>(N) * N;
  const int k = copies_for(ctx, bytes);
  Rotating raw(be, ne, k, -1.f, 1.f, 1), emb(be, ne, k, -1.f, 1.f, 2), demb(be, ne, k, -1.f, 1.f, 3);
  for (int r = 0; r < k; ++r) be.l2norm_forward(raw.at(r), emb.at(r), N, E, 1e-12);  // unit rows, as the model's
  const std::vector<uint8_t> h = TrainStep::pair_hops(A, s.cfg.train.neg_hops);
  uint8_t* hops = be.alloc<uint8_t>(static_cast<int64_t>(h.size()));
  be.to_device(hops, h.data(), h.size());
  void* ws = be.alloc<uint8_t>(static_cast<int64_t>(std::max<size_t>(1, contrastive_workspace_bytes(N))));
  float* stats = be.alloc<float>(2);
  const ContrastiveLossParams p = contrastive_params(s.cfg);
  timed(st, be, k, [&](int r) { be.contrastive_loss(emb.at(r), hops, N, E, p, stats, demb.at(r), ws); });
  counters(st, contrastive_loss_flops(N, E), bytes, N);
  for (void* q : {static_cast<void*>(hops), ws, static_cast<void*>(stats)}) be.free_bytes(q);
}

// Batch normalisation of the pooled features [B, D] before the head: the training forward
// (batch statistics, running statistics updated) or its backward.
void BM_BatchNorm(benchmark::State& st, const std::string& dev, bool backward) {
  MG_BACKEND_OR_SKIP(dev);
  const Shape s = shape_of(st);
  const int B = s.B, D = s.plan.head_width();
  const int64_t n = static_cast<int64_t>(B) * D;
  const double bytes = kF * static_cast<double>(backward ? 3 * n + 4 * D : 2 * n + 4 * D);
  const int k = copies_for(ctx, bytes);
  Rotating x(be, n, k, -1.f, 1.f, 1), y(be, n, k, -1.f, 1.f, 2), dx(be, n, k, -1.f, 1.f, 3);
  Rotating gamma(be, D, 1, 0.5f, 1.5f, 4), beta(be, D, 1, -0.1f, 0.1f, 5), mean(be, D, 1, -0.1f, 0.1f, 6),
      var(be, D, 1, 0.5f, 1.5f, 7), dgamma(be, D, 1, -1.f, 1.f, 8), dbeta(be, D, 1, -1.f, 1.f, 9);
  const BatchNormParams p{};
  timed(st, be, k, [&](int r) {
    if (backward)
      be.batchnorm_backward(y.at(r), x.at(r), gamma.at(0), dx.at(r), dgamma.at(0), dbeta.at(0), B, D, p);
    else
      be.batchnorm_forward(x.at(r), gamma.at(0), beta.at(0), y.at(r), mean.at(0), var.at(0), B, D, p, true);
  });
  counters(st, backward ? batchnorm_backward_flops(B, D) : batchnorm_forward_flops(B, D), bytes, B);
}

// Per-band standardisation of the log-mel [B, n_mels, frames], in place as the model runs it.
void BM_BandNorm(benchmark::State& st, const std::string& dev) {
  MG_BACKEND_OR_SKIP(dev);
  const Shape s = shape_of(st);
  const int M = s.plan.n_mels;
  const int64_t n = static_cast<int64_t>(s.B) * M * s.plan.frames;
  const double bytes = kF * 2.0 * static_cast<double>(n);
  const int k = copies_for(ctx, bytes);
  Rotating x(be, n, k, -10.f, 5.f, 1), mean(be, M, 1, -5.f, 0.f, 2), sd(be, M, 1, 0.5f, 2.f, 3);
  timed(st, be, k, [&](int r) { be.band_norm_forward(x.at(r), mean.at(0), sd.at(0), x.at(r), s.B, M, s.plan.frames); });
  counters(st, band_norm_flops(n), bytes, s.B);
}

// In-batch mining (batch-hard) over B / 2 anchors and their positives: the masked scan of all
// 2A x 2A pairs (semi-hard scans the same pairs). About 60% of the pairs are far in the graph.
void BM_Mine(benchmark::State& st, const std::string& dev) {
  MG_BACKEND_OR_SKIP(dev);
  const Shape s = shape_of(st);
  const int A = std::max(s.B / 2, 1), N = 2 * A, E = s.plan.embedding;
  const int64_t ne = static_cast<int64_t>(N) * E;
  const double bytes = kF * static_cast<double>(ne) + static_cast<double>(N) * N + 12.0 * A;
  const int k = copies_for(ctx, bytes);
  Rotating raw(be, ne, k, -1.f, 1.f, 1), emb(be, ne, k, -1.f, 1.f, 2);
  for (int r = 0; r < k; ++r) be.l2norm_forward(raw.at(r), emb.at(r), N, E, 1e-12);  // unit rows
  std::mt19937 rng(5);
  std::vector<uint8_t> h(static_cast<size_t>(N) * N);
  for (size_t i = 0; i < h.size(); ++i)  // 0 on the diagonal, else 1..5 (neg_hops 3)
    h[i] = i % (static_cast<size_t>(N) + 1) == 0 ? 0 : static_cast<uint8_t>(1 + rng() % 5);
  uint8_t* hops = be.alloc<uint8_t>(static_cast<int64_t>(h.size()));
  be.to_device(hops, h.data(), h.size());
  int32_t* trip = be.alloc<int32_t>(3 * static_cast<int64_t>(A));
  float* counts = be.alloc<float>(2);
  const MiningParams p{NegativeMining::BatchHard, 3, s.cfg.loss.margin, s.cfg.loss.eps};
  timed(st, be, k, [&](int r) { be.mine_triplets(emb.at(r), hops, A, E, p, trip, counts); });
  counters(st, 2.0 * A * N * E, bytes, N);
  for (void* q : {static_cast<void*>(hops), static_cast<void*>(trip), static_cast<void*>(counts)}) be.free_bytes(q);
}

// Adam (and the global-norm clip when the config has one) over the model's parameters.
void BM_Adam(benchmark::State& st, const std::string& dev) {
  MG_BACKEND_OR_SKIP(dev);
  const Shape s = shape_of(st);
  const TensorLayout layout = Model::param_layout(s.cfg);
  const int64_t n = layout.total();
  const double bytes = kF * 7.0 * static_cast<double>(n);
  const int k = copies_for(ctx, bytes);
  Rotating p(be, n, k, -0.1f, 0.1f, 1), g(be, n, k, -1e-2f, 1e-2f, 2), m(be, n, k, -1e-3f, 1e-3f, 3),
      v(be, n, k, 0.f, 1e-4f, 4);
  double* scalars = be.alloc<double>(2);
  const double host[2] = {s.cfg.optim.adam.lr, 1.0};
  be.to_device(scalars, host, sizeof host);
  timed(st, be, k, [&](int r) { be.adam_step(p.at(r), g.at(r), m.at(r), v.at(r), n, s.cfg.optim.adam, scalars); });
  counters(st, adam_flops(layout.param_count(), s.cfg.optim), bytes, s.B);
  be.free_bytes(scalars);
}

// Initialisation over the model's parameters: one value, or Philox uniform values (FLOPs: the
// scale and shift, 2 per element; the Philox rounds are integer work, not counted).
void BM_Fill(benchmark::State& st, const std::string& dev, bool uniform) {
  MG_BACKEND_OR_SKIP(dev);
  const Shape s = shape_of(st);
  const int64_t n = Model::param_layout(s.cfg).total();
  const double bytes = kF * static_cast<double>(n);
  const int k = copies_for(ctx, bytes);
  Rotating p(be, n, k, -1.f, 1.f, 1);
  timed(st, be, k, [&](int r) {
    if (uniform)
      be.fill_uniform(p.at(r), n, -0.1f, 0.1f, 11, static_cast<uint64_t>(r));
    else
      be.fill(p.at(r), n, 0.f);
  });
  counters(st, uniform ? 2.0 * static_cast<double>(n) : 0.0, bytes, s.B);
}

// Max or L2 over time of the last stage's output [B, C, T] into the head's [mean | max | l2]
// layout (row stride 3 C), forward or backward (accumulating, as the head runs it).
void BM_TimePool(benchmark::State& st, const std::string& dev, bool l2, bool backward) {
  MG_BACKEND_OR_SKIP(dev);
  const Shape s = shape_of(st);
  const StagePlan& last = s.plan.stages.back();
  const int C = last.conv.Cout, T = last.t_out;
  const int64_t rows = static_cast<int64_t>(s.B) * C, nx = rows * T, ny = static_cast<int64_t>(s.B) * 3 * C;
  const RowOut out{C, 3 * static_cast<int64_t>(C)};
  const double bytes = kF * static_cast<double>(backward ? 3 * nx + rows : nx + rows);
  const int k = copies_for(ctx, bytes);
  Rotating x(be, nx, k, 0.f, 1.f, 1), y(be, ny, k, -1.f, 1.f, 2), dx(be, nx, k, -1.f, 1.f, 3);
  timed(st, be, k, [&](int r) {
    if (l2 && backward)
      be.l2_time_backward(y.at(r), x.at(r), dx.at(r), rows, T, out, true);
    else if (l2)
      be.l2_time_forward(x.at(r), y.at(r), rows, T, out);
    else if (backward)
      be.max_time_backward(y.at(r), x.at(r), dx.at(r), rows, T, out, true);
    else
      be.max_time_forward(x.at(r), y.at(r), rows, T, out);
  });
  counters(st, static_cast<double>(nx) * (l2 ? (backward ? 3 : 2) : 1), bytes, s.B);
}

// Dropout over the pooled features [B, 3 C] before the head (p = 0.1): the mask drawn from
// Philox and applied, or the backward's product with the mask.
void BM_Dropout(benchmark::State& st, const std::string& dev, bool backward) {
  MG_BACKEND_OR_SKIP(dev);
  const Shape s = shape_of(st);
  const int64_t n = static_cast<int64_t>(s.B) * 3 * s.plan.stages.back().conv.Cout;
  const double bytes = kF * 3.0 * static_cast<double>(n);  // x, y, mask (dy, mask, dx)
  const int k = copies_for(ctx, bytes);
  Rotating x(be, n, k, -1.f, 1.f, 1), y(be, n, k, -1.f, 1.f, 2), mask(be, n, k, 0.f, 1.f, 3);
  uint64_t* rng = be.alloc<uint64_t>(2);
  const uint64_t host[2] = {17, 3};
  be.to_device(rng, host, sizeof host);
  timed(st, be, k, [&](int r) {
    if (backward)
      be.dropout_backward(y.at(r), mask.at(r), x.at(r), n);
    else
      be.dropout_forward(x.at(r), y.at(r), mask.at(r), n, 0.1, rng);
  });
  counters(st, static_cast<double>(n), bytes, s.B);
  be.free_bytes(rng);
}

// Clipping the model's gradient by its global norm (max norm 1: every call scales).
void BM_ClipGradNorm(benchmark::State& st, const std::string& dev) {
  MG_BACKEND_OR_SKIP(dev);
  const Shape s = shape_of(st);
  const int64_t n = Model::param_layout(s.cfg).total();
  const double bytes = kF * 3.0 * static_cast<double>(n);  // read for the norm, then read and written
  const int k = copies_for(ctx, bytes);
  Rotating g(be, n, k, -1e-2f, 1e-2f, 1);
  float* norm = be.alloc<float>(1);
  timed(st, be, k, [&](int r) { be.clip_grad_norm(g.at(r), n, 1.0, norm); });
  counters(st, 3.0 * static_cast<double>(n), bytes, s.B);
  be.free_bytes(norm);
}

// Exact top-10 by cosine of the batch's B embeddings against an index of 20000 items (the
// query path of the index; bench_index has larger indexes and FAISS beside it).
void BM_Topk(benchmark::State& st, const std::string& dev) {
  MG_BACKEND_OR_SKIP(dev);
  const Shape s = shape_of(st);
  const int E = s.plan.embedding, kTop = 10;
  const int64_t N = 20000, Q = s.B;
  const double bytes = kF * static_cast<double>((N + Q) * E) + 8.0 * static_cast<double>(Q) * kTop;
  const int k = copies_for(ctx, bytes);
  Rotating raw(be, N * E, 1, -1.f, 1.f, 1), items(be, N * E, 1, -1.f, 1.f, 2), q(be, Q * E, k, -1.f, 1.f, 3);
  be.l2norm_forward(raw.at(0), items.at(0), static_cast<int>(N), E, 1e-12);  // unit rows, as an index holds
  int32_t* out_items = be.alloc<int32_t>(Q * kTop);
  float* out_sims = be.alloc<float>(Q * kTop);
  timed(st, be, k, [&](int r) { be.topk_cosine(q.at(r), Q, items.at(0), N, E, kTop, nullptr, out_items, out_sims); });
  counters(st, 2.0 * static_cast<double>(Q) * static_cast<double>(N) * E, bytes, s.B);
  be.free_bytes(out_items);
  be.free_bytes(out_sims);
}

// The whole training step (zero grads, forward, fused loss, backward, Adam): eager, or
// replayed as a CUDA Graph. One audio batch: the step's working set (activations, gradients)
// is far larger than any cache at these shapes.
void BM_TrainStep(benchmark::State& st, const std::string& dev, bool replay) {
  MG_BACKEND_OR_SKIP(dev);
  const Shape s = shape_of(st);
  // The config's loss: the contrastive loss takes n anchors and their positives (2 n rows),
  // the triplet loss n offline triplets (3 n rows).
  const bool contrastive = s.cfg.loss.name == LossKind::Contrastive;
  const int per = contrastive ? 2 : 3, n = std::max(s.B / per, 1), B = per * n;
  Model model(s.cfg, be, B);
  model.init_params(1);
  Optimizer opt(be, model.params().layout(), s.cfg.optim);
  TrainStep step(model);
  step.set_capture(replay);
  if (contrastive)
    step.set_contrastive(TrainStep::pair_hops(n, s.cfg.train.neg_hops), n, s.cfg.train.pos_hops, s.cfg.train.neg_hops);
  else
    step.set_triplets(TrainStep::offline_triplets(n));
  const int64_t S = s.plan.samples;
  Rotating audio(be, B * S, 1, -0.5f, 0.5f, 9);
  // Eager plans every shape; with capture, the second step records the graph.
  for (int i = 0; i < 2; ++i) step.step(audio.at(0), B, s.cfg.loss, opt, 1e-4);
  if (replay && !step.replaying()) return st.SkipWithError("the step was not captured (the backend cannot replay)");
  timed(st, be, 1, [&](int) { step.step(audio.at(0), B, s.cfg.loss, opt, 1e-4); });
  const StepCost cost = training_step_cost(s.cfg, B, n);
  counters(st, cost.flops(), cost.bytes(), B);
  st.SetLabel(step.replaying() ? "graph replay" : "eager");
}

// ---- registration -------------------------------------------------------------------------

using Fn = std::function<void(benchmark::State&)>;

benchmark::internal::Benchmark* add(const std::string& name, Fn fn) {
  return benchmark::RegisterBenchmark(name.c_str(), [fn](benchmark::State& st) { fn(st); })
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond);
}

// One family (ref or small) at one shape, on one device: where each op's benchmarks register.
struct Family {
  std::string prefix;  // "ref/" or "small/"
  std::string dev;
  int B, sec, C;
  ModelPlan plan;
  // name = "<op>[_variant]": registered as <family>/<name>/<device>, with the family's shape.
  benchmark::internal::Benchmark* add(const std::string& name, Fn fn) const {
    return mg::add(prefix + name + "/" + dev, std::move(fn))->ArgNames({"B", "sec", "C"})->Args({B, sec, C});
  }
  // The same, once per model stage from first_stage.
  benchmark::internal::Benchmark* add_stages(const std::string& name, int first_stage, Fn fn) const {
    auto* b = mg::add(prefix + name + "/" + dev, std::move(fn))->ArgNames({"B", "sec", "C", "stage"});
    for (size_t i = static_cast<size_t>(first_stage); i < plan.stages.size(); ++i)
      b->Args({B, sec, C, static_cast<int64_t>(i)});
    return b;
  }
};

// One function per row of the op list (kernels/op_list.h), named after the op.
void register_fill(const Family& f) {
  const std::string dev = f.dev;
  f.add("fill", [dev](auto& st) { BM_Fill(st, dev, false); });
  f.add("fill_uniform", [dev](auto& st) { BM_Fill(st, dev, true); });
}
void register_mel(const Family& f) {
  const std::string dev = f.dev;
  f.add("mel", [dev](auto& st) { BM_Mel(st, dev); });
}
void register_band_norm(const Family& f) {
  const std::string dev = f.dev;
  f.add("band_norm", [dev](auto& st) { BM_BandNorm(st, dev); });
}
void register_conv1d(const Family& f) {
  const std::string dev = f.dev;
  f.add_stages("conv1d_fwd", 0, [dev](auto& st) { BM_Conv(st, dev, ConvOp::Forward); });
  f.add_stages("conv1d_bwd_filter", 0, [dev](auto& st) { BM_Conv(st, dev, ConvOp::BackwardFilter); });
  // Stage 0's input is the log-mel, which needs no gradient: dx from stage 1 on.
  f.add_stages("conv1d_bwd_data_filter", 1, [dev](auto& st) { BM_Conv(st, dev, ConvOp::BackwardDataFilter); });
}
// bf16 (train.precision = "bf16"): the same shapes and the same float32 interface, so FLOPs
// and bytes are counted as for float32 (the bf16 copies are traffic inside the op). On the CPU
// it is the rounding emulation, the oracle, not a fast path.
void register_conv1d_bf16(const Family& f) {
  const std::string dev = f.dev;
  f.add_stages("conv1d_bf16_fwd", 0, [dev](auto& st) { BM_Conv(st, dev, ConvOp::Forward, Precision::BF16); });
  f.add_stages("conv1d_bf16_bwd_data_filter", 1,
               [dev](auto& st) { BM_Conv(st, dev, ConvOp::BackwardDataFilter, Precision::BF16); });
}
void register_relu(const Family& f) {
  const std::string dev = f.dev;
  f.add_stages("relu_fwd", 0, [dev](auto& st) { BM_Relu(st, dev, false); });
  f.add_stages("relu_bwd", 0, [dev](auto& st) { BM_Relu(st, dev, true); });
}
// Max-pool follows every stage but the last.
void register_maxpool(const Family& f) {
  for (const bool bwd : {false, true}) {
    const std::string dev = f.dev;
    auto* b = mg::add(f.prefix + (bwd ? "maxpool_bwd/" : "maxpool_fwd/") + dev,
                      [dev, bwd](auto& st) { BM_Pool(st, dev, bwd); });
    b->ArgNames({"B", "sec", "C", "stage"});
    for (size_t i = 0; i < f.plan.stages.size(); ++i)
      if (f.plan.stages[i].pool) b->Args({f.B, f.sec, f.C, static_cast<int64_t>(i)});
  }
}
void register_mean_time(const Family& f) {
  const std::string dev = f.dev;
  f.add("mean_time_fwd", [dev](auto& st) { BM_Mean(st, dev, false); });
  f.add("mean_time_bwd", [dev](auto& st) { BM_Mean(st, dev, true); });
  f.add("mean_time_bwd_add", [dev](auto& st) { BM_Mean(st, dev, true, true); });
}
void register_time_pool(const Family& f) {
  const std::string dev = f.dev;
  f.add("time_pool_max_fwd", [dev](auto& st) { BM_TimePool(st, dev, false, false); });
  f.add("time_pool_max_bwd", [dev](auto& st) { BM_TimePool(st, dev, false, true); });
  f.add("time_pool_l2_fwd", [dev](auto& st) { BM_TimePool(st, dev, true, false); });
  f.add("time_pool_l2_bwd", [dev](auto& st) { BM_TimePool(st, dev, true, true); });
}
void register_batchnorm(const Family& f) {
  const std::string dev = f.dev;
  f.add("batchnorm_fwd", [dev](auto& st) { BM_BatchNorm(st, dev, false); });
  f.add("batchnorm_bwd", [dev](auto& st) { BM_BatchNorm(st, dev, true); });
}
void register_dropout(const Family& f) {
  const std::string dev = f.dev;
  f.add("dropout_fwd", [dev](auto& st) { BM_Dropout(st, dev, false); });
  f.add("dropout_bwd", [dev](auto& st) { BM_Dropout(st, dev, true); });
}
void register_linear(const Family& f) {
  const std::string dev = f.dev;
  f.add("linear_fwd", [dev](auto& st) { BM_Linear(st, dev, false); });
  f.add("linear_bwd", [dev](auto& st) { BM_Linear(st, dev, true); });
}
void register_linear_bf16(const Family& f) {
  const std::string dev = f.dev;
  f.add("linear_bf16_fwd", [dev](auto& st) { BM_Linear(st, dev, false, Precision::BF16); });
  f.add("linear_bf16_bwd", [dev](auto& st) { BM_Linear(st, dev, true, Precision::BF16); });
}
void register_l2norm(const Family& f) {
  const std::string dev = f.dev;
  f.add("l2norm_fwd", [dev](auto& st) { BM_L2(st, dev, false); });
  f.add("l2norm_bwd", [dev](auto& st) { BM_L2(st, dev, true); });
}
void register_triplet(const Family& f) {
  const std::string dev = f.dev;
  f.add("triplet", [dev](auto& st) { BM_Loss(st, dev); });
}
void register_contrastive(const Family& f) {
  const std::string dev = f.dev;
  f.add("contrastive", [dev](auto& st) { BM_Contrastive(st, dev); });
}
void register_mine(const Family& f) {
  const std::string dev = f.dev;
  f.add("mine", [dev](auto& st) { BM_Mine(st, dev); });
}
void register_adam(const Family& f) {
  const std::string dev = f.dev;
  f.add("adam", [dev](auto& st) { BM_Adam(st, dev); });
}
void register_clip_grad_norm(const Family& f) {
  const std::string dev = f.dev;
  f.add("clip_grad_norm", [dev](auto& st) { BM_ClipGradNorm(st, dev); });
}
void register_topk(const Family& f) {
  const std::string dev = f.dev;
  f.add("topk", [dev](auto& st) { BM_Topk(st, dev); });
}

// Every op of the list, then the whole step.
void register_family(const std::string& family, int B, int sec, int C, const std::string& dev) {
  const Family f{family + "/", dev, B, sec, C, make_model_plan(shape_config(B, sec, C), B)};
#define MG_REGISTER(op, gradient, reference, kernels) register_##op(f);
  MELGRAPH_OPS(MG_REGISTER)
#undef MG_REGISTER
  f.add("train_step_eager", [dev](auto& st) { BM_TrainStep(st, dev, false); });
  // Only the CUDA backend captures; on the CPU "replay" would be the eager step again.
  if (dev == "cuda") f.add("train_step_replay", [dev](auto& st) { BM_TrainStep(st, dev, true); });
}

// The sweep: batch x clip seconds x channels, for the ops whose cost scales with all three.
void register_sweep(const std::string& dev) {
  const std::vector<int64_t> batches{48, 192, 576}, seconds{5, 10, 30}, channels{64, 128, 256};
  const std::string d = "/" + dev;
  add("sweep/mel" + d, [dev](auto& st) { BM_Mel(st, dev); })
      ->ArgNames({"B", "sec", "C"})
      ->ArgsProduct({batches, seconds, {128}});
  add("sweep/conv1d_fwd" + d, [dev](auto& st) { BM_Conv(st, dev, ConvOp::Forward); })
      ->ArgNames({"B", "sec", "C", "stage"})
      ->ArgsProduct({batches, seconds, channels, {0}});
  add("sweep/conv1d_bwd_data_filter" + d, [dev](auto& st) { BM_Conv(st, dev, ConvOp::BackwardDataFilter); })
      ->ArgNames({"B", "sec", "C", "stage"})
      ->ArgsProduct({batches, seconds, channels, {1}});
  auto* step = add("sweep/train_step" + d, [dev](auto& st) { BM_TrainStep(st, dev, dev == "cuda"); })
                   ->ArgNames({"B", "sec", "C"})
                   ->ArgsProduct({batches, seconds, channels});
  if (dev == "cpu") step->Iterations(2);  // seconds per step on a CPU
}

}  // namespace
}  // namespace mg

int main(int argc, char** argv) {
  bool want_sweep = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--benchmark_filter=", 0) == 0 && a.find("sweep") != std::string::npos) want_sweep = true;
  }
  for (const std::string dev : {"cpu", "cuda"}) {
    mg::register_family("ref", 192, 10, 128, dev);
    mg::register_family("small", 6, 2, 16, dev);
    if (want_sweep) mg::register_sweep(dev);
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  mg::release_bench_backends();
  return 0;
}
