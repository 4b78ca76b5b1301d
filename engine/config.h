// The run configuration: audio, mel front end, model, loss and optimizer. Read from TOML
// (toml11); every field has a default, so an empty file is the default config: the seed's
// architecture (log-mel, three conv stages, a linear layer, L2) with the learning recipe that
// docs/performance.md ("Learning quality") measured: per-band input standardisation, [mean |
// max] pooling, batch norm before the head, the contrastive loss with negatives from 3 hops,
// 3 s training clips, and the normalised features as the item embedding.
//
//   [audio]  sample_rate = 22050, clip_seconds = 3.0,
//            excerpt = "middle" | "start", excerpt_seconds = 30.0,
//            short_clip = "repeat" | "zero", cache_dtype = "int16" | "float16"
//   [mel]    n_fft = 1024, hop = 512, n_mels = 128, f_min = 0.0, f_max = 0.0 (= sr/2),
//            mel_scale = "htk" | "slaney", norm = "none" | "slaney", power = 2.0, log_eps = 1e-6
//   [model]  channels = [128, 128, 128] (one entry per conv stage), kernel = 4,
//            padding = "valid" | "same", pool = 4 (after every stage but the last),
//            input_norm = "band" | "none" (log-mel standardised per band, statistics of the
//            training set stored in the checkpoint),
//            embedding = 128, l2_eps = 1e-12,
//            pooling = "mean_max" | "mean" | "mean_max_l2" (global pooling over time),
//            pool_stages = "last" | "all" (which stages' outputs the global pooling reads),
//            head_norm = "batch" | "none" (batch normalisation of the pooled features),
//            embedding_from = "features" | "linear" (which layer is the item embedding),
//            dropout = 0.0 (before the linear layer; training only)
//   [loss]   name = "contrastive" | "triplet", temperature = 0.2 (contrastive),
//            margin = 0.2, swap = false, eps = 1e-6 (triplet)
//   [optim]  name = "adam" | "adamw", lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8,
//            weight_decay = 0.0, clip_norm = 0.0 (0 = off)
//   [train]  batch_triplets = 64, seed = 0, steps = 2000, epochs = 0 (> 0: epochs decide),
//            mining = "offline" | "batch_hard" | "semi_hard" (the triplet loss's negatives),
//            pos_hops = 1, neg_hops = 3,
//            warmup_steps = 100, lr_schedule = "cosine" | "constant", min_lr_ratio = 0.0,
//            checkpoint_every = 500, validate_every = 250, early_stopping = 0 (patience in
//            validations; 0 = off), nonfinite = "stop" | "skip", loader_threads = 2,
//            precision = "fp32" | "bf16" (conv and linear in bf16 with float32 sums, master
//            weights, gradients and Adam state in float32: kernels/bf16_cpu.h; the CPU
//            emulates it, slower than fp32), zero = 0 | 1 (ZeRO-1 in a data-parallel run:
//            Adam's moments sharded over the ranks, gradients summed at their slice's rank,
//            parameters all-gathered; with optim.clip_norm the summed gradients are all-gathered too)
//   [augment] gain_db = 0.0 (uniform in +-gain_db), noise_snr_db = 0.0 (0 = no noise; else
//            white noise at that SNR), shift_seconds = 0.0 (random circular shift up to it)
//   [data]   edges = "", catalog = "", cache = "" (default: <run_dir>/cache), run_dir = "run",
//            top_k = 0 (0 = every item with audio), weighted = false,
//            val_items = 0.1, val_edges = 0.1 (held-out fractions), recall_k = 10,
//            holdout_by = "" (a catalog column, e.g. "album": val_items is then the fraction
//            of that column's values held out, each with all its items and edges),
//            skip_bad_lines = false (malformed edge and catalog lines skipped and counted)
//            Paths are relative to the config file's directory.
// Sizes have upper bounds (validate: the message names the field and the range): channels and
// embedding <= 65536, kernel and pool <= 4096, batch_triplets <= 2^20, loader_threads <= 1024,
// recall_k <= 100000; gain_db <= 60, noise_snr_db <= 120.
#pragma once
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/contrastive_loss_cpu.h"
#include "kernels/mel_cpu.h"
#include "kernels/optim_cpu.h"
#include "kernels/precision.h"
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
  double clip_seconds = 3.0;
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
// Features per channel of the global pooling (k): mean 1, mean_max 2, mean_max_l2 3.
int pooled_features(GlobalPool p);

// Which conv stages the global pooling reads. Last: the last stage's output (the seed's).
// All: every stage's output (after its max-pool), each pooled as model.pooling says and
// concatenated in stage order, so the head sees k (C_0 + C_1 + ...) features: multi-level
// aggregation (Lee et al. 2017, "Multi-Level and Multi-Scale Feature Aggregation Using
// Pre-trained CNNs for Music Auto-tagging"): the early stages' timbre statistics are the
// least specific to the training items.
enum class PoolStages { Last, All };

