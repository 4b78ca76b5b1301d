// The run configuration: audio, mel front end, model, loss and optimizer. Read from TOML
// (toml11); every field has the seed model's default, so an empty file is the default config.
//
//   [audio]  sample_rate = 22050, clip_seconds = 10.0
//   [mel]    n_fft = 1024, hop = 512, n_mels = 128, f_min = 0.0, f_max = 0.0 (= sr/2),
//            mel_scale = "htk" | "slaney", norm = "none" | "slaney", power = 2.0, log_eps = 1e-6
//   [model]  channels = [128, 128, 128] (one entry per conv stage), kernel = 4,
//            padding = "valid" | "same", pool = 4 (after every stage but the last),
//            embedding = 128, l2_eps = 1e-12
//   [loss]   margin = 0.2, swap = false, eps = 1e-6
//   [optim]  name = "adam" | "adamw", lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8,
//            weight_decay = 0.0, clip_norm = 0.0 (0 = off)
//   [train]  batch_triplets = 64, seed = 0
#pragma once
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/mel_cpu.h"
#include "kernels/optim_cpu.h"
#include "kernels/triplet_loss_cpu.h"

namespace mg {

// Errors name the source (file path), the field (e.g. "model.kernel") and what is expected.
struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum class Padding { Valid, Same };

struct AudioConfig {
  int sample_rate = 22050;
  double clip_seconds = 10.0;
  int64_t clip_samples() const { return static_cast<int64_t>(clip_seconds * sample_rate + 0.5); }
};

struct ModelConfig {
  std::vector<int> channels = {128, 128, 128};
  int kernel = 4;
  Padding padding = Padding::Valid;
  int pool = 4;
  int embedding = 128;
  double l2_eps = 1e-12;
};

struct OptimConfig {
  AdamParams adam;  // adam.decoupled selects AdamW
  double clip_norm = 0.0;
};

struct TrainConfig {
  int batch_triplets = 64;
  uint64_t seed = 0;
};

struct Config {
  AudioConfig audio;
  MelParams mel;  // mel.sample_rate mirrors audio.sample_rate
  ModelConfig model;
  TripletLossParams loss;
  OptimConfig optim;
  TrainConfig train;
};

Config default_config();
// Parses TOML text; `source` names it in errors. Unknown keys are errors (a typo must not
// silently fall back to a default). Validates the result (validate_config).
Config parse_config(const std::string& toml_text, const std::string& source);
Config load_config(const std::string& path);
// Checks every field's range; throws ConfigError naming the field. Does not check that the
// clip is long enough for the conv stack: ModelPlan does that, with the shortest clip.
void validate_config(const Config& c);
// Canonical TOML of every field (round-trips through parse_config); stored in checkpoints.
std::string to_toml(const Config& c);

}  // namespace mg
