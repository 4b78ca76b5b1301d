// The collectives of a data-parallel step (engine/dist/comm.h), timed as every rank sees them:
// the sum of the conv stack's gradients and the gather of the pooled features, at the sizes of
// the default model, and ZeRO-1's reduce-scatter + all-gather of the whole flat buffer. Run it under the launcher, e.g.
//   mpirun -np 2 build/bench/bench_collectives
// Rank 0 reports; the others run the same iterations silently (a collective needs every rank,
// so the iteration counts are fixed rather than chosen by timing, which differs per rank).
// Counters, as NCCL's own tests define them: algbw = bytes / time; busbw, the bandwidth each
// link carries, = algbw * 2 (R - 1) / R for a sum and algbw * (R - 1) / R for a gather.
// Without a launcher it times the single process's no-op, which is the floor of a step's cost.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <memory>
#include <vector>

#include "engine/config.h"
#include "engine/dist/comm.h"
#include "engine/model.h"

namespace {

mg::dist::Comm& comm() {
  static const std::unique_ptr<mg::dist::Comm> c = mg::dist::world();
  return *c;
}

// kIsRate divides by the run's time: bytes moved per iteration times iterations, over seconds.
void set_bandwidth(benchmark::State& state, double bytes, double link_factor) {
  const double moved = bytes * 1e-9 * static_cast<double>(state.iterations());
  state.counters["bytes"] = bytes;
  state.counters["ranks"] = comm().size();
  state.counters["algbw_GB"] = benchmark::Counter(moved, benchmark::Counter::kIsRate);
  state.counters["busbw_GB"] = benchmark::Counter(moved * link_factor, benchmark::Counter::kIsRate);
}

// The conv stack's gradients of a model of `channels` channels: the default model (128) and a
// wider one.
void BM_AllreduceConvGradients(benchmark::State& state) {
  mg::Config c = mg::default_config();
  c.model.channels = {static_cast<int>(state.range(0)), static_cast<int>(state.range(0)),
                      static_cast<int>(state.range(0))};
  int64_t n = 0;
  const mg::TensorLayout layout = mg::Model::param_layout(c);
  for (const mg::TensorSpec& s : layout.specs())
    if (s.name.rfind("conv.", 0) == 0) n = s.offset + s.numel();
  std::vector<float> grads(static_cast<size_t>(n), 1.0f);  // [n]
  for (auto _ : state) {
    comm().allreduce_sum(grads.data(), n);
    benchmark::DoNotOptimize(grads.data());
  }
  const int R = comm().size();
  set_bandwidth(state, static_cast<double>(n) * sizeof(float), R > 1 ? 2.0 * (R - 1) / R : 0.0);
}
BENCHMARK(BM_AllreduceConvGradients)->Arg(128)->Arg(512)->Iterations(200)->Unit(benchmark::kMicrosecond);

// The pooled features of a rank's rows: 2 x 96 anchor and positive rows (the default batch of
// 96 anchors on one rank) of mean and max over 128 channels.
void BM_AllgatherPooled(benchmark::State& state) {
  const int64_t rows = state.range(0), D = 256;
  std::vector<float> mine(static_cast<size_t>(rows * D), 1.0f);           // [rows, D]
  std::vector<float> all(static_cast<size_t>(rows * D * comm().size()));  // [R, rows, D]
  for (auto _ : state) {
    comm().allgather(mine.data(), all.data(), rows * D);
    benchmark::DoNotOptimize(all.data());
  }
  const int R = comm().size();
  set_bandwidth(state, static_cast<double>(rows * D * R) * sizeof(float), static_cast<double>(R - 1) / R);
}
BENCHMARK(BM_AllgatherPooled)->Arg(192)->Iterations(500)->Unit(benchmark::kMicrosecond);

// ZeRO-1's pair over the whole flat buffer (padded to 64 R floats): the reduce-scatter of the
// gradients and the all-gather of the updated parameters, which replace the sum of the conv
// gradients. Each moves (R - 1) / R of the buffer per link.
void BM_ZeroOneScatterGather(benchmark::State& state) {
  mg::Config c = mg::default_config();
  c.model.channels = {static_cast<int>(state.range(0)), static_cast<int>(state.range(0)),
                      static_cast<int>(state.range(0))};
  const int R = comm().size();
  mg::TensorLayout layout = mg::Model::param_layout(c);
  layout.pad_total_to(64 * int64_t{R});
  const int64_t n = layout.total(), slice = n / R;
  std::vector<float> flat(static_cast<size_t>(n), 1.0f);  // [R, slice]
  for (auto _ : state) {
    comm().reduce_scatter_sum(flat.data(), slice);
    comm().allgather_slices(flat.data(), slice);
    benchmark::DoNotOptimize(flat.data());
  }
  set_bandwidth(state, static_cast<double>(n) * sizeof(float), R > 1 ? 2.0 * (R - 1) / R : 0.0);
}
BENCHMARK(BM_ZeroOneScatterGather)->Arg(128)->Arg(512)->Iterations(200)->Unit(benchmark::kMicrosecond);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  if (!comm().leader()) {  // the same iterations, nothing printed
    if (!std::freopen("/dev/null", "w", stdout)) return 1;
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
