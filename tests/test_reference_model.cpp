// The whole model against PyTorch (tests/reference/ref_model.py): the float32 engine on the
// CPU backend versus the same model, loss and optimizer built in torch float64 from the
// checkpoint this test saves (save_checkpoint, weights only) and the exact float32 samples.
//
// Six cases, 3 triplets (9 clips) in the offline layout or, for the contrastive loss, 3
// anchors and their positives (6 clips):
//   small  tests/test_support.h small_config(): valid padding; margin 1.0 with swap; Adam with
//          a clip_norm below the gradient norm, so both steps clip.
//   mid    22050 Hz, 1.5 s, n_fft 1024, hop 512 -> 65 frames, 32 Slaney-scale Slaney-normed
//          mels, channels [16, 16, 16], embedding 16. "Same" padding: with "valid", K 4 and
//          pool 4 the 65 frames die in stage 3 (62 -> 15 -> 12 -> 3 -> 0); "same" gives
//          65 -> 16 -> 16 -> 4 -> 4. AdamW (weight decay 0.01), margin 0.2 without swap, and a
//          clip_norm above the gradient norm (measured and compared, no clipping).
//   pooled_mean_max   small, with [mean | max] global pooling (torch: cat([x.mean(-1),
//          x.amax(-1)], 1)); Adam, margin 0.5, no clipping.
//   pooled_l2_dropout small, with [mean | max | l2] pooling (adding x.norm(dim=-1)) and dropout
//          0.3 before the linear layer; AdamW, margin 1.0 with swap, clipping. The engine's
//          mask of each step (Model::set_dropout_step(train.seed, step): the one the
//          trainer draws) is exported beside the audio, and torch applies the same keep
//          pattern as F.dropout does, x * keep / (1 - p); eval mode (no dropout) is compared too.
//   recipe small, with the learning recipe's options: per-band input standardisation (random
//          statistics), [mean | max] pooling, batch norm before the head (random running
//          statistics for the eval pass), the item embedding from the normalised features, and
//          the contrastive loss (temperature 0.2) over 3 anchors and their positives (6 rows;
//          the graph distances include a same-item row and a row in the excluded band);
//          Adam (eps 1e-4: see the case), clipping.
//   all_stages the recipe with model.pool_stages = all: [mean | max] of every stage's output
//          (after its max-pool) concatenated, so each stage below the last gets gradient from
//          the next stage and from the head.
// Checked: (1) Model::forward embeddings; (2) TrainStep::forward_backward loss, active count
// and every parameter gradient; (3) two TrainStep::step calls with an Optimizer: loss and
// pre-clip gradient norm of each step, the clipped gradients the optimizer used, and the
// parameters after each step (and their displacement from the initial values).
//
// Float32 and float64 must take the same branch at every kink, or a comparison measures a
// branch flip instead of rounding: the script rejects triplets within 1e-4 of the hinge or of a
// swap tie, and this test checks that every ReLU and max-pool decision of every forward pass
// agrees with torch's, and so does every global max over time (pooled cases). If a case trips
// either check after a change, pick other seeds for it.
//
// Tolerances: norm-wise relative error max|got - want| / max|want|, each 5-10x above the worst
// error measured over both cases, 1 and 2 threads, two clip_norm settings and two engine
// revisions (in brackets; MELGRAPH_TEST_VERBOSE=1 prints them). The float32 front end turned
// out not to dominate: these clips have no near-silent bands, so the log-mel is at float32
// rounding (~1e-7 of max|log-mel|).
//   log-mel 1e-6 [1.7e-7], embeddings 1e-6 [1.3e-7]: float32 rounding through FFT, GEMMs and
//          the normalisation; a wrong mel scale/norm or padding costs >= 1e-2. With batch
//          norm in training mode 2e-5 [3.8e-6]: see kTolEmbBatchStats.
//   loss 5e-6 [8.3e-7]: distances of nearby unit vectors, sqrt(2 (1 - x.y)), lose a few bits.
//   gradients, clipped gradients, gradient norm 2e-4 [3.0e-5]: the backward pass amplifies the
//          forward rounding (d loss/d emb divides by the distances; each weight gradient is a
//          sum of products of two perturbed factors).
//   parameter displacement p - p0 after each step 3e-4 [6.8e-5]: Adam normalises element-wise,
//          update ~ lr m/sqrt(v), so an element's update error is ~lr times that element's
//          relative gradient error, which for the smallest gradient elements (and where g1, g2
//          nearly cancel in m at step 2) is well above the norm-wise gradient error.
//   parameters 3e-5 [7.1e-6]: the displacement error above, relative to |p| ~ 0.3.
// Mistakes land far above these bounds (measured by breaking the engine's side on purpose): a
// sign flipped in one backward op moves gradients by O(1); skipping the clip puts the clipped
// gradients off by 5x; dropping AdamW's weight decay moves the displacement by 2.5e-3 (8x).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "engine/checkpoint.h"
#include "engine/config.h"
#include "engine/model.h"
#include "engine/optimizer.h"
#include "engine/io/safetensors.h"
#include "engine/train_step.h"
#include "tests/reference_harness.h"
#include "tests/test_support.h"

