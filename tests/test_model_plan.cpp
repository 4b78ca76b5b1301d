#include "engine/model_plan.h"

#include <gtest/gtest.h>

#include <string>

#include "tests/test_support.h"

namespace mg {
namespace {

Config with_samples(Config c, int64_t samples) {
  // clip_samples() rounds clip_seconds * sample_rate to nearest, so this lands exactly.
  c.audio.clip_seconds = static_cast<double>(samples) / c.audio.sample_rate;
  EXPECT_EQ(c.audio.clip_samples(), samples);
  return c;
}

std::string plan_error(const Config& c, int batch = 2) {
  try {
    make_model_plan(c, batch);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(ModelPlan, DefaultShapes) {
  const Config c = test::seed_defaults();
  const ModelPlan p = make_model_plan(c, 6);
  EXPECT_EQ(p.batch, 6);
  EXPECT_EQ(p.samples, 220500);
  EXPECT_EQ(p.frames, 431);  // 1 + 220500 / 512
  EXPECT_EQ(p.n_mels, 128);
  EXPECT_EQ(p.embedding, 128);
  ASSERT_EQ(p.stages.size(), 3u);

  const int tin[] = {431, 107, 26};
  const int tconv[] = {428, 104, 23};
  const int tout[] = {107, 26, 23};
  for (size_t i = 0; i < 3; ++i) {
    SCOPED_TRACE("stage " + std::to_string(i));
    const StagePlan& s = p.stages[i];
    EXPECT_EQ(s.conv.B, 6);
    EXPECT_EQ(s.conv.Cin, 128);
    EXPECT_EQ(s.conv.Cout, 128);
    EXPECT_EQ(s.conv.Tin, tin[i]);
    EXPECT_EQ(s.conv.K, 4);
    EXPECT_EQ(s.conv.pad_left, 0);
    EXPECT_EQ(s.conv.pad_right, 0);
    EXPECT_EQ(s.t_conv, tconv[i]);
    EXPECT_EQ(s.pool, i < 2);
    EXPECT_EQ(s.t_out, tout[i]);
  }
  // 3 convs of 128*128*4 + 128, then a 128 -> 128 linear with bias.
  EXPECT_EQ(p.param_count(), 213504);
}

TEST(ModelPlan, ChannelsChainAndCountParameters) {
  Config c = test::seed_defaults();
  c.mel.n_mels = 40;
  c.model.channels = {24, 56, 9, 31};
  c.model.kernel = 3;
  c.model.pool = 2;
  c.model.embedding = 13;
  const ModelPlan p = make_model_plan(c, 5);
  ASSERT_EQ(p.stages.size(), 4u);
  const int cin[] = {40, 24, 56, 9};
  int64_t params = 0;
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(p.stages[i].conv.Cin, cin[i]);
    EXPECT_EQ(p.stages[i].conv.Cout, c.model.channels[i]);
    EXPECT_EQ(p.stages[i].conv.Tin, i == 0 ? p.frames : p.stages[i - 1].t_out);
    EXPECT_EQ(p.stages[i].t_out, i < 3 ? p.stages[i].t_conv / 2 : p.stages[i].t_conv);
    params += int64_t{c.model.channels[i]} * cin[i] * 3 + c.model.channels[i];
  }
  params += 13 * 31 + 13;
  EXPECT_EQ(p.param_count(), params);
}

TEST(ModelPlan, SamePaddingKeepsLengthAndSplitsLikePyTorch) {
  Config c = test::seed_defaults();
  c.model.padding = Padding::Same;
  for (int k : {1, 4, 5, 8}) {
    SCOPED_TRACE("kernel " + std::to_string(k));
    c.model.kernel = k;
    const ModelPlan p = make_model_plan(c, 1);
    const int left = (k - 1) / 2;
    EXPECT_EQ(p.stages[0].conv.pad_left, left);
    EXPECT_EQ(p.stages[0].conv.pad_right, k - 1 - left);
    EXPECT_EQ(p.stages[0].t_conv, 431);
    EXPECT_EQ(p.stages[0].t_out, 107);  // floor(431 / 4)
    EXPECT_EQ(p.stages[1].t_conv, 107);
    EXPECT_EQ(p.stages[1].t_out, 26);
    EXPECT_EQ(p.stages[2].t_out, 26);
  }
  c.model.kernel = 4;
  EXPECT_EQ(make_model_plan(c, 1).stages[0].conv.pad_left, 1);
  EXPECT_EQ(make_model_plan(c, 1).stages[0].conv.pad_right, 2);
}

TEST(ModelPlan, ShortestClipIsExact) {
  // Default stack, backwards from 1 output step: conv.2 needs 4, pool.1 16, conv.1 19,
  // pool.0 76, conv.0 79 frames; 1 + S / 512 >= 79 gives S >= 78 * 512 = 39936.
  const Config d = test::seed_defaults();
  EXPECT_EQ(min_clip_samples(d), 39936);

  Config odd = test::seed_defaults();
  odd.audio.sample_rate = 16000;
  odd.mel.sample_rate = 16000;
  odd.mel.hop = 173;
  odd.model.kernel = 5;
  odd.model.pool = 3;
  odd.model.channels = {37, 11};
  Config same = odd;
  same.model.padding = Padding::Same;

  for (const Config& base : {d, odd, same}) {
    const int64_t n = min_clip_samples(base);
    SCOPED_TRACE("shortest clip " + std::to_string(n));
    const Config ok = with_samples(base, n);
    EXPECT_NO_THROW(make_model_plan(ok, 3));
    // Unless reflect padding sets the bound, the shortest clip leaves exactly one step.
    if (n > base.mel.n_fft / 2 + 1) {
      EXPECT_EQ(make_model_plan(ok, 3).stages.back().t_out, 1);
    }

    const std::string msg = plan_error(with_samples(base, n - 1));
    ASSERT_FALSE(msg.empty()) << "one sample less still builds";
    EXPECT_NE(msg.find("The shortest clip that works is " + std::to_string(n) + " samples"),
              std::string::npos)
        << msg;
    EXPECT_NE(msg.find(std::to_string(n - 1) + " samples"), std::string::npos) << msg;
  }
}

TEST(ModelPlan, TooShortClipNamesStageSizesAndShortestClip) {
  Config c = with_samples(test::seed_defaults(), 39935);
  const std::string msg = plan_error(c);
  // 39935 samples -> 78 frames -> 75 -> 18 -> 15 -> 3 -> conv.2 gives 0.
  EXPECT_NE(msg.find("conv.2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("0 steps"), std::string::npos) << msg;
  EXPECT_NE(msg.find("input 3 steps"), std::string::npos) << msg;
  EXPECT_NE(msg.find("audio.clip_seconds"), std::string::npos) << msg;
  // 39936 / 22050 = 1.81115... s, rounded up so that the printed value is long enough.
  EXPECT_NE(msg.find("39936 samples (clip_seconds >= 1.8112 at 22050 Hz)"), std::string::npos) << msg;
  Config pasted = test::seed_defaults();
  pasted.audio.clip_seconds = 1.8112;
  EXPECT_NO_THROW(make_model_plan(pasted, 1));

  // A pool stage that runs out: conv.0 gives 3 steps, pool.0 (window 4) gives 0.
  Config p = test::seed_defaults();
  p.model.channels = {128, 128};
  p.model.kernel = 1;
  p.mel.hop = 1024;
  const int64_t n = min_clip_samples(p);
  EXPECT_EQ(n, 3 * 1024);  // 4 frames
  const std::string pool_msg = plan_error(with_samples(p, n - 1));
  EXPECT_NE(pool_msg.find("pool.0"), std::string::npos) << pool_msg;
  EXPECT_NE(pool_msg.find("window 4"), std::string::npos) << pool_msg;
}

TEST(ModelPlan, ReflectPaddingNeedsMoreThanHalfAWindow) {
  Config c = test::seed_defaults();
  c.model.channels = {8};  // one conv stage, kernel 4: 4 frames are enough
  c.mel.hop = 64;
  // Frames would allow S = 3 * 64 = 192, but reflect padding needs S > 512.
  EXPECT_EQ(min_clip_samples(c), 513);
  EXPECT_NO_THROW(make_model_plan(with_samples(c, 513), 1));
  const std::string msg = plan_error(with_samples(c, 512));
  EXPECT_NE(msg.find("reflect"), std::string::npos) << msg;
  EXPECT_NE(msg.find("513 samples"), std::string::npos) << msg;
}

TEST(ModelPlan, RejectsBadBatchAndInvalidConfig) {
  EXPECT_THROW(make_model_plan(test::seed_defaults(), 0), ConfigError);
  Config c = test::seed_defaults();
  c.model.kernel = 0;
  EXPECT_THROW(make_model_plan(c, 1), ConfigError);
  EXPECT_THROW(min_clip_samples(c), ConfigError);
}

TEST(ModelPlan, HugePoolsReportThatNoClipWorks) {
  Config c = test::seed_defaults();
  c.model.pool = 4096;  // the largest the config takes: 4096^3 frames would be needed
  c.model.channels = {4, 4, 4, 4};
  const std::string msg = plan_error(c);
  EXPECT_NE(msg.find("No clip"), std::string::npos) << msg;
}

TEST(ModelPlan, DescribeListsEveryLayer) {
  const Config c = test::seed_defaults();
  const std::string d = make_model_plan(c, 192).describe(c);
  for (const char* part :
       {"22050 Hz", "220500 samples", "mel ", "[192, 128, 431]", "conv.0", "[192, 128, 428]",
        "65664", "relu.0", "pool.0", "[192, 128, 107]", "conv.1", "[192, 128, 104]", "pool.1",
        "[192, 128, 26]", "conv.2", "[192, 128, 23]", "relu.2", "mean", "[192, 128]", "linear",
        "16512", "l2norm", "213504 parameters", "854016 bytes"})
    EXPECT_NE(d.find(part), std::string::npos) << "'" << part << "' missing from:\n" << d;
  EXPECT_EQ(d.find("pool.2"), std::string::npos) << "the last stage has no pool:\n" << d;
  EXPECT_EQ(d.find("dropout"), std::string::npos) << "no dropout by default:\n" << d;
}

// Global pooling widens the head to k C_last ([mean | max | l2] per clip row); dropout adds a
// row of the same width and no parameters.
TEST(ModelPlan, PoolingOptionsWidenTheHead) {
  Config c = test::seed_defaults();
  const int64_t convs = 3 * (128 * 128 * 4 + 128);
  const GlobalPool pools[] = {GlobalPool::Mean, GlobalPool::MeanMax, GlobalPool::MeanMaxL2};
  for (int k = 1; k <= 3; ++k) {
    SCOPED_TRACE("k = " + std::to_string(k));
    c.model.pooling = pools[k - 1];
    const ModelPlan p = make_model_plan(c, 6);
    EXPECT_EQ(p.pooled_features(), k);
    EXPECT_EQ(p.head_width(), 128 * k);
    EXPECT_EQ(p.param_count(), convs + 128 * 128 * k + 128);
  }
  c.model.dropout = 0.25;
  const ModelPlan p = make_model_plan(c, 6);
  EXPECT_EQ(p.param_count(), convs + 128 * 384 + 128);
  const std::string d = p.describe(c);
  for (const char* part : {"pooled", "[6, 384]", "[mean | max | l2] over time, 128 each", "dropout",
                           "p 0.25, training only", "49280", "246272 parameters"})
    EXPECT_NE(d.find(part), std::string::npos) << "'" << part << "' missing from:\n" << d;
}

// model.pool_stages = all pools every stage's output (after its max-pool) into one row, stage
// by stage: D = k (C_0 + C_1 + C_2), each stage's block at k times the channels before it.
TEST(ModelPlan, PoolingEveryStageConcatenatesTheStages) {
  Config c = default_config();
  c.model.channels = {16, 24, 40};
  c.model.pool_stages = PoolStages::All;
  const ModelPlan p = make_model_plan(c, 5);
  EXPECT_EQ(p.first_pooled_stage(), 0u);
  EXPECT_EQ(p.pooled_offset(0), 0);
  EXPECT_EQ(p.pooled_offset(1), 2 * 16);
  EXPECT_EQ(p.pooled_offset(2), 2 * (16 + 24));
  EXPECT_EQ(p.head_width(), 2 * (16 + 24 + 40));
  EXPECT_EQ(pooled_width(c), 160);
  EXPECT_EQ(embedding_dim(c), 160);
  EXPECT_EQ(p.output_dim(), 160);
  const int64_t convs = (16 * 128 * 4 + 16) + (24 * 16 * 4 + 24) + (40 * 24 * 4 + 40);
  EXPECT_EQ(p.param_count(), convs + 2 * 160 + 128 * 160 + 128);
  const std::string d = p.describe(c);
  EXPECT_NE(d.find("[mean | max] over time of every stage"), std::string::npos) << d;
  EXPECT_NE(d.find("[5, 160]"), std::string::npos) << d;

  c.model.pool_stages = PoolStages::Last;  // the seed's: the last stage alone
  const ModelPlan last = make_model_plan(c, 5);
  EXPECT_EQ(last.first_pooled_stage(), 2u);
  EXPECT_EQ(last.pooled_offset(2), 0);
  EXPECT_EQ(last.head_width(), 80);
  EXPECT_EQ(pooled_width(c), 80);
}

// The default recipe on the seed's stack: 3 s clips (130 frames -> 127 -> 31 -> 28 -> 7 -> 4),
// [mean | max] pooling (256 features), batch norm's scale and shift (512), linear 128 x 256 + 128;
// the item embedding is the 256 normalised features.
TEST(ModelPlan, DefaultRecipeShapes) {
  const Config c = default_config();
  const ModelPlan p = make_model_plan(c, 4);
  EXPECT_EQ(p.samples, 66150);
  EXPECT_EQ(p.frames, 130);
  EXPECT_EQ(p.stages[0].t_conv, 127);
  EXPECT_EQ(p.stages[1].t_out, 7);
  EXPECT_EQ(p.stages[2].t_out, 4);
  EXPECT_TRUE(p.input_norm);
  EXPECT_TRUE(p.head_norm);
  EXPECT_EQ(p.head_width(), 256);
  EXPECT_EQ(p.output_dim(), 256);
  EXPECT_EQ(embedding_dim(c), 256);
  const int64_t convs = 3 * (128 * 128 * 4 + 128);
  EXPECT_EQ(p.param_count(), convs + 2 * 256 + 128 * 256 + 128);
  const std::string d = p.describe(c);
  for (const char* part : {"band", "standardised per band", "[mean | max] over time", "norm", "batch norm per feature",
                           "512", "embed", "[4, 256]", "the item embedding"})
    EXPECT_NE(d.find(part), std::string::npos) << "'" << part << "' missing from:\n" << d;
}

}  // namespace
}  // namespace mg
