#include "engine/perf/smoke.h"

#include <cmath>
#include <cstdio>
#include <memory>

#include "engine/backend.h"
#include "engine/backend_factory.h"
#include "engine/checkpoint.h"
#include "engine/model.h"
#include "engine/optimizer.h"
#include "engine/timer.h"
#include "engine/train_step.h"
#include "kernels/philox.h"

namespace mg {

namespace {

constexpr int kHarmonics = 6;

void synth_clip(float* out, int64_t S, int sample_rate, uint64_t seed, uint64_t item, double f0, uint64_t clip) {
  double amp[kHarmonics];
  for (int h = 0; h < kHarmonics; ++h) amp[h] = philox_uniform(seed, 1000 + item, static_cast<uint64_t>(h));
  const uint64_t stream = 1u << 20 | clip;
  const double phase = 6.283185307179586 * philox_uniform(seed, stream, 0);
  const double gain = 0.2 + 0.3 * philox_uniform(seed, stream, 1);
  const double nyquist = 0.5 * sample_rate;
  for (int64_t i = 0; i < S; ++i) {
    const double t = static_cast<double>(i) / sample_rate;
    double v = 0;
    for (int h = 0; h < kHarmonics && f0 * (h + 1) < nyquist; ++h)
      v += amp[h] * std::sin(6.283185307179586 * f0 * (h + 1) * t + phase * (h + 1));
    const double noise = philox_uniform(seed, stream, static_cast<uint64_t>(i) + 2) - 0.5;
    out[i] = static_cast<float>(gain * v + 0.05 * noise);
  }
}

}  // namespace

std::vector<float> synth_triplet_batch(const Config& c, int n, int rows, uint64_t seed) {
  const int64_t S = c.audio.clip_samples();
  const int sr = c.audio.sample_rate;
  std::vector<float> audio(static_cast<size_t>(rows) * S);
  auto pitch = [](int k) { return 110.0 * std::pow(2.0, (k % 24) / 12.0); };
  auto clip = [&](int slot) { return &audio[static_cast<size_t>(slot) * S]; };
  const auto un = static_cast<uint64_t>(n);
  for (int i = 0; i < n; ++i) {
    const auto item = static_cast<uint64_t>(i), other = un + item;  // clip ids and item ids: the slot
    synth_clip(clip(i), S, sr, seed, item, pitch(i), item);
    synth_clip(clip(n + i), S, sr, seed, item, pitch(i + 5), un + item);
    if (rows == 3 * n) synth_clip(clip(2 * n + i), S, sr, seed, other, pitch(i), 2 * un + item);
  }
  return audio;
}

void run_smoke(const SmokeOptions& o) {
  const Config c = o.config_path.empty() ? default_config() : load_config(o.config_path);
  const bool contrastive = c.loss.name == LossKind::Contrastive;
  const int B = (contrastive ? 2 : 3) * o.triplets;
  BackendOptions bo;
  parse_device(o.device, bo);
  bo.threads = o.threads;
  bo.deterministic = o.deterministic;
  bo.tf32 = o.tf32;
  std::string note;
  auto be = make_backend(bo, &note);
  std::printf("melgraph-smoke: %d %s (%d clips of %.2f s) per step, %s loss, %d steps, seed %llu\n", o.triplets,
              contrastive ? "pairs" : "triplets", B, c.audio.clip_seconds, contrastive ? "contrastive" : "triplet",
              o.steps, static_cast<unsigned long long>(o.seed));
  std::printf("%s\n", note.c_str());

  Model model(c, *be, B);
  std::printf("config: %s\n%s\n", o.config_path.empty() ? "(built-in defaults)" : o.config_path.c_str(),
              model.plan().describe(c).c_str());
  model.init_params(o.seed);
  Optimizer opt(*be, model.params().layout(), c.optim);
  TrainStep step(model);
  step.set_capture(!o.no_graph);
  if (contrastive)
    step.set_contrastive(TrainStep::pair_hops(o.triplets, c.train.neg_hops), o.triplets, c.train.pos_hops,
                         c.train.neg_hops);
  else
    step.set_triplets(TrainStep::offline_triplets(o.triplets));

  const std::vector<float> host_audio = synth_triplet_batch(c, o.triplets, B, o.seed);
  float* audio = be->alloc<float>(static_cast<int64_t>(host_audio.size()));
  be->to_device(audio, host_audio.data(), host_audio.size() * sizeof(float));

  double total_ms = 0;
  for (int s = 1; s <= o.steps; ++s) {
    const auto t0 = WallClock::now();
    step.step(audio, B, c.loss, opt, c.optim.adam.lr);
    const StepStats st = step.read_stats(&opt);
    const double ms = 1000.0 * seconds_since(t0);
    if (s > 2) total_ms += ms;  // step 1 pays for first touches and algorithm searches, step 2 for capture
    std::printf("step %3d  loss %.6f  active %3.0f/%d  grad-norm %.4f  %8.1f ms  %7.1f clips/s\n", s, st.loss,
                st.active, contrastive ? B : o.triplets, st.grad_norm, ms, B / (ms / 1000.0));
  }
  if (o.steps > 2)
    std::printf("mean step after warm-up (steps 3-%d%s): %.1f ms (%.1f clips/s)\n", o.steps,
                step.replaying() ? ", graph replay" : "", total_ms / (o.steps - 2),
                B * (o.steps - 2) / (total_ms / 1000.0));
  be->free_bytes(audio);
  if (!o.save.empty()) {
    TrainState state;
    state.step = opt.step_count();
    state.seed = o.seed;
    save_checkpoint(o.save, model, &opt, state);
    std::printf("checkpoint: %s\n", o.save.c_str());
  }
}

}  // namespace mg