namespace mg {
namespace {

constexpr int kTriplets = 3;  // anchors of a batch
constexpr int kSteps = 2;

constexpr double kTolLogMel = 1e-6;
constexpr double kTolEmb = 1e-6;
// Training-mode batch norm (the recipe case) standardises each feature by its batch's spread,
// which over 6 clips is a small fraction of the feature's mean: the float32 rounding of the
// pooled features grows by mean / std there [measured 3.8e-6].
constexpr double kTolEmbBatchStats = 2e-5;
constexpr double kTolLoss = 5e-6;
constexpr double kTolGrad = 2e-4;
constexpr double kTolParam = 3e-5;
constexpr double kTolDelta = 3e-4;

struct ModelCase {
  std::string name;
  Config config;
  uint64_t param_seed = 0;
  unsigned audio_seed = 0;
  bool clips = false;  // whether the case's clip_norm is below the gradient norm (checked)
  bool contrastive() const { return config.loss.name == LossKind::Contrastive; }
  int rows() const { return (contrastive() ? 2 : 3) * kTriplets; }
};

// The contrastive batch's graph distances [6, 6]: anchor i's positive is row 3 + i (1 hop);
// row 4 is also anchor 0's item (0 hops: a second positive), rows 1 and 2 sit in the band
// between pos_hops 1 and neg_hops 3 (neither), everything else is far.
std::vector<uint8_t> contrastive_hops() {
  const int n = 2 * kTriplets;
  std::vector<uint8_t> h(static_cast<size_t>(n * n), 4);
  for (int i = 0; i < n; ++i) h[static_cast<size_t>(i * n + i)] = 0;
  auto set = [&](int a, int b, uint8_t v) { h[static_cast<size_t>(a * n + b)] = h[static_cast<size_t>(b * n + a)] = v; };
  for (int i = 0; i < kTriplets; ++i) set(i, kTriplets + i, 1);
  set(0, 4, 0);
  set(1, 2, 2);
  return h;
}

Config mid_config() {
  Config c = test::with_seed_head(default_config());
  c.audio.sample_rate = 22050;
  c.audio.clip_seconds = 1.5;
  c.mel.sample_rate = 22050;
  c.mel.n_fft = 1024;
  c.mel.hop = 512;
  c.mel.n_mels = 32;
  c.mel.scale = MelScale::Slaney;
  c.mel.norm = MelNorm::Slaney;
  c.model.channels = {16, 16, 16};
  c.model.embedding = 16;
  c.model.padding = Padding::Same;
  return c;
}

const std::vector<ModelCase>& model_cases() {
  static const std::vector<ModelCase> cases = [] {
    ModelCase small{"small", test::small_config(), 5, 17, true};
    small.config.loss.margin = 1.0;
    small.config.loss.swap = true;
    small.config.optim.adam.decoupled = false;
    small.config.optim.adam.lr = 1e-2;
    small.config.optim.clip_norm = 1.0;

    ModelCase mid{"mid", mid_config(), 7, 23, false};
    mid.config.loss.margin = 0.2;
    mid.config.optim.adam.decoupled = true;
    mid.config.optim.adam.weight_decay = 0.01;
    mid.config.optim.adam.lr = 3e-3;
    mid.config.optim.clip_norm = 5.0;
    ModelCase pooled{"pooled_mean_max", test::small_config(), 11, 29, false};
    pooled.config.model.pooling = GlobalPool::MeanMax;
    pooled.config.loss.margin = 0.5;
    pooled.config.optim.adam.decoupled = false;
    pooled.config.optim.adam.lr = 1e-2;
    pooled.config.optim.clip_norm = 100.0;

    ModelCase dropout{"pooled_l2_dropout", test::small_config(), 13, 31, true};
    dropout.config.model.pooling = GlobalPool::MeanMaxL2;
    dropout.config.model.dropout = 0.3;
    dropout.config.train.seed = 1234;
    dropout.config.loss.margin = 1.0;
    dropout.config.loss.swap = true;
    dropout.config.optim.adam.decoupled = true;
    dropout.config.optim.adam.weight_decay = 0.01;
    dropout.config.optim.adam.lr = 1e-2;
    dropout.config.optim.clip_norm = 0.5;

    ModelCase recipe{"recipe", test::small_config(), 17, 37, true};
    recipe.config.model.input_norm = InputNorm::Band;
    recipe.config.model.pooling = GlobalPool::MeanMax;
    recipe.config.model.head_norm = HeadNorm::Batch;
    recipe.config.model.embedding_from = EmbeddingFrom::Features;
    recipe.config.loss.name = LossKind::Contrastive;
    recipe.config.loss.temperature = 0.2;
    recipe.config.train.pos_hops = 1;
    recipe.config.train.neg_hops = 3;
    recipe.config.optim.adam.decoupled = false;
    recipe.config.optim.adam.lr = 1e-2;
    // Batch norm makes the loss exactly invariant to a bias that shifts a channel uniformly
    // (its last conv's bias where the ReLU passes every step): that gradient is 0 in exact
    // arithmetic and float32 rounding noise here, and Adam's g / (|g| + eps) turns noise above
    // eps into a full step. eps 1e-4 sits above the noise and far below the real gradients.
    recipe.config.optim.adam.eps = 1e-4;
    recipe.config.optim.clip_norm = 0.5;
    // The recipe with every stage pooled (model.pool_stages = all): each stage's output feeds
    // the next stage and the head, so its gradient is the sum of both. Other seeds tried (29,
    // 31, 37) made a conv bias's gradient exactly 0 (batch norm after every path) or put Adam's
    // smallest elements past the displacement bound: the comparisons measured that, not the op.
    ModelCase all_stages = recipe;
    all_stages.name = "all_stages";
    all_stages.param_seed = 23;
    all_stages.audio_seed = 41;
    all_stages.config.model.pool_stages = PoolStages::All;
    return std::vector<ModelCase>{small, mid, pooled, dropout, recipe, all_stages};
  }();
  return cases;
}

struct Suite {
  std::unique_ptr<test::TempDir> dir;
  std::vector<std::vector<float>> audio;  // per case, [rows, S]
  StFile out;
  std::string error;  // why the reference is unavailable (empty when ready)
  bool ready = false;
};

Suite& suite() {
  static Suite s;
  return s;
}

std::string ckpt_path(const ModelCase& c) { return suite().dir->file(c.name + ".ckpt.safetensors"); }
std::string audio_path(const ModelCase& c) { return suite().dir->file(c.name + ".audio.safetensors"); }

// Random values in [lo, hi) into a state tensor of the model (CPU backend: host memory).
void fill_state(Model& m, const std::string& name, double lo, double hi, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  const int64_t n = m.state().layout().find(name).numel();
  float* p = m.state().ptr(name);
  for (int64_t i = 0; i < n; ++i) p[i] = static_cast<float>(u(rng));
}

// Writes the case's checkpoint and audio for the script; with dropout, also the engine's mask
// of steps 1 .. kSteps, dropout_mask [kSteps, rows, k C_last], read from the arena after a
// forward pass at each step's key. The state is made non-trivial first: input statistics
// around the log-mel's range, running statistics that differ from the batch's.
void write_inputs(const ModelCase& c, std::vector<float>& audio) {
  validate_config(c.config);
  auto be = make_cpu_backend();
  const int rows = c.rows();
  Model m(c.config, *be, rows);
  m.init_params(c.param_seed);
  if (c.config.model.input_norm == InputNorm::Band) {
    fill_state(m, "input_norm.mean", -8, -2, c.audio_seed + 1);
    fill_state(m, "input_norm.std", 1, 4, c.audio_seed + 2);
  }
  if (c.config.model.head_norm == HeadNorm::Batch) {
    fill_state(m, "head_norm.running_mean", -0.5, 0.5, c.audio_seed + 3);
    fill_state(m, "head_norm.running_var", 0.5, 2, c.audio_seed + 4);
  }
  save_checkpoint(ckpt_path(c), m, nullptr, TrainState{});
  const int64_t S = c.config.audio.clip_samples();
  audio = test::random_audio(rows, S, c.audio_seed, c.config.audio.sample_rate);
  StFile f;
  f.put_f32("audio", {rows, S}, audio.data());
  if (c.contrastive()) {
    const std::vector<uint8_t> h = contrastive_hops();
    const std::vector<int32_t> h32(h.begin(), h.end());
    f.put_i32("hops", {rows, rows}, h32.data());
  }
  if (c.config.model.dropout > 0) {
    const int64_t D = m.plan().head_width();
    std::vector<float> masks(static_cast<size_t>(kSteps * rows * D));
    for (int step = 1; step <= kSteps; ++step) {
      m.set_dropout_step(c.config.train.seed, static_cast<uint64_t>(step));
      m.forward(audio.data(), rows);  // the CPU backend's "device" memory is host memory
      be->to_host(masks.data() + static_cast<size_t>((step - 1) * rows * D), m.activations().ptr("dropout_mask"),
                  static_cast<size_t>(rows * D) * sizeof(float));
    }
    f.put_f32("dropout_mask", {kSteps, rows, D}, masks.data());
  }
  f.metadata = {{"n_triplets", std::to_string(kTriplets)}, {"steps", std::to_string(kSteps)}};
  write_safetensors(audio_path(c), f);
}

std::vector<double> want(const std::string& key, size_t n) {
  const StTensor& t = suite().out.at(key);
  if (static_cast<size_t>(t.numel()) != n)
    throw SafetensorsError("ref_model.py output '" + key + "' has " + std::to_string(t.numel()) +
                           " elements, the engine has " + std::to_string(n));
  return t.to_f64();
}

bool verbose() {
  const char* v = std::getenv("MELGRAPH_TEST_VERBOSE");
  return v && std::string(v) == "1";
}

// Norm-wise relative error with the worst element named; non-finite values fail on their own.
template <class T>
void expect_close(const std::vector<T>& got, const std::vector<double>& ref, double tol, const std::string& what) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  size_t worst = 0;
  double worst_diff = -1;
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_TRUE(std::isfinite(static_cast<double>(got[i]))) << what << ": element " << i << " is " << got[i];
    const double d = std::abs(static_cast<double>(got[i]) - ref[i]);
    if (d > worst_diff) worst_diff = d, worst = i;
  }
  const double e = test::rel_error(got.data(), ref.data(), got.size());
  if (verbose()) std::printf("  %-40s rel error %.3g (bound %.0e)\n", what.c_str(), e, tol);
  EXPECT_LE(e, tol) << what << ": norm-wise relative error " << e << " > " << tol << "; worst element " << worst
                    << ": engine " << got[worst] << ", torch " << ref[worst];
}

