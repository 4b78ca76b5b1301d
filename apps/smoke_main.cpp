// `melgraph-smoke`: a few training steps on generated triplets, needing no files. It builds
// the model from a config, generates triplets of synthetic audio (see synth_batch), and runs
// forward, fused loss, backward and Adam for a few steps, printing shapes, loss and time per
// step. The loss falls when the whole chain is right, so it is a smoke test a user can read.
// A separate binary that links only the engine (no FFmpeg, no SQLite), so that it travels in
// the GPU bundle (scripts/gpu-check) to machines without those libraries.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include "engine/backend.h"
#include "engine/backend_factory.h"
#include "engine/checkpoint.h"
#include "engine/config.h"
#include "engine/model.h"
#include "engine/optimizer.h"
#include "engine/train_step.h"
#include "kernels/philox.h"

namespace mg {

namespace {

struct DemoOptions {
  std::string config_path;
  int triplets = 8;
  int steps = 5;
  int threads = 0;
  std::string device = "auto";
  bool deterministic = false;
  bool tf32 = false;
  bool no_graph = false;
  uint64_t seed = 0;
  std::string save;
};

// Each generated "item" is a timbre: the amplitudes of 6 harmonics, drawn with Philox from
// (seed, item). A clip plays its item's timbre at some pitch, with random phase, gain and
// noise. Triplet i: the anchor and the positive are item i at two different pitches; the
// negative is another item at the anchor's pitch. So at first the negative looks closer
// (same pitch), and the loss falls only as the model learns to key on timbre. With the
// contrastive loss the batch is the anchors and positives only (TrainStep::pair_hops): every
// other pair's clips are its negatives.
constexpr int kHarmonics = 6;

void synth_clip(float* out, int64_t S, int sample_rate, uint64_t seed, uint64_t item, double f0,
                uint64_t clip) {
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

// Batch layout of TrainStep::offline_triplets: anchors [0, n), positives [n, 2n),
// negatives [2n, 3n); `rows` = 2 n leaves the negatives out (the contrastive layout).
std::vector<float> synth_batch(const Config& c, int n, int rows, uint64_t seed) {
  const int64_t S = c.audio.clip_samples();
  const int sr = c.audio.sample_rate;
  std::vector<float> audio(static_cast<size_t>(rows) * S);
  auto pitch = [](int k) { return 110.0 * std::pow(2.0, (k % 24) / 12.0); };
  auto clip = [&](int slot) { return &audio[static_cast<size_t>(slot) * S]; };
  for (int i = 0; i < n; ++i) {
    const uint64_t item = static_cast<uint64_t>(i), other = static_cast<uint64_t>(n + i);
    synth_clip(clip(i), S, sr, seed, item, pitch(i), static_cast<uint64_t>(i));
    synth_clip(clip(n + i), S, sr, seed, item, pitch(i + 5), static_cast<uint64_t>(n + i));
    if (rows == 3 * n) synth_clip(clip(2 * n + i), S, sr, seed, other, pitch(i), static_cast<uint64_t>(2 * n + i));
  }
  return audio;
}

void run_demo(const DemoOptions& o) {
  const Config c = o.config_path.empty() ? default_config() : load_config(o.config_path);
  const bool contrastive = c.loss.name == LossKind::Contrastive;
  const int B = (contrastive ? 2 : 3) * o.triplets;
  BackendOptions bo;
  bo.device = parse_device_choice(o.device);
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

  const std::vector<float> host_audio = synth_batch(c, o.triplets, B, o.seed);
  float* audio = be->alloc<float>(static_cast<int64_t>(host_audio.size()));
  be->to_device(audio, host_audio.data(), host_audio.size() * sizeof(float));

  using clock = std::chrono::steady_clock;
  double total_ms = 0;
  for (int s = 1; s <= o.steps; ++s) {
    const auto t0 = clock::now();
    step.step(audio, B, c.loss, opt, c.optim.adam.lr);
    const StepStats st = step.read_stats(&opt);
    const double ms = std::chrono::duration<double, std::milli>(clock::now() - t0).count();
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

}  // namespace

}  // namespace mg

int main(int argc, char** argv) {
  using namespace mg;
  auto opts = std::make_shared<DemoOptions>();
  CLI::App app{"melgraph-smoke: train the model for a few steps on generated audio (shapes, loss, time per step)",
               "melgraph-smoke"};
  CLI::App* cmd = &app;
  cmd->add_option("--config", opts->config_path, "Run config (TOML); default: the built-in defaults");
  cmd->add_option("--triplets", opts->triplets,
                  "Triplets per step (3 clips each; with the contrastive loss, pairs of 2 clips)")
      ->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--steps", opts->steps, "Optimizer steps")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--threads", opts->threads, "CPU threads (0: all cores)")->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--device", opts->device, "auto (CUDA when a GPU is present), cpu or cuda")
      ->capture_default_str()->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  cmd->add_flag("--deterministic", opts->deterministic, "CUDA: deterministic algorithms only");
  cmd->add_flag("--tf32", opts->tf32, "CUDA: allow TF32 tensor-core math (faster, ~1e-3 relative error)");
  cmd->add_flag("--no-graph", opts->no_graph, "CUDA: run every step eagerly instead of replaying a CUDA Graph");
  cmd->add_option("--seed", opts->seed, "Seed for the weights and the generated audio")->capture_default_str();
  cmd->add_option("--save", opts->save, "Write a checkpoint (safetensors) after the last step");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    run_demo(*opts);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "melgraph-smoke: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
