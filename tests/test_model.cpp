// The model on the CPU backend: shapes, init, batch independence, determinism, and an
// end-to-end gradient check of model + loss by central differences.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "engine/model.h"
#include "engine/optimizer.h"
#include "engine/train_step.h"
#include "kernels/dropout_cpu.h"
#include "kernels/philox.h"
#include "tests/test_support.h"

namespace mg {
namespace {

using test::random_audio;
using test::small_config;

std::vector<float> host_copy(Backend& be, const float* p, int64_t n) {
  std::vector<float> h(static_cast<size_t>(n));
  be.to_host(h.data(), p, h.size() * sizeof(float));
  return h;
}

TEST(Model, ParameterLayoutNamesAndShapes) {
  const Config c = test::seed_defaults();
  const TensorLayout l = Model::param_layout(c);
  ASSERT_EQ(l.specs().size(), 8u);
  EXPECT_EQ(l.find("conv.0.weight").shape, (std::vector<int64_t>{128, 128, 4}));
  EXPECT_EQ(l.find("conv.2.bias").shape, (std::vector<int64_t>{128}));
  EXPECT_EQ(l.find("linear.weight").shape, (std::vector<int64_t>{128, 128}));
  EXPECT_EQ(l.param_count(), 213504);
  for (const auto& s : l.specs()) EXPECT_EQ(s.offset % 64, 0) << s.name << " is not 256-byte aligned";
}

// The per-stage gradient buckets of a data-parallel step: each holds its stage's conv weight
// and bias, and together, in order, they are exactly the conv prefix of the flat buffer.
TEST(Model, StageParamSpansTileTheTrunk) {
  Config c = small_config();
  c.model.channels = {11, 9, 13};  // odd sizes: padding between the tensors
  const auto be = make_cpu_backend(1);
  Model m(c, *be, 2);
  const TensorLayout& l = m.params().layout();
  int64_t next = 0;
  for (size_t i = 0; i < c.model.channels.size(); ++i) {
    const Model::Span g = m.stage_param_span(i);
    EXPECT_EQ(g.first, next) << "stage " << i;
    const TensorSpec& w = l.find("conv." + std::to_string(i) + ".weight");
    const TensorSpec& b = l.find("conv." + std::to_string(i) + ".bias");
    EXPECT_EQ(g.first, w.offset) << "stage " << i;
    EXPECT_GE(g.first + g.count, b.offset + b.numel()) << "stage " << i << " leaves out its bias";
    next = g.first + g.count;
  }
  EXPECT_EQ(next, m.trunk_param_floats());
  EXPECT_LE(next, l.find("linear.weight").offset);
  EXPECT_THROW(m.stage_param_span(3), std::out_of_range);
}

// The head's fan-in follows model.pooling: [mean | max | l2] of the last stage's channels.
TEST(Model, LinearFanInFollowsPooling) {
  Config c = test::seed_defaults();
  c.model.channels = {16, 24};
  c.model.embedding = 10;
  const int64_t k[] = {1, 2, 3};
  const GlobalPool pools[] = {GlobalPool::Mean, GlobalPool::MeanMax, GlobalPool::MeanMaxL2};
  for (int i = 0; i < 3; ++i) {
    c.model.pooling = pools[i];
    c.model.dropout = i == 2 ? 0.5 : 0.0;  // no parameters: the layout does not change
    const TensorLayout l = Model::param_layout(c);
    EXPECT_EQ(l.find("linear.weight").shape, (std::vector<int64_t>{10, 24 * k[i]})) << i;
    EXPECT_EQ(l.param_count(), make_model_plan(c, 1).param_count()) << i;
  }
}

TEST(Model, InitFollowsFanInBoundsAndIsSeeded) {
  auto be = make_cpu_backend();
  const Config c = small_config();
  Model a(c, *be, 2), b(c, *be, 2), d(c, *be, 2);
  a.init_params(11);
  b.init_params(11);
  d.init_params(12);
  for (const auto& s : a.params().layout().specs()) {
    const auto va = host_copy(*be, a.params().ptr(s.name), s.numel());
    const auto vb = host_copy(*be, b.params().ptr(s.name), s.numel());
    const auto vd = host_copy(*be, d.params().ptr(s.name), s.numel());
    const int64_t fan_in = s.name.rfind("conv.0", 0) == 0 ? 16 * 4 : (s.name.rfind("conv", 0) == 0 ? 8 * 4 : 8);
    const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
    double maxabs = 0;
    for (float v : va) maxabs = std::max(maxabs, static_cast<double>(std::abs(v)));
    EXPECT_LE(maxabs, bound) << s.name;
    EXPECT_GT(maxabs, 0.5 * bound) << s.name << ": values do not fill the init range";
    EXPECT_EQ(va, vb) << s.name << ": same seed must give the same values";
    EXPECT_NE(va, vd) << s.name << ": another seed must give other values";
  }
}

TEST(Model, EmbeddingsAreUnitRowsAndIndependentOfBatchSize) {
  auto be = make_cpu_backend();
  const Config c = small_config();
  const int64_t S = c.audio.clip_samples();
  Model m(c, *be, 5);
  m.init_params(3);
  const auto audio = random_audio(5, S, 1);
  const auto e5 = host_copy(*be, m.forward(audio.data(), 5), 5 * 8);
  for (int b = 0; b < 5; ++b) {
    double n = 0;
    for (int e = 0; e < 8; ++e) n += e5[b * 8 + e] * e5[b * 8 + e];
    EXPECT_NEAR(std::sqrt(n), 1.0, 1e-6);
  }
  const auto e2 = host_copy(*be, m.forward(audio.data(), 2), 2 * 8);
  // A clip's embedding does not depend on what else is in the batch (up to GEMM blocking).
  for (int i = 0; i < 16; ++i) EXPECT_NEAR(e2[i], e5[i], 1e-6) << i;
  EXPECT_THROW(m.forward(audio.data(), 6), std::invalid_argument);
}

// Trains a few steps and returns the parameters. The dropout mask of each step is set from
// the seed and the optimizer's step, as the trainer does.
std::vector<float> train_params(int threads, uint64_t seed, const Config& c = small_config()) {
  auto be = make_cpu_backend(threads);
  const int n = 3;
  Model m(c, *be, 3 * n);
  m.init_params(seed);
  Optimizer opt(*be, m.params().layout(), c.optim);
  TrainStep step(m);
  step.set_triplets(TrainStep::offline_triplets(n));
  const auto audio = random_audio(3 * n, c.audio.clip_samples(), 5);
  for (int i = 0; i < 3; ++i) {
    m.set_dropout_step(seed, static_cast<uint64_t>(opt.step_count() + 1));
    step.step(audio.data(), 3 * n, c.loss, opt, c.optim.adam.lr);
  }
  return host_copy(*be, m.params().data(), m.params().size());
}

TEST(Model, TrainingIsDeterministicAcrossRunsAndThreadCounts) {
  const auto a = train_params(2, 9);
  EXPECT_EQ(a, train_params(2, 9)) << "same seed, same threads: bitwise identical";
  EXPECT_EQ(a, train_params(1, 9)) << "1 vs 2 threads: bitwise identical";
  EXPECT_NE(a, train_params(2, 10));
}

Config pooling_dropout_config() {
  Config c = small_config();
  c.model.pooling = GlobalPool::MeanMaxL2;
  c.model.dropout = 0.3;
  return c;
}

TEST(Model, TrainingWithPoolingAndDropoutIsDeterministic) {
  const Config c = pooling_dropout_config();
  const auto a = train_params(2, 9, c);
  EXPECT_EQ(a, train_params(2, 9, c)) << "same seed, same threads: bitwise identical";
  EXPECT_EQ(a, train_params(1, 9, c)) << "1 vs 2 threads: bitwise identical";
  EXPECT_NE(a, train_params(2, 10, c));
  Config no_dropout = c;
  no_dropout.model.dropout = 0;
  EXPECT_NE(a, train_params(2, 9, no_dropout)) << "dropout must change the training";
}

// Training mode applies the mask of the step set last; eval mode is the identity, bit for bit
// the model without dropout. The mask is a function of (seed, step) only.
TEST(Model, DropoutMaskFollowsSeedAndStepAndEvalSkipsIt) {
  auto be = make_cpu_backend();
  const Config c = pooling_dropout_config();
  Config plain = c;
  plain.model.dropout = 0;
  const int B = 4, E = c.model.embedding;
  Model m(c, *be, B), ref(plain, *be, B);
  m.init_params(3);
  ref.init_params(3);
  const ModelPlan& p = m.plan();
  ASSERT_EQ(p.head_width(), 3 * 8);
  const int64_t D = static_cast<int64_t>(B) * p.head_width();
  const auto audio = random_audio(B, c.audio.clip_samples(), 4);
  const auto e_ref = host_copy(*be, ref.forward(audio.data(), B), B * E);

  m.set_dropout_step(7, 1);
  const auto e1 = host_copy(*be, m.forward(audio.data(), B), B * E);
  const auto mask1 = host_copy(*be, m.activations().ptr("dropout_mask"), D);
  const auto pooled = host_copy(*be, m.activations().ptr("pooled"), D);
  const auto dropped = host_copy(*be, m.activations().ptr("dropout"), D);
  int64_t zeros = 0;
  for (int64_t i = 0; i < D; ++i) {
    const size_t k = static_cast<size_t>(i);
    const bool drop = philox_uniform(7, dropout_stream(1), static_cast<uint64_t>(i)) < 0.3;
    ASSERT_EQ(mask1[k], drop ? 0.0f : dropout_scale<float>(0.3));
    ASSERT_EQ(dropped[k], pooled[k] * mask1[k]);
    zeros += mask1[k] == 0.0f;
  }
  EXPECT_GT(zeros, 0);
  EXPECT_LT(zeros, D);
  EXPECT_NE(e1, e_ref) << "training mode must drop features";

  m.set_dropout_step(7, 2);
  m.forward(audio.data(), B);
  EXPECT_NE(host_copy(*be, m.activations().ptr("dropout_mask"), D), mask1) << "step 2 draws another mask";
  m.set_dropout_step(7, 1);
  EXPECT_EQ(host_copy(*be, m.forward(audio.data(), B), B * E), e1) << "(seed, step) decides the mask";

  m.set_training(false);
  EXPECT_EQ(host_copy(*be, m.forward(audio.data(), B), B * E), e_ref) << "eval mode: dropout is the identity";
  m.set_training(true);
}

TEST(Model, TrainingLowersTheLossOnAFixedBatch) {
  auto be = make_cpu_backend();
  Config c = small_config();
  c.loss.margin = 0.5;
  const int n = 4;
  Model m(c, *be, 3 * n);
  m.init_params(1);
  Optimizer opt(*be, m.params().layout(), c.optim);
  TrainStep step(m);
  step.set_triplets(TrainStep::offline_triplets(n));
  const auto audio = random_audio(3 * n, c.audio.clip_samples(), 2);
  step.forward_backward(audio.data(), 3 * n, c.loss);
  const float first = step.read_stats().loss;
  for (int i = 0; i < 30; ++i) step.step(audio.data(), 3 * n, c.loss, opt, 3e-3);
  step.forward_backward(audio.data(), 3 * n, c.loss);
  const float last = step.read_stats().loss;
  EXPECT_LT(last, 0.5f * first) << "30 Adam steps on one batch should fit it";
}

// End-to-end gradient check of mel -> conv stack -> head -> loss in float32.
// For each parameter tensor t, along the unit direction v = g_t / |g_t|, the central
// difference (L(p + h v) - L(p - h v)) / 2h must equal |g_t|. Two errors compete: the float32
// noise of L (~1e-7) divided by h, and the kinks of ReLU and max-pool that a step of h
// crosses (this small model has few units, so each crossing shows). Measured ratios for
// h = 1e-2, 3e-3, 1e-3, 3e-4 were 0.41, 0.92, 0.94, 0.98 for the worst tensor: converging to
// 1 as h shrinks, as kinks predict; at h = 1e-4 the noise takes over for the smallest
// gradients (|g| ~ 0.04). h = 3e-4 with a 5% bound keeps 2x margin. A wrong sign or index in
// any backward pass is an O(1) error; the exact double-precision checks are per op in
// test_ops_gradcheck, and the whole model is compared with PyTorch in test_reference_model.
void expect_end_to_end_gradient(Config c) {
  auto be = make_cpu_backend();
  c.loss.margin = 1.0;  // every triplet active: all paths carry gradient
  const int n = 4;
  Model m(c, *be, 3 * n);
  m.init_params(21);
  TrainStep step(m);
  step.set_triplets(TrainStep::offline_triplets(n));
  const auto audio = random_audio(3 * n, c.audio.clip_samples(), 8);

  step.forward_backward(audio.data(), 3 * n, c.loss);
  EXPECT_EQ(step.read_stats().active, static_cast<float>(n));
  const auto grads = host_copy(*be, m.grads().data(), m.grads().size());
  const auto p0 = host_copy(*be, m.params().data(), m.params().size());
  auto loss_at = [&](const std::vector<float>& p) {
    be->to_device(m.params().data(), p.data(), p.size() * sizeof(float));
    step.forward_backward(audio.data(), 3 * n, c.loss);
    return static_cast<double>(step.read_stats().loss);
  };
  const double h = 3e-4;
  for (const auto& s : m.params().layout().specs()) {
    double gn = 0;
    for (int64_t i = 0; i < s.numel(); ++i) gn += double(grads[s.offset + i]) * grads[s.offset + i];
    gn = std::sqrt(gn);
    ASSERT_GT(gn, 0) << s.name << " has a zero gradient";
    std::vector<float> plus = p0, minus = p0;
    for (int64_t i = 0; i < s.numel(); ++i) {
      const double v = grads[s.offset + i] / gn;
      plus[s.offset + i] = static_cast<float>(p0[s.offset + i] + h * v);
      minus[s.offset + i] = static_cast<float>(p0[s.offset + i] - h * v);
    }
    const double fd = (loss_at(plus) - loss_at(minus)) / (2 * h);
    if (const char* v = std::getenv("MELGRAPH_TEST_VERBOSE"); v && std::string(v) == "1")
      std::printf("  %-16s |g| %.4g  slope / |g| %.4f\n", s.name.c_str(), gn, fd / gn);
    EXPECT_NEAR(fd / gn, 1.0, 0.05) << s.name << ": |g| = " << gn << ", slope = " << fd;
  }
}

TEST(Model, EndToEndGradientMatchesCentralDifferences) { expect_end_to_end_gradient(small_config()); }

// The pooled head [mean | max | l2] adds the global max's kink (an argmax switching
// inside the step h) to the ReLU and max-pool ones; the same h and bound hold (measured worst
// ratios in the comment above). Dropout's mask is fixed by the step set at construction:
// every evaluation of the loss sees the same mask, so it is a fixed linear map here.
TEST(Model, EndToEndGradientWithMeanMaxL2Pooling) {
  Config c = small_config();
  c.model.pooling = GlobalPool::MeanMaxL2;
  expect_end_to_end_gradient(c);
}

TEST(Model, EndToEndGradientWithMeanMaxPoolingAndDropout) {
  Config c = small_config();
  c.model.pooling = GlobalPool::MeanMax;
  c.model.dropout = 0.25;
  expect_end_to_end_gradient(c);
}

TEST(Model, EndToEndGradientWithMeanMaxL2PoolingAndDropout) { expect_end_to_end_gradient(pooling_dropout_config()); }

}  // namespace
}  // namespace mg