class RefModel : public ::testing::TestWithParam<size_t> {
 public:
  static void SetUpTestSuite() {
    Suite& s = suite();
    if (s.ready || !s.error.empty()) return;
    if (!test::torch_unavailable_reason().empty()) {
      s.error = "torch unavailable";  // each test skips (or fails) through MG_REQUIRE_TORCH
      return;
    }
    s.dir = std::make_unique<test::TempDir>();
    const std::string out_path = s.dir->file("model_out.safetensors");
    std::string cmd = test::python_exe() + " " + test::reference_script("ref_model.py") + " " + out_path;
    try {
      s.audio.resize(model_cases().size());
      for (size_t i = 0; i < model_cases().size(); ++i) {
        const ModelCase& c = model_cases()[i];
        write_inputs(c, s.audio[i]);
        cmd += " --case " + c.name + " " + ckpt_path(c) + " " + audio_path(c);
      }
      std::string log;
      const int rc = test::run_command(cmd, &log);
      if (verbose()) std::printf("%s", log.c_str());
      if (rc != 0) {
        s.error = "reference script failed (exit " + std::to_string(rc) + "): " + cmd + "\n" + log;
        return;
      }
      s.out = read_safetensors(out_path);
    } catch (const std::exception& e) {
      s.error = std::string("exchanging data with ref_model.py failed: ") + e.what();
      return;
    }
    s.ready = true;
  }

