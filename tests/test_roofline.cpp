// The roofline's FLOP and byte counts (engine/perf/roofline.h) against numbers worked out by hand
// for the small test model, and the floor's arithmetic.
//
// small_config(): 8 kHz, 1 s (S = 8000), n_fft 256, hop 64 -> F = 126 frames, 16 mels; three
// stages of 8 channels, K 4, valid, pool 4: 126 -> conv 123 -> pool 30 -> conv 27 -> pool 6 ->
// conv 3; embedding 8. Batch 6 = 2 triplets. Parameters: conv0 8*16*4+8 = 520, conv1 and
// conv2 8*8*4+8 = 264 each, linear 8*8+8 = 72: 1120.
#include <gtest/gtest.h>

#include "engine/model_plan.h"
#include "engine/perf/roofline.h"
#include "tests/test_support.h"

namespace mg {
namespace {

TEST(Roofline, ConvFlopsByHand) {
  // Stage 0 of the small model: 2 * 6*8*16*4*123 multiply-adds + 6*8*123 bias adds.
  const Conv1dDims d0{6, 16, 8, 126, 4, 0, 0};
  EXPECT_DOUBLE_EQ(conv_forward_flops(d0), 755712.0 + 5904.0);
  EXPECT_DOUBLE_EQ(conv_backward_filter_flops(d0), 755712.0 + 5904.0);
  EXPECT_DOUBLE_EQ(conv_backward_data_flops(d0), 755712.0);
  // Stage 0 of the reference model: 192 clips, 128 -> 128 channels, 431 -> 428 steps:
  // 2 * 192*128*128*4*428 = 10,770,972,672 plus 192*128*428 = 10,518,528.
  const Conv1dDims r0{192, 128, 128, 431, 4, 0, 0};
  EXPECT_DOUBLE_EQ(conv_forward_flops(r0), 10770972672.0 + 10518528.0);
}

TEST(Roofline, FrontEndAndHeadFlopsByHand) {
  EXPECT_DOUBLE_EQ(fft_flops(256), 2.5 * 256 * 8);
  EXPECT_DOUBLE_EQ(fft_flops(1024), 25600.0);
  // Per frame: window 256 + FFT 5120 + power 3*129 + projection 2*100 + log 2*16 = 5995;
  // 2 clips of 126 frames.
  const Config c = test::small_config();
  EXPECT_DOUBLE_EQ(mel_flops(c.mel, 2, 8000, 100), 252.0 * 5995.0);
  EXPECT_DOUBLE_EQ(linear_forward_flops(6, 8, 8), 2 * 384.0 + 48.0);
  EXPECT_DOUBLE_EQ(linear_backward_flops(6, 8, 8), 4 * 384.0 + 48.0);
  EXPECT_DOUBLE_EQ(l2norm_forward_flops(6, 8), 144.0);
  EXPECT_DOUBLE_EQ(l2norm_backward_flops(6, 8), 240.0);
  EXPECT_DOUBLE_EQ(triplet_loss_flops(2, 8, false), 192.0);
  EXPECT_DOUBLE_EQ(triplet_loss_flops(2, 8, true), 224.0);
  OptimConfig o;
  EXPECT_DOUBLE_EQ(adam_flops(1120, o), 15680.0);
  o.adam.weight_decay = 0.01;
  o.clip_norm = 1.0;
  EXPECT_DOUBLE_EQ(adam_flops(1120, o), 1120.0 * 19);
}

TEST(Roofline, TrainingStepOfTheSmallModelByHand) {
  const Config c = test::small_config();
  const StepCost cost = training_step_cost(c, 6, 2);
  ASSERT_EQ(cost.parts.size(), 4u);
  EXPECT_EQ(cost.parts[0].name, "mel");
  EXPECT_EQ(cost.parts[1].name, "conv stack fwd+bwd");
  EXPECT_EQ(cost.parts[2].name, "head + loss");
  EXPECT_EQ(cost.parts[3].name, "optimizer");

  // Conv stack, per stage: forward and weight gradient (each 2 MACs + bias), input gradient
  // after stage 0, ReLU forward and backward (1 per conv output each), max-pool (3 compares
  // per pooled output, 1 per conv output back).
  //   stage 0: 2*761616 + 2*5904 + 3*1440 + 5904           = 1545264
  //   stage 1: 2*84240 + 82944 + 2*1296 + 3*288 + 1296      =  256176
  //   stage 2: 2*9360 + 9216 + 2*144                         =   28224
  EXPECT_DOUBLE_EQ(cost.parts[1].flops, 1545264.0 + 256176.0 + 28224.0);
  // Bytes (4 per float): log-mel read 6*16*126 = 12096; stage 0 conv output 5904 and pool
  // output 1440, each written and read with its gradient (x4); stage 1 likewise 1296 and 288;
  // stage 2's output 144 written, its gradient read (x2); weights read and gradients written,
  // 2 * (520 + 264 + 264).
  EXPECT_DOUBLE_EQ(cost.parts[1].bytes, 4.0 * (12096 + 4 * (5904 + 1440) + 4 * (1296 + 288) + 2 * 144 + 2 * 1048));

  // Head: mean over 3 steps forward and back 2*144, linear 816 + 1584, L2 144 + 240, loss 192.
  EXPECT_DOUBLE_EQ(cost.parts[2].flops, 288.0 + 816 + 1584 + 144 + 240 + 192);
  // Bytes: stage 2's output read and its gradient written 2*144; pooled [6, 8], linear and
  // embedding [6, 8] each written and read with their gradients 4*(48 + 96); linear weights
  // read and gradients written 2*72.
  EXPECT_DOUBLE_EQ(cost.parts[2].bytes, 4.0 * (288 + 4 * 144 + 144));

  // Mel: 6 clips of 8000 samples read, log-mel 12096 written.
  EXPECT_DOUBLE_EQ(cost.parts[0].bytes, 4.0 * (48000 + 12096));
  const double nnz = static_cast<double>(make_mel_filterbank(c.mel).weights.size());
  EXPECT_DOUBLE_EQ(cost.parts[0].flops, 6.0 * 126 * (256 + 5120 + 387 + 2.0 * nnz + 32));

  // Optimizer: 14 FLOPs and 7 floats moved per parameter.
  EXPECT_DOUBLE_EQ(cost.parts[3].flops, 1120.0 * 14);
  EXPECT_DOUBLE_EQ(cost.parts[3].bytes, 4.0 * 7 * 1120);

  double f = 0, b = 0;
  for (const CostPart& p : cost.parts) f += p.flops, b += p.bytes;
  EXPECT_DOUBLE_EQ(cost.flops(), f);
  EXPECT_DOUBLE_EQ(cost.bytes(), b);
}

TEST(Roofline, FloorIsTheSlowerOfComputeAndMemory) {
  DevicePeak peak;
  peak.flops_per_s = 1e10;
  peak.bytes_per_s = 1e9;
  const RooflineFloor mem = roofline_floor(1e9, 1e9, peak);  // 0.1 s of compute, 1 s of memory
  EXPECT_DOUBLE_EQ(mem.compute_seconds, 0.1);
  EXPECT_DOUBLE_EQ(mem.seconds(), 1.0);
  EXPECT_FALSE(mem.compute_bound());
  const RooflineFloor comp = roofline_floor(1e11, 1e8, peak);
  EXPECT_DOUBLE_EQ(comp.seconds(), 10.0);
  EXPECT_TRUE(comp.compute_bound());
  peak.bytes_per_s = 0;
  EXPECT_THROW(roofline_floor(1, 1, peak), std::invalid_argument);
}

// The probe measures something: any CPU this runs on does more than 100 MFLOP/s and copies
// more than 100 MB/s; a broken timer or a zero-sized loop would not.
TEST(Roofline, CpuProbeMeasuresPlausiblePeaks) {
  const DevicePeak p = measure_cpu_peak(1);
  EXPECT_GT(p.flops_per_s, 1e8);
  EXPECT_LT(p.flops_per_s, 1e13);
  EXPECT_GT(p.bytes_per_s, 1e8);
  EXPECT_LT(p.bytes_per_s, 1e13);
  EXPECT_NE(p.source.find("measured"), std::string::npos);
}

}  // namespace
}  // namespace mg
