// The collectives of a data-parallel step (engine/dist/comm.h), timed as every rank sees them:
// the sum of the conv stack's gradients and the gather of the pooled features, at the sizes of
// the default model, and ZeRO-1's sums at the slices' owners + all-gather of the whole flat
// buffer. Run it under the launcher, e.g.
//   mpirun -np 2 build/bench/bench_collectives
// Rank 0 reports; the others run the same iterations silently (a collective needs every rank,
// so the iteration counts are fixed rather than chosen by timing, which differs per rank).
// Counters, as NCCL's own tests define them: algbw = bytes / time; busbw, the bandwidth each
// link carries, = algbw * 2 (R - 1) / R for a sum and algbw * (R - 1) / R for a gather.
// Without a launcher it times the single process's no-op, which is the floor of a step's cost.
//
// --device cuda: the same collectives on GPU memory through NCCL, as a GPU run's step calls
// them (one process per GPU under the launcher, each on the GPU of its local rank; alone, one
// rank on GPU 0, NCCL's latency floor). Each iteration waits for the GPU, so a time includes
// that synchronisation (some microseconds).
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "engine/backend_factory.h"
#include "engine/config.h"
#include "engine/dist/comm.h"
#include "engine/dist/nccl_comm.h"
#include "engine/model.h"

namespace {

bool g_on_gpu = false;  // --device cuda

mg::dist::Comm& world() {
  static const std::unique_ptr<mg::dist::Comm> c = mg::dist::world();
  return *c;
}

// The backend whose memory the collectives take: the CPU's (host memory), or the GPU's.
mg::Backend& backend() {
  static const std::unique_ptr<mg::Backend> be = [] {
    mg::BackendOptions o;
    o.device = g_on_gpu ? mg::DeviceChoice::Cuda : mg::DeviceChoice::Cpu;
    o.cuda_device = g_on_gpu ? world().local_rank() : -1;
    std::string note;
    return mg::make_backend(o, &note);
  }();
  return *be;
}

mg::dist::Comm& comm() {
  if (!g_on_gpu) return world();
  static const std::unique_ptr<mg::dist::Comm> nccl =
      mg::dist::nccl_comm(world(), backend().native_stream(), world().local_rank());
  return *nccl;
}

// n floats of the backend's memory, each `value`.
struct Floats {
  Floats(int64_t n, float value) : p(backend().alloc<float>(n)) { backend().fill(p, n, value); }
  ~Floats() { backend().free_bytes(p); }
  Floats(const Floats&) = delete;
  Floats& operator=(const Floats&) = delete;
  float* p;
};

// A GPU's collectives return before they complete: an iteration ends when they have.
void settle() {
  if (g_on_gpu) backend().synchronize();
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
  const Floats grads(n, 1.0f);  // [n]
  for (auto _ : state) {
    comm().allreduce_sum(grads.p, n);
    settle();
  }
  const int R = comm().size();
  set_bandwidth(state, static_cast<double>(n) * sizeof(float), R > 1 ? 2.0 * (R - 1) / R : 0.0);
}
BENCHMARK(BM_AllreduceConvGradients)->Arg(128)->Arg(512)->Iterations(200)->Unit(benchmark::kMicrosecond);

// The pooled features of a rank's rows: 2 x 96 anchor and positive rows (the default batch of
// 96 anchors on one rank) of mean and max over 128 channels.
void BM_AllgatherPooled(benchmark::State& state) {
  const int64_t rows = state.range(0), D = 256;
  const Floats mine(rows * D, 1.0f);                 // [rows, D]
  const Floats all(rows * D * comm().size(), 0.0f);  // [R, rows, D]
  for (auto _ : state) {
    comm().allgather(mine.p, all.p, rows * D);
    settle();
  }
  const int R = comm().size();
  set_bandwidth(state, static_cast<double>(rows * D * R) * sizeof(float), static_cast<double>(R - 1) / R);
}
BENCHMARK(BM_AllgatherPooled)->Arg(192)->Iterations(500)->Unit(benchmark::kMicrosecond);

// ZeRO-1's pair over the whole flat buffer (padded to 64 R floats): the gradients summed at
// their slices' owners (one reduce per owner, as the step does per stage bucket) and the
// all-gather of the updated parameters, which replace the sum of the conv gradients. Each
// moves about (R - 1) / R of the buffer per link.
void BM_ZeroOneReduceGather(benchmark::State& state) {
  mg::Config c = mg::default_config();
  c.model.channels = {static_cast<int>(state.range(0)), static_cast<int>(state.range(0)),
                      static_cast<int>(state.range(0))};
  const int R = comm().size();
  mg::TensorLayout layout = mg::Model::param_layout(c);
  layout.pad_total_to(64 * int64_t{R});
  const int64_t n = layout.total(), slice = n / R;
  const Floats flat(n, 1.0f);  // [R, slice]
  for (auto _ : state) {
    mg::dist::reduce_to_owners(comm(), flat.p, 0, n, slice);
    comm().wait_sums();
    comm().allgather_slices(flat.p, slice);
    settle();
  }
  set_bandwidth(state, static_cast<double>(n) * sizeof(float), R > 1 ? 2.0 * (R - 1) / R : 0.0);
}
BENCHMARK(BM_ZeroOneReduceGather)->Arg(128)->Arg(512)->Iterations(200)->Unit(benchmark::kMicrosecond);

}  // namespace

int main(int argc, char** argv) {
  // --device cuda (or --device=cuda), taken out before Google Benchmark reads the rest.
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--device=cuda" || (a == "--device" && i + 1 < argc && std::strcmp(argv[i + 1], "cuda") == 0)) {
      g_on_gpu = true;
      if (a == "--device") ++i;
      continue;
    }
    argv[kept++] = argv[i];
  }
  argc = kept;
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  try {
    if (g_on_gpu) std::printf("collectives on %s: %s\n", backend().describe().c_str(), comm().describe().c_str());
    if (!comm().leader()) {  // the same iterations, nothing printed
      if (!std::freopen("/dev/null", "w", stdout)) return 1;
    }
    benchmark::RunSpecifiedBenchmarks();
  } catch (const std::exception& e) {  // no GPU, no NCCL: say which, as melgraph does
    std::fprintf(stderr, "bench_collectives: %s\n", e.what());
    return 1;
  }
  benchmark::Shutdown();
  return 0;
}