 protected:
  void SetUp() override {
    MG_REQUIRE_TORCH();
    ASSERT_TRUE(suite().ready) << suite().error;
    const ModelCase& c = model_cases()[GetParam()];
    be_ = make_cpu_backend();
    rows_ = c.rows();
    model_ = std::make_unique<Model>(c.config, *be_, rows_);
    // The checkpoint the script read, so both sides start from the same parameters by
    // construction (and the checkpoint round trip is part of what is compared).
    load_checkpoint(ckpt_path(c), *model_, nullptr);
    // Forward pass s (0-based) of the script uses the mask of step s + 1.
    model_->set_dropout_step(c.config.train.seed, 1);
    const auto& a = suite().audio[GetParam()];
    audio_ = be_->alloc<float>(static_cast<int64_t>(a.size()));
    be_->to_device(audio_, a.data(), a.size() * sizeof(float));
  }
  void TearDown() override {
    if (be_ && audio_) be_->free_bytes(audio_);
  }

  const ModelCase& mcase() const { return model_cases()[GetParam()]; }
  std::string key(const std::string& k) const { return mcase().name + "/" + k; }

  std::vector<float> host(const float* p, int64_t n) {
    std::vector<float> h(static_cast<size_t>(n));
    be_->to_host(h.data(), p, h.size() * sizeof(float));
    return h;
  }
  std::vector<float> param(const TensorBuffer& buf, const TensorSpec& s) { return host(buf.ptr(s.name), s.numel()); }

