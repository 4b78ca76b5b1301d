// Ops and the whole training step through the Backend interface, on the CPU and (when a GPU
// is present) the CUDA backend, at the reference configuration. Each iteration is timed
// from launch to synchronize() (manual time), after a warm-up run, so device work is
// measured whole. Counters: items_per_second = clips/s.
//
//   bench_backend_ops --benchmark_filter=cuda     # the GPU only
#include <benchmark/benchmark.h>

#include <chrono>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/backend_factory.h"
#include "engine/model.h"
#include "engine/optimizer.h"
#include "engine/train_step.h"

namespace mg {
namespace {

struct Ctx {
  std::unique_ptr<Backend> be;
  std::string skip;
};

Ctx& backend_for(const std::string& device) {
  static std::map<std::string, Ctx> cache;
  auto it = cache.find(device);
  if (it != cache.end()) return it->second;
  Ctx c;
  try {
    std::string note;
    c.be = make_backend(BackendOptions{parse_device_choice(device)}, &note);
    if (device == "cuda" && c.be->device() != Device::CUDA) c.be.reset();
  } catch (const std::exception& e) {
    c.skip = e.what();
  }
  if (!c.be && c.skip.empty()) c.skip = "no " + device + " backend";
  return cache.emplace(device, std::move(c)).first->second;
}

float* upload_random(Backend& be, int64_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<float> h(static_cast<size_t>(n));
  for (auto& x : h) x = u(rng);
  float* d = be.alloc<float>(n);
  be.to_device(d, h.data(), h.size() * sizeof(float));
  return d;
}

template <class F>
void timed(benchmark::State& st, Backend& be, F&& run) {
  run();  // warm-up: plans, algorithm searches, first touches
  be.synchronize();
  for (auto _ : st) {
    const auto t0 = std::chrono::steady_clock::now();
    run();
    be.synchronize();
    st.SetIterationTime(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
}

void BM_Mel(benchmark::State& st, const std::string& device) {
  Ctx& c = backend_for(device);
  if (!c.be) return st.SkipWithError(c.skip.c_str());
  Backend& be = *c.be;
  const MelParams p;
  const int B = static_cast<int>(st.range(0));
  const int64_t S = 220500;
  float* audio = upload_random(be, B * S, 1);
  float* out = be.alloc<float>(static_cast<int64_t>(B) * p.n_mels * mel_frames(S, p.hop));
  timed(st, be, [&] { be.mel_forward(audio, out, B, S, p); });
  st.SetItemsProcessed(st.iterations() * B);
  be.free_bytes(audio);
  be.free_bytes(out);
}

void BM_Conv1d(benchmark::State& st, const std::string& device) {
  Ctx& c = backend_for(device);
  if (!c.be) return st.SkipWithError(c.skip.c_str());
  Backend& be = *c.be;
  const Conv1dDims d{192, 128, 128, static_cast<int>(st.range(0)), 4, 0, 0};
  float* x = upload_random(be, static_cast<int64_t>(d.B) * d.Cin * d.Tin, 1);
  float* w = upload_random(be, static_cast<int64_t>(d.Cout) * d.Cin * d.K, 2);
  float* b = upload_random(be, d.Cout, 3);
  float* y = be.alloc<float>(static_cast<int64_t>(d.B) * d.Cout * d.Tout());
  float* dx = be.alloc<float>(static_cast<int64_t>(d.B) * d.Cin * d.Tin);
  float* dw = upload_random(be, static_cast<int64_t>(d.Cout) * d.Cin * d.K, 4);
  float* db = upload_random(be, d.Cout, 5);
  timed(st, be, [&] {
    be.conv1d_forward(x, w, b, y, d);
    be.conv1d_backward(y, x, w, dx, dw, db, d);
  });
  st.counters["FLOP/s"] = benchmark::Counter(6.0 * d.B * d.Cout * d.Cin * d.K * d.Tout(),
                                             benchmark::Counter::kIsIterationInvariantRate);
  st.SetItemsProcessed(st.iterations() * d.B);
  for (float* p : {x, w, b, y, dx, dw, db}) be.free_bytes(p);
}

// The whole step at the reference configuration: 64 triplets = 192 clips of 10 s, Adam.
void BM_TrainStep(benchmark::State& st, const std::string& device) {
  Ctx& c = backend_for(device);
  if (!c.be) return st.SkipWithError(c.skip.c_str());
  Backend& be = *c.be;
  const Config cfg = default_config();
  const int n = cfg.train.batch_triplets, B = 3 * n;
  Model model(cfg, be, B);
  model.init_params(1);
  Optimizer opt(be, model.params().layout(), cfg.optim);
  TrainStep step(model);
  step.set_capture(st.range(0) != 0);
  step.set_triplets(TrainStep::offline_triplets(n));
  float* audio = upload_random(be, B * cfg.audio.clip_samples(), 7);
  step.step(audio, B, cfg.loss, opt, 1e-4);  // eager: plans every shape; the next one is recorded
  timed(st, be, [&] { step.step(audio, B, cfg.loss, opt, 1e-4); });
  st.SetItemsProcessed(st.iterations() * B);
  st.SetLabel(step.replaying() ? "graph replay" : "eager");
  be.free_bytes(audio);
}

BENCHMARK_CAPTURE(BM_Mel, cpu, std::string("cpu"))->Arg(192)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Mel, cuda, std::string("cuda"))->Arg(192)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Conv1d, cpu, std::string("cpu"))->Arg(431)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Conv1d, cuda, std::string("cuda"))->Arg(431)->Arg(107)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_TrainStep, cpu, std::string("cpu"))->Arg(0)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(3);
BENCHMARK_CAPTURE(BM_TrainStep, cuda, std::string("cuda"))->Arg(0)->Arg(1)->UseManualTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace mg

BENCHMARK_MAIN();
