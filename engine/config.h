// The run configuration: audio, mel front end, model, loss and optimizer. Read from TOML
// (toml11); every field has the seed model's default, so an empty file is the default config.
//
//   [audio]  sample_rate = 22050, clip_seconds = 10.0,
//            excerpt = "middle" | "start", excerpt_seconds = 30.0,
//            short_clip = "repeat" | "zero", cache_dtype = "int16" | "float16"
//   [mel]    n_fft = 1024, hop = 512, n_mels = 128, f_min = 0.0, f_max = 0.0 (= sr/2),
//            mel_scale = "htk" | "slaney", norm = "none" | "slaney", power = 2.0, log_eps = 1e-6
//   [model]  channels = [128, 128, 128] (one entry per conv stage), kernel = 4,
//            padding = "valid" | "same", pool = 4 (after every stage but the last),
//            embedding = 128, l2_eps = 1e-12,
//            pooling = "mean" | "mean_max" | "mean_max_l2" (global pooling over time),
//            dropout = 0.0 (before the linear layer; training only)
//   [loss]   margin = 0.2, swap = false, eps = 1e-6
//   [optim]  name = "adam" | "adamw", lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8,
//            weight_decay = 0.0, clip_norm = 0.0 (0 = off)
//   [train]  batch_triplets = 64, seed = 0, steps = 2000, epochs = 0 (> 0: epochs decide),
//            mining = "offline" | "batch_hard" | "semi_hard", pos_hops = 1, neg_hops = 3,
//            warmup_steps = 100, lr_schedule = "cosine" | "constant", min_lr_ratio = 0.0,
//            checkpoint_every = 500, validate_every = 250, early_stopping = 0 (patience in
//            validations; 0 = off), nonfinite = "stop" | "skip", loader_threads = 2
//   [augment] gain_db = 0.0 (uniform in +-gain_db), noise_snr_db = 0.0 (0 = no noise; else
//            white noise at that SNR), shift_seconds = 0.0 (random circular shift up to it)
//   [data]   edges = "", catalog = "", cache = "" (default: <run_dir>/cache), run_dir = "run",
//            top_k = 0 (0 = every item with audio), weighted = false,
//            val_items = 0.1, val_edges = 0.1 (held-out fractions), recall_k = 10
//            Paths are relative to the config file's directory.
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

// Which part of a track is decoded into the cache: the window of excerpt_seconds centred on
// the middle (the seed's source used 30 s previews taken there), or the first excerpt_seconds
// ("the whole track up to a limit").
enum class Excerpt { Middle, Start };
// A cached track shorter than a clip is made a clip long by looping it (repeat) or by
// appending silence (zero).
enum class ShortClip { Repeat, Zero };
// How the cache stores PCM: int16 (exact for 16-bit sources) or IEEE half.
enum class CacheDtype { Int16, Float16 };

struct AudioConfig {
  int sample_rate = 22050;
  double clip_seconds = 10.0;
  Excerpt excerpt = Excerpt::Middle;
  double excerpt_seconds = 30.0;  // >= clip_seconds
  ShortClip short_clip = ShortClip::Repeat;
  CacheDtype cache_dtype = CacheDtype::Int16;
  int64_t clip_samples() const { return static_cast<int64_t>(clip_seconds * sample_rate + 0.5); }
  int64_t excerpt_samples() const {
    return static_cast<int64_t>(excerpt_seconds * sample_rate + 0.5);
  }
};

// Global pooling over time after the last conv stage. mean_max concatenates the mean and the
// max over time ([B, 2C]); mean_max_l2 adds the L2 norm over time, sqrt(sum_t x^2) ([B, 3C]).
// Each clip's row is [mean | max | l2], each block C wide in channel order (engine/model.h).
enum class GlobalPool { Mean, MeanMax, MeanMaxL2 };

struct ModelConfig {
  std::vector<int> channels = {128, 128, 128};
  int kernel = 4;
  Padding padding = Padding::Valid;
  int pool = 4;
  int embedding = 128;
  double l2_eps = 1e-12;
  GlobalPool pooling = GlobalPool::Mean;
  double dropout = 0.0;  // probability, in [0, 1)
};

struct OptimConfig {
  AdamParams adam;  // adam.decoupled selects AdamW
  double clip_norm = 0.0;
};

// Offline: per anchor a random positive within pos_hops and a random negative beyond
// neg_hops (or unreachable). batch_hard / semi_hard: a batch of anchors and positives, the
// negatives mined in the batch from embedding distances, masked by graph distances.
enum class Mining { Offline, BatchHard, SemiHard };
enum class LrSchedule { Cosine, Constant };
enum class NonFinite { Stop, Skip };

struct TrainConfig {
  int batch_triplets = 64;
  uint64_t seed = 0;
  int steps = 2000;
  int epochs = 0;
  Mining mining = Mining::Offline;
  int pos_hops = 1;
  int neg_hops = 3;
  int warmup_steps = 100;
  LrSchedule lr_schedule = LrSchedule::Cosine;
  double min_lr_ratio = 0.0;
  int checkpoint_every = 500;
  int validate_every = 250;
  int early_stopping = 0;
  NonFinite nonfinite = NonFinite::Stop;
  int loader_threads = 2;
};

struct AugmentConfig {
  double gain_db = 0.0;
  double noise_snr_db = 0.0;
  double shift_seconds = 0.0;
};

// Where the run's inputs and outputs are. Relative paths are resolved against the directory
// of the config file by resolve_paths().
struct DataConfig {
  std::string edges, catalog, cache, run_dir = "run";
  int top_k = 0;
  bool weighted = false;
  double val_items = 0.1;
  double val_edges = 0.1;
  int recall_k = 10;
};

struct Config {
  AudioConfig audio;
  MelParams mel;  // mel.sample_rate mirrors audio.sample_rate
  ModelConfig model;
  TripletLossParams loss;
  OptimConfig optim;
  TrainConfig train;
  AugmentConfig augment;
  DataConfig data;
};

Config default_config();
// Parses TOML text; `source` names it in errors. Unknown keys are errors (a typo must not
// silently fall back to a default). Validates the result (validate_config).
Config parse_config(const std::string& toml_text, const std::string& source);
Config load_config(const std::string& path);
// Checks every field's range; throws ConfigError naming the field. Does not check that the
// clip is long enough for the conv stack: ModelPlan does that, with the shortest clip.
void validate_config(const Config& c);
// Applies "section.key=value" overrides (the CLI's --set), each parsed as a TOML value
// ("train.steps=10", "data.edges=\"e.csv\"" or, for a string field, data.edges=e.csv), then
// validates. Errors name the override.
Config apply_overrides(const Config& c, const std::vector<std::string>& overrides);
// Resolves relative data.* paths against `base_dir` (the config file's directory).
void resolve_paths(Config& c, const std::string& base_dir);
// Canonical TOML of every field (round-trips through parse_config); stored in checkpoints.
std::string to_toml(const Config& c);

}  // namespace mg