  // Every ReLU and max-pool decision of the last forward pass agrees with torch's forward
  // pass `fwd`: otherwise the comparisons after it measure a branch flip, not rounding.
  void expect_same_decisions(int fwd) {
    const ModelPlan& p = model_->plan();
    for (size_t i = 0; i < p.stages.size(); ++i) {
      const StagePlan& sp = p.stages[i];
      const int64_t rows = static_cast<int64_t>(rows_) * sp.conv.Cout;
      const auto ours = host(model_->activations().ptr("conv." + std::to_string(i)), rows * sp.t_conv);
      const auto pre = want(key("fwd" + std::to_string(fwd) + "/pre." + std::to_string(i)), ours.size());
      int64_t relu_flips = 0, pool_flips = 0;
      double nearest = std::numeric_limits<double>::infinity();  // |torch pre-activation| of the flipped decision closest to its kink
      for (size_t j = 0; j < ours.size(); ++j) {
        if ((ours[j] > 0) != (pre[j] > 0)) ++relu_flips, nearest = std::min(nearest, std::abs(pre[j]));
      }
      if (sp.pool) {
        const int P = mcase().config.model.pool;
        for (int64_t r = 0; r < rows; ++r) {
          for (int w = 0; w < sp.t_out; ++w) {
            const size_t base = static_cast<size_t>(r * sp.t_conv + w * P);
            size_t a = base, b = base;  // first maximum, as both pool implementations pick
            for (size_t t = base; t < base + static_cast<size_t>(P); ++t) {
              if (ours[t] > ours[a]) a = t;
              if (std::max(pre[t], 0.0) > std::max(pre[b], 0.0)) b = t;
            }
            // A window torch leaves at 0 passes no gradient through its ReLU whichever wins.
            if (pre[b] > 0 && a != b) ++pool_flips, nearest = std::min(nearest, pre[b] - std::max(pre[a], 0.0));
          }
        }
      }
      // The global max over time of a pooled stage: a row whose maximum is 0 passes nothing
      // through its ReLU, whichever element wins. Below the last stage it is the max over the
      // max-pool's windows, i.e. over the conv output the windows cover (the first maximum
      // wins in both).
      if (i >= p.first_pooled_stage() && p.pooled_features() >= 2) {
        const int64_t span = sp.pool ? int64_t{sp.t_out} * mcase().config.model.pool : sp.t_conv;
        for (int64_t r = 0; r < rows; ++r) {
          const size_t base = static_cast<size_t>(r * sp.t_conv);
          size_t a = base, b = base;
          for (size_t t = base; t < base + static_cast<size_t>(span); ++t) {
            if (ours[t] > ours[a]) a = t;
            if (std::max(pre[t], 0.0) > std::max(pre[b], 0.0)) b = t;
          }
          if (pre[b] > 0 && a != b) ++pool_flips, nearest = std::min(nearest, pre[b] - std::max(pre[a], 0.0));
        }
      }
      EXPECT_EQ(relu_flips + pool_flips, 0)
          << mcase().name << " forward " << fwd << ", stage " << i << ": " << relu_flips << " ReLU and "
          << pool_flips << " max-pool / global max decisions differ from torch's (nearest kink " << nearest
          << "): float32 rounding took the other branch; choose other seeds for this case";
    }
  }