// Normalisation of the pooled features before the head (kernels/batchnorm_cpu.h): batch
// statistics in training, running statistics in evaluation (torch.nn.BatchNorm1d). Mean-pooled
// ReLU features are all positive and of very different scales; centred and scaled, every
// channel can move the embedding.
enum class HeadNorm { None, Batch };

// What the model's embedding of an item is (validation, the index, queries). Linear: the
// L2-normalised output of the linear layer, model.embedding wide (the seed's). Features: the
// L2-normalised pooled features after head_norm, k C_last wide; the linear layer is then a
// projection head that only the training loss sees (SimCLR, Chen et al. 2020: the layer before
// the projection keeps what the loss's invariances would throw away, and transfers better).
enum class EmbeddingFrom { Linear, Features };

// Standardisation of the log-mel before the first conv (kernels/band_norm_cpu.h): per band, by
// the mean and standard deviation the trainer measures on the training set before step 0.
enum class InputNorm { None, Band };

struct ModelConfig {
  std::vector<int> channels = {128, 128, 128};
  int kernel = 4;
  Padding padding = Padding::Valid;
  int pool = 4;
  InputNorm input_norm = InputNorm::Band;
  int embedding = 128;
  double l2_eps = 1e-12;
  GlobalPool pooling = GlobalPool::MeanMax;
  PoolStages pool_stages = PoolStages::Last;
  HeadNorm head_norm = HeadNorm::Batch;
  EmbeddingFrom embedding_from = EmbeddingFrom::Features;
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

// The training loss. Triplet (kernels/triplet_loss_cpu.h): margin on the cosine distance over
// offline or mined triplets. Contrastive (kernels/contrastive_loss_cpu.h): a softmax at
// `temperature` over every row of the batch (B anchors and their B positives), graph neighbours
// within train.pos_hops the positives and rows at train.neg_hops or more the negatives; it
// needs no mining, and train.mining does not apply to it.
enum class LossKind { Triplet, Contrastive };
struct LossConfig : TripletLossParams {
  LossKind name = LossKind::Contrastive;
  double temperature = 0.2;
  bool operator==(const LossConfig& o) const {
    return name == o.name && margin == o.margin && swap == o.swap && eps == o.eps && temperature == o.temperature;
  }
};
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
  Precision precision = Precision::F32;
  int zero = 0;
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
  double val_items = 0.1;  // of the items, or of the holdout_by groups
  // Empty: items are held out one by one. A catalog column (album, artist): whole groups are
  // held out (cold start), so no excerpt of a held-out album is trained on. An item whose value
  // is empty is a group of its own.
  std::string holdout_by;
  double val_edges = 0.1;
  int recall_k = 10;
  // Malformed edge-list lines, catalog rows and repeated catalog ids skipped and counted
  // instead of stopping the run (train --skip-bad-lines).
  bool skip_bad_lines = false;
};

struct Config {
  AudioConfig audio;
  MelParams mel;  // mel.sample_rate mirrors audio.sample_rate
  ModelConfig model;
  LossConfig loss;
  OptimConfig optim;
  TrainConfig train;
  AugmentConfig augment;
  DataConfig data;
};

Config default_config();
// Parses TOML text; `source` names it in errors. Unknown keys are errors (a typo must not
// silently fall back to a default). Validates the result (validate_config).
Config parse_config(const std::string& toml_text, const std::string& source);
// The same with every field the text does not set taken from `base` instead of the defaults
// (a checkpoint of an older format, written before some fields existed).
Config parse_config(const std::string& toml_text, const std::string& source, const Config& base);
Config load_config(const std::string& path);
// Checks every field's range; throws ConfigError naming the field. Does not check that the
// clip is long enough for the conv stack: ModelPlan does that, with the shortest clip.
void validate_config(const Config& c);
// The contrastive loss's parameters: loss.temperature and train.pos_hops / neg_hops.
ContrastiveLossParams contrastive_params(const Config& c);
// Whether the triplet loss mines its negatives in the batch (train.mining; the contrastive loss
// ignores it: every row of its batch is a negative already).
bool mines_in_batch(const Config& c);
// Whether a training batch holds anchors and positives only, with the graph distances between
// its rows (in-batch mining or the contrastive loss), rather than offline triplets.
bool in_batch_layout(const Config& c);
// Clips in one training batch: 2 (anchor, positive) or 3 (with the negative) per
// train.batch_triplets.
int64_t batch_rows(const Config& c);
// What train.batch_triplets counts, for messages: "anchor pairs" (contrastive loss) or "triplets".
const char* batch_unit(const Config& c);
// Applies "section.key=value" overrides (the CLI's --set), each parsed as a TOML value
// ("train.steps=10", "data.edges=\"e.csv\"" or, for a string field, data.edges=e.csv), then
// validates. Errors name the override.
Config apply_overrides(const Config& c, const std::vector<std::string>& overrides);
// Resolves relative data.* paths against `base_dir` (the config file's directory).
void resolve_paths(Config& c, const std::string& base_dir);
// Canonical TOML of every field (round-trips through parse_config); stored in checkpoints.
std::string to_toml(const Config& c);

}  // namespace mg
