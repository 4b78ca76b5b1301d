#include "engine/config.h"

#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "engine/io/utf8.h"
#include "tests/test_support.h"

namespace mg {
namespace {

// Every field of both configs, so a round-trip test notices any field the writer drops.
void expect_same(const Config& a, const Config& b) {
  EXPECT_EQ(a.audio.sample_rate, b.audio.sample_rate);
  EXPECT_EQ(a.audio.clip_seconds, b.audio.clip_seconds);
  EXPECT_EQ(a.audio.excerpt, b.audio.excerpt);
  EXPECT_EQ(a.audio.excerpt_seconds, b.audio.excerpt_seconds);
  EXPECT_EQ(a.audio.short_clip, b.audio.short_clip);
  EXPECT_EQ(a.audio.cache_dtype, b.audio.cache_dtype);
  EXPECT_EQ(a.mel.sample_rate, b.mel.sample_rate);
  EXPECT_EQ(a.mel.n_fft, b.mel.n_fft);
  EXPECT_EQ(a.mel.hop, b.mel.hop);
  EXPECT_EQ(a.mel.n_mels, b.mel.n_mels);
  EXPECT_EQ(a.mel.f_min, b.mel.f_min);
  EXPECT_EQ(a.mel.f_max, b.mel.f_max);
  EXPECT_EQ(a.mel.scale, b.mel.scale);
  EXPECT_EQ(a.mel.norm, b.mel.norm);
  EXPECT_EQ(a.mel.power, b.mel.power);
  EXPECT_EQ(a.mel.log_eps, b.mel.log_eps);
  EXPECT_EQ(a.model.channels, b.model.channels);
  EXPECT_EQ(a.model.kernel, b.model.kernel);
  EXPECT_EQ(a.model.padding, b.model.padding);
  EXPECT_EQ(a.model.pool, b.model.pool);
  EXPECT_EQ(a.model.embedding, b.model.embedding);
  EXPECT_EQ(a.model.l2_eps, b.model.l2_eps);
  EXPECT_EQ(a.model.pooling, b.model.pooling);
  EXPECT_EQ(a.model.pool_stages, b.model.pool_stages);
  EXPECT_EQ(a.model.input_norm, b.model.input_norm);
  EXPECT_EQ(a.model.head_norm, b.model.head_norm);
  EXPECT_EQ(a.model.embedding_from, b.model.embedding_from);
  EXPECT_EQ(a.model.dropout, b.model.dropout);
  EXPECT_EQ(a.loss.name, b.loss.name);
  EXPECT_EQ(a.loss.temperature, b.loss.temperature);
  EXPECT_EQ(a.loss.margin, b.loss.margin);
  EXPECT_EQ(a.loss.swap, b.loss.swap);
  EXPECT_EQ(a.loss.eps, b.loss.eps);
  EXPECT_EQ(a.optim.adam.lr, b.optim.adam.lr);
  EXPECT_EQ(a.optim.adam.beta1, b.optim.adam.beta1);
  EXPECT_EQ(a.optim.adam.beta2, b.optim.adam.beta2);
  EXPECT_EQ(a.optim.adam.eps, b.optim.adam.eps);
  EXPECT_EQ(a.optim.adam.weight_decay, b.optim.adam.weight_decay);
  EXPECT_EQ(a.optim.adam.decoupled, b.optim.adam.decoupled);
  EXPECT_EQ(a.optim.clip_norm, b.optim.clip_norm);
  EXPECT_EQ(a.train.batch_triplets, b.train.batch_triplets);
  EXPECT_EQ(a.train.seed, b.train.seed);
  EXPECT_EQ(a.train.steps, b.train.steps);
  EXPECT_EQ(a.train.epochs, b.train.epochs);
  EXPECT_EQ(a.train.mining, b.train.mining);
  EXPECT_EQ(a.train.pos_hops, b.train.pos_hops);
  EXPECT_EQ(a.train.neg_hops, b.train.neg_hops);
  EXPECT_EQ(a.train.warmup_steps, b.train.warmup_steps);
  EXPECT_EQ(a.train.lr_schedule, b.train.lr_schedule);
  EXPECT_EQ(a.train.min_lr_ratio, b.train.min_lr_ratio);
  EXPECT_EQ(a.train.checkpoint_every, b.train.checkpoint_every);
  EXPECT_EQ(a.train.validate_every, b.train.validate_every);
  EXPECT_EQ(a.train.early_stopping, b.train.early_stopping);
  EXPECT_EQ(a.train.nonfinite, b.train.nonfinite);
  EXPECT_EQ(a.train.loader_threads, b.train.loader_threads);
  EXPECT_EQ(a.augment.gain_db, b.augment.gain_db);
  EXPECT_EQ(a.augment.noise_snr_db, b.augment.noise_snr_db);
  EXPECT_EQ(a.augment.shift_seconds, b.augment.shift_seconds);
  EXPECT_EQ(a.data.edges, b.data.edges);
  EXPECT_EQ(a.data.catalog, b.data.catalog);
  EXPECT_EQ(a.data.cache, b.data.cache);
  EXPECT_EQ(a.data.run_dir, b.data.run_dir);
  EXPECT_EQ(a.data.top_k, b.data.top_k);
  EXPECT_EQ(a.data.weighted, b.data.weighted);
  EXPECT_EQ(a.data.val_items, b.data.val_items);
  EXPECT_EQ(a.data.val_edges, b.data.val_edges);
  EXPECT_EQ(a.data.recall_k, b.data.recall_k);
  EXPECT_EQ(a.data.holdout_by, b.data.holdout_by);
}

// The message of the ConfigError that parsing `text` throws ("" when it parses).
std::string parse_error(const std::string& text) {
  try {
    parse_config(text, "run.toml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

#define EXPECT_PARSE_ERROR(text, ...)                                 \
  do {                                                                \
    const std::string msg_ = parse_error(text);                       \
    ASSERT_FALSE(msg_.empty()) << "parsed without error:\n" << text;  \
    EXPECT_NE(msg_.find("run.toml"), std::string::npos) << msg_;      \
    for (const char* part_ : {__VA_ARGS__})                           \
      EXPECT_NE(msg_.find(part_), std::string::npos) << "'" << part_ << "' not in: " << msg_; \
  } while (0)

// The seed's architecture with the learning recipe (engine/config.h; docs/performance.md).
TEST(Config, DefaultsAreTheSeedArchitectureWithTheRecipe) {
  const Config c = default_config();
  EXPECT_EQ(c.audio.sample_rate, 22050);
  EXPECT_EQ(c.audio.clip_seconds, 3.0);
  EXPECT_EQ(c.audio.clip_samples(), 66150);
  EXPECT_EQ(c.model.input_norm, InputNorm::Band);
  EXPECT_EQ(c.model.pooling, GlobalPool::MeanMax);
  EXPECT_EQ(c.model.head_norm, HeadNorm::Batch);
  EXPECT_EQ(c.model.embedding_from, EmbeddingFrom::Features);
  EXPECT_EQ(c.model.dropout, 0.0);
  EXPECT_EQ(c.loss.name, LossKind::Contrastive);
  EXPECT_EQ(c.loss.temperature, 0.2);
  EXPECT_EQ(c.train.neg_hops, 3);
  EXPECT_EQ(c.mel.sample_rate, 22050);
  EXPECT_EQ(c.mel.n_fft, 1024);
  EXPECT_EQ(c.mel.hop, 512);
  EXPECT_EQ(c.mel.n_mels, 128);
  EXPECT_EQ(c.model.channels, (std::vector<int>{128, 128, 128}));
  EXPECT_EQ(c.model.kernel, 4);
  EXPECT_EQ(c.model.padding, Padding::Valid);
  EXPECT_EQ(c.model.pool, 4);
  EXPECT_EQ(c.model.embedding, 128);
  EXPECT_EQ(c.loss.margin, 0.2);
  EXPECT_FALSE(c.optim.adam.decoupled);
  EXPECT_EQ(c.optim.adam.lr, 1e-3);
  EXPECT_EQ(c.train.batch_triplets, 64);
  EXPECT_NO_THROW(validate_config(c));
}

TEST(Config, EmptyFileIsTheDefaultConfig) {
  expect_same(parse_config("", "empty.toml"), default_config());
  expect_same(parse_config("# only a comment\n\n", "comment.toml"), default_config());
  // A present but empty table changes nothing either.
  expect_same(parse_config("[model]\n[optim]\n", "tables.toml"), default_config());
}

TEST(Config, ParsesEveryField) {
  const Config c = parse_config(R"(
[audio]
sample_rate = 16000
clip_seconds = 7          # an integer is accepted for a float field
[mel]
n_fft = 512
hop = 160
n_mels = 80
f_min = 30.5
f_max = 7600.0
mel_scale = "slaney"
norm = "slaney"
power = 1.0
log_eps = 1e-5
[model]
channels = [64, 96]
kernel = 5
padding = "same"
pool = 3
embedding = 48
l2_eps = 1e-10
input_norm = "none"
head_norm = "none"
embedding_from = "linear"
[loss]
name = "triplet"
temperature = 0.05
margin = 0.35
swap = true
eps = 1e-7
[optim]
name = "adamw"
lr = 3e-4
beta1 = 0.85
beta2 = 0.995
eps = 1e-7
weight_decay = 0.01
clip_norm = 1.5
[train]
batch_triplets = 17
seed = 12345678901
)",
                                "full.toml");
  EXPECT_EQ(c.audio.sample_rate, 16000);
  EXPECT_EQ(c.audio.clip_seconds, 7.0);
  EXPECT_EQ(c.mel.sample_rate, 16000) << "mel.sample_rate mirrors audio.sample_rate";
  EXPECT_EQ(c.mel.n_fft, 512);
  EXPECT_EQ(c.mel.hop, 160);
  EXPECT_EQ(c.mel.n_mels, 80);
  EXPECT_EQ(c.mel.f_min, 30.5);
  EXPECT_EQ(c.mel.f_max, 7600.0);
  EXPECT_EQ(c.mel.scale, MelScale::Slaney);
  EXPECT_EQ(c.mel.norm, MelNorm::Slaney);
  EXPECT_EQ(c.mel.power, 1.0);
  EXPECT_EQ(c.mel.log_eps, 1e-5);
  EXPECT_EQ(c.model.channels, (std::vector<int>{64, 96}));
  EXPECT_EQ(c.model.kernel, 5);
  EXPECT_EQ(c.model.padding, Padding::Same);
  EXPECT_EQ(c.model.pool, 3);
  EXPECT_EQ(c.model.embedding, 48);
  EXPECT_EQ(c.model.l2_eps, 1e-10);
  EXPECT_EQ(c.model.input_norm, InputNorm::None);
  EXPECT_EQ(c.model.head_norm, HeadNorm::None);
  EXPECT_EQ(c.model.embedding_from, EmbeddingFrom::Linear);
  EXPECT_EQ(c.loss.name, LossKind::Triplet);
  EXPECT_EQ(c.loss.temperature, 0.05);
  EXPECT_EQ(c.loss.margin, 0.35);
  EXPECT_TRUE(c.loss.swap);
  EXPECT_EQ(c.loss.eps, 1e-7);
  EXPECT_TRUE(c.optim.adam.decoupled);
  EXPECT_EQ(c.optim.adam.lr, 3e-4);
  EXPECT_EQ(c.optim.adam.beta1, 0.85);
  EXPECT_EQ(c.optim.adam.beta2, 0.995);
  EXPECT_EQ(c.optim.adam.eps, 1e-7);
  EXPECT_EQ(c.optim.adam.weight_decay, 0.01);
  EXPECT_EQ(c.optim.clip_norm, 1.5);
  EXPECT_EQ(c.train.batch_triplets, 17);
  EXPECT_EQ(c.train.seed, 12345678901u);
}

TEST(Config, RecipeChoicesAndTheirErrors) {
  EXPECT_EQ(parse_config("[loss]\nname = \"triplet\"\n", "a.toml").loss.name, LossKind::Triplet);
  EXPECT_PARSE_ERROR("[loss]\nname = \"infonce\"\n", "loss.name", "contrastive", "triplet");
  EXPECT_PARSE_ERROR("[loss]\ntemperature = 0.0\n", "loss.temperature", "> 0");
  EXPECT_PARSE_ERROR("[model]\nhead_norm = \"layer\"\n", "model.head_norm", "batch");
  EXPECT_PARSE_ERROR("[model]\ninput_norm = \"global\"\n", "model.input_norm", "band");
  EXPECT_PARSE_ERROR("[model]\nembedding_from = \"pooled\"\n", "model.embedding_from", "features");
  EXPECT_EQ(parse_config("[model]\npool_stages = \"all\"\n", "a.toml").model.pool_stages, PoolStages::All);
  EXPECT_PARSE_ERROR("[model]\npool_stages = \"first\"\n", "model.pool_stages", "last", "all");
  // Mining belongs to the triplet loss: with the contrastive loss it is accepted and unused.
  const Config c = parse_config("[train]\nmining = \"batch_hard\"\n", "a.toml");
  EXPECT_FALSE(mines_in_batch(c));
  EXPECT_TRUE(in_batch_layout(c));
  Config t = c;
  t.loss.name = LossKind::Triplet;
  EXPECT_TRUE(mines_in_batch(t));
  t.train.mining = Mining::Offline;
  EXPECT_FALSE(in_batch_layout(t));
}

TEST(Config, OptimNameSelectsAdamOrAdamW) {
  EXPECT_FALSE(parse_config("[optim]\nname = \"adam\"\n", "a.toml").optim.adam.decoupled);
  EXPECT_TRUE(parse_config("[optim]\nname = \"adamw\"\n", "a.toml").optim.adam.decoupled);
}

TEST(Config, DefaultRoundTripsThroughToml) {
  const Config d = default_config();
  const std::string text = to_toml(d);
  expect_same(parse_config(text, "defaults.toml"), d);
  // Canonical: writing the parsed config again gives the same text.
  EXPECT_EQ(to_toml(parse_config(text, "defaults.toml")), text);
}

TEST(Config, EveryFieldRoundTripsThroughToml) {
  Config c;
  c.audio.sample_rate = 44100;
  c.audio.clip_seconds = 3.0 / 7.0;  // no short decimal: needs all 17 digits to survive
  c.audio.excerpt = Excerpt::Start;
  c.audio.excerpt_seconds = 600.0 / 7.0;
  c.audio.short_clip = ShortClip::Zero;
  c.audio.cache_dtype = CacheDtype::Float16;
  c.model.pooling = GlobalPool::MeanMaxL2;
  c.model.pool_stages = PoolStages::All;
  c.model.dropout = 0.25;
  c.train.steps = 17;
  c.train.epochs = 3;
  c.train.mining = Mining::SemiHard;
  c.train.pos_hops = 2;
  c.train.neg_hops = 5;
  c.train.warmup_steps = 7;
  c.train.lr_schedule = LrSchedule::Constant;
  c.train.min_lr_ratio = 0.05;
  c.train.checkpoint_every = 11;
  c.train.validate_every = 13;
  c.train.early_stopping = 4;
  c.train.nonfinite = NonFinite::Skip;
  c.train.loader_threads = 3;
  c.augment.gain_db = 6.0;
  c.augment.noise_snr_db = 30.0;
  c.augment.shift_seconds = 0.1;
  c.data.edges = "graph/edges \"quoted\" \\ tab\there.csv";
  c.data.catalog = "catalog.csv";
  c.data.cache = "/abs/cache";
  c.data.run_dir = "runs/one";
  c.data.top_k = 5000;
  c.data.weighted = true;
  c.data.val_items = 0.2;
  c.data.val_edges = 0.15;
  c.data.recall_k = 50;
  c.data.holdout_by = "album";
  c.mel.sample_rate = 44100;
  c.mel.n_fft = 2048;
  c.mel.hop = 441;
  c.mel.n_mels = 96;
  c.mel.f_min = 0.1 + 0.2;  // 0.30000000000000004
  c.mel.f_max = 20000.0 / 3.0;
  c.mel.scale = MelScale::Slaney;
  c.mel.norm = MelNorm::Slaney;
  c.mel.power = 1.0;
  c.mel.log_eps = 1.2345678901234567e-9;
  c.model.channels = {33, 65, 17, 129};
  c.model.kernel = 7;
  c.model.padding = Padding::Same;
  c.model.pool = 2;
  c.model.embedding = 77;
  c.model.l2_eps = 3e-13;
  c.model.input_norm = InputNorm::None;
  c.model.head_norm = HeadNorm::None;
  c.model.embedding_from = EmbeddingFrom::Linear;
  c.loss.name = LossKind::Triplet;
  c.loss.temperature = 0.07;
  c.loss.margin = 0.0;
  c.loss.swap = true;
  c.loss.eps = 2.5e-8;
  c.optim.adam.lr = 1.0 / 3.0;
  c.optim.adam.beta1 = 0.0;
  c.optim.adam.beta2 = 0.9999;
  c.optim.adam.eps = 1e-12;
  c.optim.adam.weight_decay = 0.05;
  c.optim.adam.decoupled = true;
  c.optim.clip_norm = 250.0;
  c.train.batch_triplets = 5;
  c.train.seed = 9223372036854775807ull;  // the largest seed TOML can hold
  ASSERT_NO_THROW(validate_config(c));
  const std::string text = to_toml(c);
  expect_same(parse_config(text, "full.toml"), c);
  EXPECT_EQ(to_toml(parse_config(text, "full.toml")), text);
}

TEST(Config, ToTomlWritesEveryKey) {
  const std::string text = to_toml(default_config());
  for (const char* key : {"[audio]",
                          "sample_rate =",
                          "clip_seconds = 3.0",
                          "input_norm = \"band\"",
                          "pooling = \"mean_max\"",
                          "pool_stages = \"last\"",
                          "head_norm = \"batch\"",
                          "embedding_from = \"features\"",
                          "name = \"contrastive\"",
                          "temperature = 0.2",
                          "holdout_by = \"\"",
                          "excerpt = \"middle\"",
                          "excerpt_seconds = 30.0",
                          "short_clip = \"repeat\"",
                          "cache_dtype = \"int16\"",
                          "[mel]",
                          "n_fft =",
                          "hop =",
                          "n_mels =",
                          "f_min =",
                          "f_max =",
                          "mel_scale = \"htk\"",
                          "norm = \"none\"",
                          "power =",
                          "log_eps =",
                          "[model]",
                          "channels = [128, 128, 128]",
                          "kernel = 4",
                          "padding = \"valid\"",
                          "pool = 4",
                          "embedding = 128",
                          "l2_eps =",
                          "[loss]",
                          "margin =",
                          "swap = false",
                          "[optim]",
                          "name = \"adam\"",
                          "lr =",
                          "beta1 =",
                          "beta2 =",
                          "weight_decay =",
                          "clip_norm =",
                          "[train]",
                          "batch_triplets = 64",
                          "seed = 0"})
    EXPECT_NE(text.find(key), std::string::npos) << key << " missing from:\n" << text;
  // mel.sample_rate is not a key of its own.
  const size_t mel = text.find("[mel]");
  EXPECT_EQ(text.find("sample_rate", mel), std::string::npos) << text;
}

TEST(Config, UnknownKeysAndTablesAreErrors) {
  EXPECT_PARSE_ERROR("[model]\nkernal = 3\n", "model.kernal", "did you mean 'model.kernel'");
  EXPECT_PARSE_ERROR("[modle]\nkernel = 3\n", "[modle]", "did you mean 'model'");
  EXPECT_PARSE_ERROR("[optim]\nlearning_rate = 0.1\n", "optim.learning_rate", "known keys");
  EXPECT_PARSE_ERROR("[mel.extra]\nx = 1\n", "mel.extra");
  EXPECT_PARSE_ERROR("[whatever]\n", "[whatever]");
  EXPECT_PARSE_ERROR("kernel = 3\n", "'kernel'", "model.kernel");
  // mel.sample_rate mirrors audio.sample_rate and cannot be set on its own.
  EXPECT_PARSE_ERROR("[mel]\nsample_rate = 16000\n", "mel.sample_rate", "did you mean 'audio.sample_rate'");
}

TEST(Config, WrongTypesAreErrors) {
  EXPECT_PARSE_ERROR("[model]\nkernel = \"4\"\n", "run.toml:2", "model.kernel", "integer", "string");
  EXPECT_PARSE_ERROR("[model]\nkernel = 4.0\n", "model.kernel", "integer");
  EXPECT_PARSE_ERROR("[audio]\nclip_seconds = \"10\"\n", "audio.clip_seconds", "number");
  EXPECT_PARSE_ERROR("[loss]\nswap = 1\n", "loss.swap", "true or false");
  EXPECT_PARSE_ERROR("[model]\nchannels = 128\n", "model.channels", "array");
  EXPECT_PARSE_ERROR("[model]\nchannels = [128, \"x\"]\n", "model.channels[1]", "integer");
  EXPECT_PARSE_ERROR("[model]\npadding = \"vaild\"\n", "model.padding", "\"valid\"", "did you mean 'valid'");
  EXPECT_PARSE_ERROR("[model]\npadding = 0\n", "model.padding", "\"same\"");
  EXPECT_PARSE_ERROR("[optim]\nname = \"sgd\"\n", "optim.name", "\"adamw\"");
  EXPECT_PARSE_ERROR("[mel]\nmel_scale = \"HTK\"\n", "mel.mel_scale", "did you mean 'htk'");
  EXPECT_PARSE_ERROR("[mel]\nnorm = true\n", "mel.norm", "\"slaney\"");
  EXPECT_PARSE_ERROR("model = 3\n", "model must be a table");
  EXPECT_PARSE_ERROR("[model]\nkernel = 3000000000\n", "model.kernel", "32-bit");
  EXPECT_PARSE_ERROR("[train]\nseed = -1\n", "train.seed", ">= 0");
  // toml11 saturates these instead of failing; they must not become DBL_MAX / INT64_MAX / 0.
  EXPECT_PARSE_ERROR("[optim]\nlr = 1e400\n", "optim.lr", "out of range");
  EXPECT_PARSE_ERROR("[optim]\neps = 1e-400\n", "optim.eps", "out of range");
  EXPECT_PARSE_ERROR("[train]\nseed = 99_999_999_999_999_999_999\n", "train.seed", "out of range");
  EXPECT_PARSE_ERROR("[train]\nseed = 0x1_0000_0000_0000_0000\n", "train.seed", "out of range");
  // The limits themselves are fine.
  EXPECT_EQ(parse_config("[train]\nseed = 9223372036854775807\n", "s.toml").train.seed,
            9223372036854775807ull);
  EXPECT_EQ(parse_config("[train]\nseed = 0x7fff_ffff_ffff_ffff\n", "s.toml").train.seed,
            9223372036854775807ull);
  EXPECT_EQ(parse_config("[optim]\nweight_decay = 0.0\n", "s.toml").optim.adam.weight_decay, 0.0);
}

TEST(Config, OutOfRangeValuesNameTheField) {
  EXPECT_EQ(parse_error("[model]\nkernel = 0\n"), "run.toml: model.kernel must be in [1, 4096] (got 0)");
  EXPECT_PARSE_ERROR("[audio]\nsample_rate = 0\n", "audio.sample_rate", ">= 1");
  EXPECT_PARSE_ERROR("[audio]\nclip_seconds = 0.0\n", "audio.clip_seconds", "> 0");
  EXPECT_PARSE_ERROR("[audio]\nclip_seconds = -2.5\n", "audio.clip_seconds", "-2.5");
  EXPECT_PARSE_ERROR("[audio]\nclip_seconds = nan\n", "audio.clip_seconds");
  EXPECT_PARSE_ERROR("[audio]\nclip_seconds = 1e9\n", "audio.clip_seconds", "samples per clip");
  EXPECT_PARSE_ERROR("[audio]\nclip_seconds = 40.0\n", "audio.excerpt_seconds",
                     ">= audio.clip_seconds", "(got 30.0)");
  EXPECT_PARSE_ERROR("[audio]\nexcerpt_seconds = 0.0\n", "audio.excerpt_seconds", "> 0");
  EXPECT_PARSE_ERROR("[audio]\nexcerpt = \"end\"\n", "audio.excerpt", "\"middle\", \"start\"");
  EXPECT_PARSE_ERROR("[audio]\ncache_dtype = \"int8\"\n", "audio.cache_dtype", "\"int16\"");
  EXPECT_PARSE_ERROR("[model]\ndropout = 1.0\n", "model.dropout", "[0, 1)");
  EXPECT_PARSE_ERROR("[train]\nneg_hops = 1\n", "train.neg_hops", "> train.pos_hops (1)");
  EXPECT_PARSE_ERROR("[train]\nsteps = 0\n", "train.steps and train.epochs are both 0");
  EXPECT_PARSE_ERROR("[train]\nmining = \"hard\"\n", "train.mining", "\"batch_hard\"");
  EXPECT_PARSE_ERROR("[augment]\nshift_seconds = 11.0\n", "augment.shift_seconds", "<= audio.clip_seconds");
  EXPECT_PARSE_ERROR("[data]\nedges = 3\n", "data.edges must be a string");
  EXPECT_PARSE_ERROR("[data]\nval_items = 1.0\n", "data.val_items");
  EXPECT_PARSE_ERROR("[model]\nchannels = []\n", "model.channels", "at least one");
  EXPECT_PARSE_ERROR("[model]\nchannels = [64, 0, 32]\n", "model.channels[1] must be in [1, 65536] (got 0)");
  EXPECT_PARSE_ERROR("[model]\npool = 0\n", "model.pool", "in [1, 4096]");
  EXPECT_PARSE_ERROR("[model]\nembedding = -3\n", "model.embedding", "(got -3)");
  EXPECT_PARSE_ERROR("[model]\nl2_eps = 0.0\n", "model.l2_eps");
  EXPECT_PARSE_ERROR("[loss]\nmargin = -0.1\n", "loss.margin");
  EXPECT_PARSE_ERROR("[loss]\neps = 0.0\n", "loss.eps");
  EXPECT_PARSE_ERROR("[optim]\nlr = 0.0\n", "optim.lr");
  EXPECT_PARSE_ERROR("[optim]\nlr = inf\n", "optim.lr");
  EXPECT_PARSE_ERROR("[optim]\nbeta1 = 1.0\n", "optim.beta1", "[0, 1)");
  EXPECT_PARSE_ERROR("[optim]\nbeta2 = -0.5\n", "optim.beta2");
  EXPECT_PARSE_ERROR("[optim]\neps = 0.0\n", "optim.eps");
  EXPECT_PARSE_ERROR("[optim]\nweight_decay = -1e-4\n", "optim.weight_decay");
  EXPECT_PARSE_ERROR("[optim]\nclip_norm = -1.0\n", "optim.clip_norm");
  EXPECT_PARSE_ERROR("[train]\nbatch_triplets = 0\n", "train.batch_triplets");
}

// Issue 17, D8 and D15: sizes and levels have an upper bound, checked before anything runs
// (a batch of 10^9 triplets overflowed 3 x batch in int; gain_db = 1e300 was accepted).
TEST(Config, SizesAndLevelsHaveUpperBounds) {
  EXPECT_EQ(parse_error("[train]\nbatch_triplets = 1000000000\n"),
            "run.toml: train.batch_triplets must be in [1, 1048576] (got 1000000000)");
  EXPECT_PARSE_ERROR("[model]\nchannels = [64, 100000]\n", "model.channels[1] must be in [1, 65536]");
  EXPECT_PARSE_ERROR("[model]\nembedding = 70000\n", "model.embedding must be in [1, 65536]");
  // Every stage pooled: the head's width k (C_0 + C_1 + ...) has the bound of three full stages.
  EXPECT_PARSE_ERROR("[model]\npool_stages = \"all\"\nchannels = [65536, 65536]\n",
                     "model.pool_stages = \"all\" pools 262144 features per clip", "at most 196608");
  EXPECT_EQ(parse_error("[model]\npool_stages = \"all\"\npooling = \"mean\"\nchannels = [65536, 65536, 65536]\n"), "");
  EXPECT_PARSE_ERROR("[model]\nkernel = 5000\n", "model.kernel must be in [1, 4096]");
  EXPECT_PARSE_ERROR("[model]\npool = 5000\n", "model.pool must be in [1, 4096]");
  EXPECT_PARSE_ERROR("[train]\nloader_threads = 100000\n", "train.loader_threads must be in [1, 1024]");
  EXPECT_PARSE_ERROR("[augment]\ngain_db = 1e300\n", "augment.gain_db must be in [0, 60");
  EXPECT_PARSE_ERROR("[augment]\nnoise_snr_db = 1e9\n", "augment.noise_snr_db must be in [0, 120");
  EXPECT_PARSE_ERROR("[data]\nrecall_k = 1000000000\n", "data.recall_k must be in [1, 100000]");
  // Issue 17, D13: a warm-up longer than the run is refused here, before any audio is decoded.
  EXPECT_PARSE_ERROR("[train]\nsteps = 50\nwarmup_steps = 100\n", "train.warmup_steps must be <= train.steps (50)");
  EXPECT_EQ(parse_error("[train]\nsteps = 0\nepochs = 2\nwarmup_steps = 100\n"), "");  // epochs: checked later
  // The bounds themselves are accepted.
  EXPECT_EQ(parse_error("[train]\nbatch_triplets = 1048576\n[augment]\ngain_db = 60.0\n"), "");
}

TEST(Config, MelParameterErrorsCarryTheSource) {
  // These come from validate_mel_params (std::invalid_argument), rewrapped as ConfigError.
  EXPECT_PARSE_ERROR("[mel]\nn_fft = 1023\n", "mel.n_fft");
  EXPECT_PARSE_ERROR("[mel]\nhop = 0\n", "mel.hop");
  EXPECT_PARSE_ERROR("[mel]\nn_mels = 0\n", "mel.n_mels");
  EXPECT_PARSE_ERROR("[mel]\nf_max = 20000.0\n", "mel.f_max");
  EXPECT_PARSE_ERROR("[mel]\npower = 0.0\n", "mel.power");
  EXPECT_PARSE_ERROR("[mel]\nlog_eps = 0.0\n", "mel.log_eps");
}

// train.precision and train.zero (issue 18): named choices and a 0/1 switch.
TEST(Config, PrecisionAndZero) {
  EXPECT_EQ(parse_error("[train]\nprecision = \"bf16\"\nzero = 1\n[optim]\nclip_norm = 1.0\n"), "");
  EXPECT_PARSE_ERROR("[train]\nprecision = \"fp16\"\n", "train.precision");
  EXPECT_PARSE_ERROR("[train]\nzero = 2\n", "train.zero must be in [0, 1] (got 2)");
}

TEST(Config, ValidateConfigChecksProgrammaticConfigs) {
  Config c;
  c.model.kernel = 0;
  EXPECT_THROW(validate_config(c), ConfigError);
  c = Config{};
  c.audio.sample_rate = 16000;  // mel.sample_rate left at 22050
  try {
    validate_config(c);
    FAIL() << "mismatched mel.sample_rate accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("mel.sample_rate"), std::string::npos) << e.what();
  }
  c = Config{};
  c.train.seed = ~uint64_t{0};  // not representable as a TOML integer
  EXPECT_THROW(validate_config(c), ConfigError);
}

TEST(Config, TomlSyntaxErrorsKeepToml11Location) {
  const std::string msg = parse_error("[model]\nkernel = \n");
  ASSERT_FALSE(msg.empty());
  EXPECT_EQ(msg.rfind("run.toml: ", 0), 0u) << msg;
  EXPECT_NE(msg.find("2"), std::string::npos) << "no line number in: " << msg;
  // Duplicate keys are TOML errors too.
  EXPECT_PARSE_ERROR("[model]\nkernel = 3\nkernel = 4\n", "kernel");
}

TEST(Config, OverridesSetFieldsAndNameTheOverrideInErrors) {
  const Config c =
      apply_overrides(default_config(), {"train.steps=420", "data.edges=graph/e.csv", "data.catalog=\"c d.csv\"",
                                         "optim.lr=3e-4", "train.mining=batch_hard", "model.channels=[8, 9]"});
  EXPECT_EQ(c.train.steps, 420);
  EXPECT_EQ(c.data.edges, "graph/e.csv");
  EXPECT_EQ(c.data.catalog, "c d.csv");
  EXPECT_EQ(c.optim.adam.lr, 3e-4);
  EXPECT_EQ(c.train.mining, Mining::BatchHard);
  EXPECT_EQ(c.model.channels, (std::vector<int>{8, 9}));
  auto error_of = [](const std::string& o) {
    try {
      apply_overrides(default_config(), {"train.steps=500", o});
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(error_of("train.stepz=3").find("--set train.stepz=3"), std::string::npos);
  EXPECT_NE(error_of("train.stepz=3").find("train.steps"), std::string::npos) << "did-you-mean";
  EXPECT_NE(error_of("model.kernel=0").find("model.kernel must be in [1, 4096]"), std::string::npos);
  EXPECT_NE(error_of("steps=3").find("section.key=value"), std::string::npos);
  EXPECT_NE(error_of("train.steps=abc").find("train.steps must be an integer"), std::string::npos);
}

// The rules between fields hold for the result of all overrides: a shorter run and its shorter
// warm-up go in either order (the default warm-up, 100, is longer than 50 steps). An error of
// the result names every override.
TEST(Config, OverridesAreCheckedTogether) {
  for (const auto& order : {std::vector<std::string>{"train.steps=50", "train.warmup_steps=5"},
                            std::vector<std::string>{"train.warmup_steps=5", "train.steps=50"}}) {
    const Config c = apply_overrides(default_config(), order);
    EXPECT_EQ(c.train.steps, 50);
    EXPECT_EQ(c.train.warmup_steps, 5);
  }
  try {
    apply_overrides(default_config(), {"train.steps=50", "optim.lr=0.01"});
    FAIL() << "warmup_steps 100 > steps 50 accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("--set train.steps=50 --set optim.lr=0.01: train.warmup_steps must be <= "
                                         "train.steps (50)"),
              std::string::npos)
        << e.what();
  }
}

TEST(Config, ResolvePathsIsRelativeToTheConfigDirectory) {
  Config c = default_config();
  c.data.edges = "e.csv";
  c.data.catalog = "/abs/c.csv";
  c.data.run_dir = "runs/../run";
  resolve_paths(c, "/cfg/dir");
  EXPECT_EQ(c.data.edges, "/cfg/dir/e.csv");
  EXPECT_EQ(c.data.catalog, "/abs/c.csv");
  EXPECT_EQ(c.data.cache, "") << "empty stays empty (the default is chosen later)";
  EXPECT_EQ(c.data.run_dir, "/cfg/dir/run");
}

TEST(Config, LoadConfigReadsAFileAndNamesItInErrors) {
  test::TempDir dir;
  const std::string good = dir.file("good.toml");
  std::ofstream(good) << "[model]\nkernel = 6\n";
  EXPECT_EQ(load_config(good).model.kernel, 6);

  const std::string bad = dir.file("bad.toml");
  std::ofstream(bad) << "[model]\nkernel = -1\n";
  try {
    load_config(bad);
    FAIL() << "kernel = -1 accepted";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), bad + ": model.kernel must be in [1, 4096] (got -1)");
  }

  const std::string missing = dir.file("does-not-exist.toml");
  try {
    load_config(missing);
    FAIL() << "missing file accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(missing), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace mg

namespace mg {
namespace {

// RFC 3629's table of well-formed sequences, at its edges: each invalid case is one byte or
// range outside it.
TEST(Utf8, ValidatesAsRfc3629Says) {
  EXPECT_EQ(first_invalid_utf8(""), std::string::npos);
  EXPECT_EQ(first_invalid_utf8("plain ascii\n"), std::string::npos);
  EXPECT_EQ(first_invalid_utf8("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x8E\xB5 \xF4\x8F\xBF\xBF"), std::string::npos);
  EXPECT_EQ(first_invalid_utf8("ab\x80"), 2u);             // a lone continuation byte
  EXPECT_EQ(first_invalid_utf8("a\xC0\x80"), 1u);          // overlong NUL
  EXPECT_EQ(first_invalid_utf8("a\xE0\x9F\xBF"), 1u);      // overlong 3-byte form
  EXPECT_EQ(first_invalid_utf8("a\xED\xA0\x80"), 1u);      // a surrogate, U+D800
  EXPECT_EQ(first_invalid_utf8("a\xF0\x8F\xBF\xBF"), 1u);  // overlong 4-byte form
  EXPECT_EQ(first_invalid_utf8("a\xF4\x90\x80\x80"), 1u);  // past U+10FFFF
  EXPECT_EQ(first_invalid_utf8("a\xF5\x80\x80\x80"), 1u);
  EXPECT_EQ(first_invalid_utf8("\xE2\x82"), 0u);  // cut short at the end
  EXPECT_EQ(utf8_sequence_length("\xF0\x9F\x8E\xB5", 0), 4u);
}

// is_ascii reads eight bytes at a time and the rest one by one: a high byte is found at every
// position of every length up to three words, and on every alignment of the data.
TEST(Utf8, IsAsciiFindsAHighByteAnywhere) {
  EXPECT_TRUE(is_ascii(""));
  const std::string buffer(40, 'a');
  for (size_t offset = 0; offset < 8; ++offset) {
    for (size_t len = 0; offset + len <= buffer.size() && len <= 24; ++len) {
      std::string text = buffer;
      EXPECT_TRUE(is_ascii(std::string_view(text).substr(offset, len))) << offset << " " << len;
      for (size_t k = 0; k < len; ++k) {
        text[offset + k] = '\x80';
        EXPECT_FALSE(is_ascii(std::string_view(text).substr(offset, len))) << offset << " " << len << " " << k;
        text[offset + k] = '\x7F';  // the largest ASCII byte
        EXPECT_TRUE(is_ascii(std::string_view(text).substr(offset, len))) << offset << " " << len << " " << k;
        text[offset + k] = 'a';
      }
      if (offset + len < text.size()) {  // a high byte just past the view is not read
        text[offset + len] = '\xFF';
        EXPECT_TRUE(is_ascii(std::string_view(text).substr(offset, len))) << offset << " " << len;
      }
    }
  }
}

// Found by tests/fuzz/fuzz_config: a multi-line literal string holding bytes that are not UTF-8
// made toml11 (Debian's libtoml11-dev 3.7.1) read past its buffer (ASan: heap-buffer-overflow
// in location::reset). The config is refused first, naming where the bad byte is.
TEST(Config, TextThatIsNotUtf8IsRefusedWhereItBreaks) {
  const std::string text = "[train]\nsteps = 3\nname = '''a \xFF\xFF b'''\n";
  try {
    parse_config(text, "bad.toml");
    FAIL() << "accepted";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()),
              "bad.toml:3:13: not valid UTF-8 (byte 0xFF): a config is TOML, which is UTF-8 text");
  }
  EXPECT_THROW(apply_overrides(default_config(), {"train.steps=\xFF"}), ConfigError);
}

// Found by tests/fuzz/fuzz_config: toml11 parses nested arrays by recursion, and "x = [[[[..."
// 200,000 deep overflowed the stack (SIGSEGV; about 1,000 deep under ASan). Deep nesting is
// refused before toml11 reads it, at the bracket that goes past the limit; brackets inside
// strings and comments are not nesting.
TEST(Config, DeeplyNestedArraysAreRefusedBeforeParsing) {
  const std::string deep = "[model]\nchannels = " + std::string(200000, '[');
  try {
    parse_config(deep, "deep.toml");
    FAIL() << "accepted";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()).rfind("deep.toml:2:20: arrays or inline tables nested more than 8 deep", 0), 0u)
        << e.what();
  }
  const std::string inline_tables = "x = " + std::string(9, '{');
  EXPECT_THROW(parse_config(inline_tables, "t.toml"), ConfigError);
  try {
    apply_overrides(default_config(), {"model.channels=" + std::string(100000, '[')});
    FAIL() << "override accepted";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()).rfind("--set model.channels=[[[", 0), 0u) << e.what();
    EXPECT_NE(std::string(e.what()).find("nested more than 8 deep"), std::string::npos) << e.what();
  }

  // Eight levels reach toml11 and fail as a wrong type, not as nesting.
  const std::string eight = "[model]\nchannels = " + std::string(7, '[') + "[1]" + std::string(7, ']') + "\n";
  const std::string msg = parse_error(eight);
  EXPECT_EQ(msg, "run.toml:2: model.channels[0] must be an integer, got an array");
  // Brackets in strings of every kind and in comments do not nest.
  const std::string brackets = std::string(20, '[');
  const Config c =
      parse_config("# " + brackets + "\n[data]\nedges = \"" + brackets + "\\\"" + brackets + "\"\ncatalog = '" +
                       brackets + "'\ncache = \"\"\"\n" + brackets + "\"\"\"\"\nrun_dir = '''" + brackets + "''' # " +
                       brackets + "\n[model]\nchannels = [4, 5] # ]]]]\n",
                   "ok.toml");
  EXPECT_EQ(c.data.edges, brackets + "\"" + brackets);
  EXPECT_EQ(c.data.catalog, brackets);
  EXPECT_EQ(c.data.cache, brackets + "\"");
  EXPECT_EQ(c.data.run_dir, brackets);
  EXPECT_EQ(c.model.channels, (std::vector<int>{4, 5}));
}

}  // namespace
}  // namespace mg