  // The batch's layout: offline triplets, or the contrastive loss over anchors and positives.
  void set_layout(TrainStep& ts) const {
    if (mcase().contrastive())
      ts.set_contrastive(contrastive_hops(), kTriplets, mcase().config.train.pos_hops, mcase().config.train.neg_hops);
    else
      ts.set_triplets(TrainStep::offline_triplets(kTriplets));
  }

  std::unique_ptr<Backend> be_;
  std::unique_ptr<Model> model_;
  int rows_ = 0;
  float* audio_ = nullptr;
};

TEST_P(RefModel, ForwardEmbeddings) {
  const float* emb = model_->forward(audio_, rows_);
  expect_same_decisions(0);
  const ModelPlan& p = model_->plan();
  const auto mel = host(model_->activations().ptr("mel"), static_cast<int64_t>(rows_) * p.n_mels * p.frames);
  expect_close(mel, want(key("logmel"), mel.size()), kTolLogMel, key("logmel"));
  const auto e = host(emb, static_cast<int64_t>(rows_) * p.embedding);
  expect_close(e, want(key("fwd0/emb"), e.size()), p.head_norm ? kTolEmbBatchStats : kTolEmb, key("emb"));
}

// Eval mode skips dropout and normalises with the running statistics; the item embedding is
// the projection's output or, with embedding_from = features, the normalised features: torch's
// embed() at the initial parameters.
TEST_P(RefModel, EvalEmbeddings) {
  model_->set_training(false);
  const float* emb = model_->embed(audio_, rows_);
  expect_same_decisions(0);
  const auto e = host(emb, static_cast<int64_t>(rows_) * model_->output_dim());
  expect_close(e, want(key("eval/emb"), e.size()), kTolEmb, key("eval/emb"));
}

