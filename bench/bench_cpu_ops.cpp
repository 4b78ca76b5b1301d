// CPU op benchmarks at the reference configuration (22050 Hz, 10 s clips, n_fft 1024, hop 512,
// 128 mels, channels 128, kernel 4, pool 4, embedding 128, 192 clips per step).
// Counters: items_per_second = clips/s; FLOPS where the op is a matrix product. The same ops
// through the Backend interface, on every backend, with bytes/s and FLOPS throughout, are in
// bench_backend_ops.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "kernels/activation_cpu.h"
#include "kernels/blas.h"
#include "kernels/conv1d_cpu.h"
#include "kernels/linear_cpu.h"
#include "kernels/mel_cpu.h"
#include "kernels/optim_cpu.h"
#include "kernels/pool_cpu.h"
#include "kernels/reduce_cpu.h"
#include "kernels/triplet_loss_cpu.h"

namespace {

std::vector<float> random_vec(size_t n, unsigned seed, float lo = -1.f, float hi = 1.f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

struct BlasSingleThreaded {
  BlasSingleThreaded() { mg::blas_set_threads(1); }
} blas_single_threaded;

// Args: batch, Cin (= Cout), Tin. Stage 1 of the reference model is (192, 128, 431).
void BM_Conv1dForward(benchmark::State& st) {
  const mg::Conv1dDims d{static_cast<int>(st.range(0)), static_cast<int>(st.range(1)),
                         static_cast<int>(st.range(1)), static_cast<int>(st.range(2)), 4, 0, 0};
  auto x = random_vec(static_cast<size_t>(d.B) * d.Cin * d.Tin, 1);
  auto w = random_vec(static_cast<size_t>(d.Cout) * d.Cin * d.K, 2);
  auto b = random_vec(static_cast<size_t>(d.Cout), 3);
  std::vector<float> y(static_cast<size_t>(d.B) * d.Cout * d.Tout());
  for (auto _ : st) {
    mg::conv1d_forward_cpu(x.data(), w.data(), b.data(), y.data(), d);
    benchmark::DoNotOptimize(y.data());
  }
  const double flops = 2.0 * d.B * d.Cout * d.Cin * d.K * d.Tout();
  st.counters["FLOPS"] = benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
  st.SetItemsProcessed(st.iterations() * d.B);
}
BENCHMARK(BM_Conv1dForward)->Args({192, 128, 431})->Args({192, 128, 107})->Args({64, 128, 431})
    ->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_Conv1dBackward(benchmark::State& st) {
  const mg::Conv1dDims d{static_cast<int>(st.range(0)), static_cast<int>(st.range(1)),
                         static_cast<int>(st.range(1)), static_cast<int>(st.range(2)), 4, 0, 0};
  auto x = random_vec(static_cast<size_t>(d.B) * d.Cin * d.Tin, 1);
  auto w = random_vec(static_cast<size_t>(d.Cout) * d.Cin * d.K, 2);
  auto dy = random_vec(static_cast<size_t>(d.B) * d.Cout * d.Tout(), 3);
  std::vector<float> dx(x.size()), dw(w.size()), db(static_cast<size_t>(d.Cout));
  for (auto _ : st) {
    mg::conv1d_backward_cpu(dy.data(), x.data(), w.data(), dx.data(), dw.data(), db.data(), d);
    benchmark::DoNotOptimize(dx.data());
  }
  const double flops = 4.0 * d.B * d.Cout * d.Cin * d.K * d.Tout();
  st.counters["FLOPS"] = benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
  st.SetItemsProcessed(st.iterations() * d.B);
}
BENCHMARK(BM_Conv1dBackward)->Args({192, 128, 431})->Args({192, 128, 107})
    ->Unit(benchmark::kMillisecond)->UseRealTime();

// Args: Tin (stage 1 of the reference model: 428). Rows = 192 clips x 128 channels.
void BM_MaxPoolForward(benchmark::State& st) {
  const int64_t rows = 192 * 128;
  const int Tin = static_cast<int>(st.range(0));
  auto x = random_vec(static_cast<size_t>(rows) * Tin, 1);
  std::vector<float> y(static_cast<size_t>(rows) * (Tin / 4));
  for (auto _ : st) {
    mg::maxpool1d_forward_cpu(x.data(), y.data(), rows, Tin, 4);
    benchmark::DoNotOptimize(y.data());
  }
  st.SetBytesProcessed(st.iterations() * static_cast<int64_t>(x.size() + y.size()) * 4);
}
BENCHMARK(BM_MaxPoolForward)->Arg(428)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_MaxPoolBackward(benchmark::State& st) {
  const int64_t rows = 192 * 128;
  const int Tin = static_cast<int>(st.range(0));
  auto x = random_vec(static_cast<size_t>(rows) * Tin, 1);
  auto dy = random_vec(static_cast<size_t>(rows) * (Tin / 4), 2);
  std::vector<float> dx(x.size());
  for (auto _ : st) {
    mg::maxpool1d_backward_cpu(dy.data(), x.data(), dx.data(), rows, Tin, 4);
    benchmark::DoNotOptimize(dx.data());
  }
  st.SetBytesProcessed(st.iterations() * static_cast<int64_t>(2 * x.size() + dy.size()) * 4);
}
BENCHMARK(BM_MaxPoolBackward)->Arg(428)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_Mel(benchmark::State& st) {
  mg::MelParams p;  // reference configuration
  const int B = static_cast<int>(st.range(0));
  const int64_t S = 220500;
  mg::MelCpu mel(p);
  auto audio = random_vec(static_cast<size_t>(B) * S, 1);
  std::vector<float> out(static_cast<size_t>(B) * p.n_mels * mg::mel_frames(S, p.hop));
  for (auto _ : st) {
    mel.forward(audio.data(), out.data(), B, S);
    benchmark::DoNotOptimize(out.data());
  }
  st.SetItemsProcessed(st.iterations() * B);
}
BENCHMARK(BM_Mel)->Arg(16)->Arg(192)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_HeadForwardBackward(benchmark::State& st) {
  const int B = 192, C = 128, Tn = 23, E = 128;
  auto x = random_vec(static_cast<size_t>(B) * C * Tn, 1);
  auto w = random_vec(static_cast<size_t>(E) * C, 2);
  auto b = random_vec(E, 3);
  std::vector<float> pooled(static_cast<size_t>(B) * C), lin(static_cast<size_t>(B) * E),
      emb(lin.size()), demb(lin.size()), dlin(lin.size()), dpooled(pooled.size()),
      dx(x.size()), dw(w.size()), db(E);
  std::vector<int32_t> trip(3 * 64);
  for (int i = 0; i < 64; ++i) trip[3 * i] = i, trip[3 * i + 1] = 64 + i, trip[3 * i + 2] = 128 + i;
  for (auto _ : st) {
    mg::mean_time_forward_cpu(x.data(), pooled.data(), static_cast<int64_t>(B) * C, Tn);
    mg::linear_forward_cpu(pooled.data(), w.data(), b.data(), lin.data(), B, C, E);
    mg::l2norm_forward_cpu(lin.data(), emb.data(), B, E, 1e-12);
    auto r = mg::triplet_loss_cpu(emb.data(), trip.data(), 64, B, E, mg::TripletLossParams{}, demb.data());
    benchmark::DoNotOptimize(r);
    mg::l2norm_backward_cpu(demb.data(), lin.data(), emb.data(), dlin.data(), B, E, 1e-12);
    mg::linear_backward_cpu(dlin.data(), pooled.data(), w.data(), dpooled.data(), dw.data(), db.data(), B, C, E);
    mg::mean_time_backward_cpu(dpooled.data(), dx.data(), static_cast<int64_t>(B) * C, Tn);
  }
  st.SetItemsProcessed(st.iterations() * B);
}
BENCHMARK(BM_HeadForwardBackward)->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_Adam(benchmark::State& st) {
  const int64_t n = st.range(0);
  auto p = random_vec(static_cast<size_t>(n), 1), g = random_vec(static_cast<size_t>(n), 2);
  std::vector<float> m(p.size()), v(p.size());
  int64_t step = 0;
  for (auto _ : st) mg::adam_step_cpu(p.data(), g.data(), m.data(), v.data(), n, mg::AdamParams{}, ++step);
  st.SetBytesProcessed(st.iterations() * n * 4 * 7);
}
BENCHMARK(BM_Adam)->Arg(213504)->Unit(benchmark::kMicrosecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
