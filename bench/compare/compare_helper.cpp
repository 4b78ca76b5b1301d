// melgraph's side of the PyTorch comparison's parity check (bench/compare/compare.py):
//
//   compare_helper init --out CKPT [--config TOML] [--seed S]
//       writes a melgraph checkpoint (weights only, freshly initialised as Model::init_params
//       does) for the config; compare.py builds the PyTorch model from it.
//   compare_helper forward --checkpoint CKPT --audio AUDIO --out OUT [--device cpu|cuda] [--threads N]
//       AUDIO holds "audio" (float32 [B, S]): B = 3 n in the offline layout, or with the
//       contrastive loss B = 2 n (anchors, then their positives) and "hops" (int32 [B, B]).
//       Runs one TrainStep::forward_backward in training mode without dropout (batch norm on
//       the batch's statistics; PyTorch could not draw the same dropout mask) and writes OUT
//       (safetensors, float32): logmel [B, n_mels, F], emb [B, E], loss [1], active [1] and
//       grad.<param> for every parameter.
//
// Timing is not done here: compare.py runs `melgraph bench --json` for that.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "engine/backend_factory.h"
#include "engine/checkpoint.h"
#include "engine/config.h"
#include "engine/model.h"
#include "engine/io/safetensors.h"
#include "engine/train_step.h"

namespace mg {
namespace {

void init(const std::string& out, const std::string& config_path, uint64_t seed) {
  const Config c = config_path.empty() ? default_config() : load_config(config_path);
  auto be = make_cpu_backend(1);
  Model model(c, *be, 3);  // the batch only sizes the activations; the weights do not depend on it
  model.init_params(seed);
  TrainState ts;
  ts.seed = seed;
  save_checkpoint(out, model, nullptr, ts);
  std::printf("checkpoint: %s (%lld parameters)\n", out.c_str(), static_cast<long long>(model.plan().param_count()));
}

std::vector<float> download(Backend& be, const float* p, int64_t n) {
  std::vector<float> h(static_cast<size_t>(n));
  be.to_host(h.data(), p, h.size() * sizeof(float));
  return h;
}

void forward(const std::string& ckpt, const std::string& audio_path, const std::string& out, const std::string& device,
             int threads) {
  Config c = read_checkpoint_config(ckpt);
  c.model.dropout = 0;  // the parameters do not depend on it
  const bool contrastive = c.loss.name == LossKind::Contrastive;
  const int per_anchor = contrastive ? 2 : 3;
  const StFile in = read_safetensors(audio_path);
  const StTensor& a = in.at("audio");
  if (a.shape.size() != 2 || a.shape[0] % per_anchor != 0 || a.shape[1] != c.audio.clip_samples())
    throw std::runtime_error(audio_path + ": 'audio' must be [" + std::to_string(per_anchor) + " n, " +
                             std::to_string(c.audio.clip_samples()) + "] (clip_samples of " + ckpt + "'s config)");
  const int B = static_cast<int>(a.shape[0]);
  const int64_t S = a.shape[1];

  BackendOptions bo;
  parse_device(device, bo);
  bo.threads = threads;
  std::string note;
  auto be = make_backend(bo, &note);
  std::fprintf(stderr, "compare_helper: %s\n", be->describe().c_str());
  Model model(c, *be, B);
  load_checkpoint(ckpt, model, nullptr);
  const std::vector<float> host = a.to_f32();
  float* audio = be->alloc<float>(B * S);  // [B, S]
  be->to_device(audio, host.data(), host.size() * sizeof(float));
  TrainStep step(model);
  if (contrastive) {
    const StTensor& h = in.at("hops");
    if (h.shape != std::vector<int64_t>{B, B})
      throw std::runtime_error(audio_path + ": 'hops' must be int32 [" + std::to_string(B) + ", " + std::to_string(B) + "]");
    const std::vector<int32_t> h32 = h.to_i32();
    step.set_contrastive(std::vector<uint8_t>(h32.begin(), h32.end()), B / 2, c.train.pos_hops, c.train.neg_hops);
  } else {
    step.set_triplets(TrainStep::offline_triplets(B / 3));
  }
  step.forward_backward(audio, B, c.loss);
  const StepStats stats = step.read_stats();
  be->free_bytes(audio);

  StFile f;
  const ModelPlan& p = model.plan();
  const int E = p.embedding;
  f.put_f32("logmel", {B, p.n_mels, p.frames},
            download(*be, model.activations().ptr("mel"), int64_t{B} * p.n_mels * p.frames).data());
  f.put_f32("emb", {B, E}, download(*be, model.activations().ptr("emb"), int64_t{B} * E).data());
  f.put_f32("loss", {1}, &stats.loss);
  f.put_f32("active", {1}, &stats.active);
  for (const TensorSpec& s : model.grads().layout().specs())
    f.put_f32("grad." + s.name, s.shape, download(*be, model.grads().ptr(s.name), s.numel()).data());
  f.metadata["backend"] = be->describe();
  write_safetensors(out, f);
}

}  // namespace
}  // namespace mg

int main(int argc, char** argv) {
  CLI::App app{"melgraph's side of bench/compare/compare.py's parity check", "compare_helper"};
  app.require_subcommand(1);
  std::string out, config, ckpt, audio, device = "cpu";
  uint64_t seed = 1;
  int threads = 0;
  CLI::App* init = app.add_subcommand("init", "Write a freshly initialised checkpoint");
  init->add_option("--out", out, "Checkpoint to write")->required();
  init->add_option("--config", config, "Run config (TOML); default: the built-in defaults");
  init->add_option("--seed", seed, "Weight seed")->capture_default_str();
  CLI::App* fwd = app.add_subcommand("forward", "Embeddings, loss and gradients of one batch");
  fwd->add_option("--checkpoint", ckpt, "melgraph checkpoint")->required()->check(CLI::ExistingFile);
  fwd->add_option("--audio", audio, "safetensors with 'audio' float32 [3 n, S]")->required()->check(CLI::ExistingFile);
  fwd->add_option("--out", out, "Output safetensors")->required();
  fwd->add_option("--device", device, "cpu or cuda")->capture_default_str()->check(CLI::IsMember({"cpu", "cuda"}));
  fwd->add_option("--threads", threads, "CPU threads (0: all cores)")->capture_default_str();
  try {
    app.parse(argc, argv);
    if (init->parsed()) mg::init(out, config, seed);
    if (fwd->parsed()) mg::forward(ckpt, audio, out, device, threads);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "compare_helper: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