TEST_P(RefModel, LossAndGradients) {
  TrainStep ts(*model_);
  set_layout(ts);
  ts.forward_backward(audio_, rows_, mcase().config.loss);
  const StepStats st = ts.read_stats();
  expect_same_decisions(0);
  expect_close(std::vector<float>{st.loss}, want(key("fwd0/loss"), 1), kTolLoss, key("loss"));
  EXPECT_EQ(st.active, want(key("fwd0/active"), 1)[0]) << key("active triplets");
  for (const TensorSpec& s : model_->grads().layout().specs()) {
    SCOPED_TRACE(s.name);
    expect_close(param(model_->grads(), s), want(key("fwd0/grad." + s.name), static_cast<size_t>(s.numel())),
                 kTolGrad, key("grad." + s.name));
  }
}

TEST_P(RefModel, TwoOptimizerSteps) {
  const ModelCase& c = mcase();
  TrainStep ts(*model_);
  set_layout(ts);
  Optimizer opt(*be_, model_->params().layout(), c.config.optim);
  const auto& specs = model_->params().layout().specs();
  std::vector<std::vector<float>> p0;
  for (const TensorSpec& s : specs) p0.push_back(param(model_->params(), s));

  for (int step = 1; step <= kSteps; ++step) {
    SCOPED_TRACE("step " + std::to_string(step));
    const std::string fwd = "fwd" + std::to_string(step - 1) + "/", st_key = "step" + std::to_string(step) + "/";
    model_->set_dropout_step(c.config.train.seed, static_cast<uint64_t>(step));  // as the trainer
    ts.step(audio_, rows_, c.config.loss, opt, c.config.optim.adam.lr);
    const StepStats st = ts.read_stats(&opt);
    expect_same_decisions(step - 1);
    expect_close(std::vector<float>{st.loss}, want(key(fwd + "loss"), 1), kTolLoss, key(fwd + "loss"));
    EXPECT_EQ(st.active, want(key(fwd + "active"), 1)[0]) << key(fwd + "active");
    const double norm = want(key(st_key + "grad_norm"), 1)[0];
    expect_close(std::vector<float>{st.grad_norm}, {norm}, kTolGrad, key(st_key + "grad_norm"));
    // The case must exercise what it claims: clipping in one case, a measured no-op in the other.
    EXPECT_EQ(norm > c.config.optim.clip_norm, c.clips)
        << c.name << ": torch's gradient norm " << norm << " vs clip_norm " << c.config.optim.clip_norm
        << "; adjust the case's clip_norm so that it " << (c.clips ? "clips" : "does not clip");
    for (size_t i = 0; i < specs.size(); ++i) {
      const TensorSpec& s = specs[i];
      const size_t n = static_cast<size_t>(s.numel());
      expect_close(param(model_->grads(), s), want(key(st_key + "grad_clipped." + s.name), n), kTolGrad,
                   key(st_key + "grad_clipped." + s.name));
      const auto p = param(model_->params(), s);
      const auto ref = want(key(st_key + "param." + s.name), n);
      // A tensor that starts at 0 (batch norm's shift) is its own displacement: its bound is the
      // displacement's, as kTolParam assumes |p| ~ 0.3.
      const bool from_zero = std::all_of(p0[i].begin(), p0[i].end(), [](float v) { return v == 0.0f; });
      expect_close(p, ref, from_zero ? kTolDelta : kTolParam, key(st_key + "param." + s.name));
      std::vector<double> delta(n), ref_delta(n);
      for (size_t j = 0; j < n; ++j) {
        delta[j] = static_cast<double>(p[j]) - static_cast<double>(p0[i][j]);
        ref_delta[j] = ref[j] - static_cast<double>(p0[i][j]);
      }
      expect_close(delta, ref_delta, kTolDelta, key(st_key + "delta." + s.name));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, RefModel, ::testing::Range<size_t>(0, model_cases().size()),
                         [](const ::testing::TestParamInfo<size_t>& p) { return model_cases()[p.param].name; });

}  // namespace
}  // namespace mg
