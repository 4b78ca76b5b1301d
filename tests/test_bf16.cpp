// bf16 mixed precision, the CPU side (kernels/bf16_cpu.h): the rounding itself (by rule, and
// against PyTorch's float32 -> bfloat16 conversion), each emulated op against float64 sums of
// the rounded operands, and the distance between bf16 and float32 results that lets the CUDA
// comparisons in test_backend_ops tell a path that rounds from one that does not.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/bf16_cpu.h"
#include "kernels/conv1d_cpu.h"
#include "kernels/linear_cpu.h"
#include "tests/reference_harness.h"

namespace mg {
namespace {

uint32_t bits(float x) {
  uint32_t u = 0;
  std::memcpy(&u, &x, sizeof u);
  return u;
}
float from_bits(uint32_t u) {
  float x = 0;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

std::vector<float> uniform(std::mt19937& rng, size_t n, float lo, float hi) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

std::vector<double> rounded64(const std::vector<float>& x) {
  std::vector<double> r(x.size());
  for (size_t i = 0; i < x.size(); ++i) r[i] = round_bf16(x[i]);
  return r;
}

double rel_error(const std::vector<float>& got, const std::vector<double>& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    num += (got[i] - want[i]) * (got[i] - want[i]);
    den += want[i] * want[i];
  }
  return std::sqrt(num / den);
}

double rel_error(const std::vector<float>& got, const std::vector<float>& want) {
  return rel_error(got, std::vector<double>(want.begin(), want.end()));
}

TEST(Bf16, RoundsToNearestTiesToEven) {
  // bf16 keeps 7 fraction bits: next to 1 the step is 2^-7.
  EXPECT_EQ(round_bf16(1.0f), 1.0f);
  EXPECT_EQ(round_bf16(1.0f + 0x1p-8f), 1.0f) << "a tie rounds to the even neighbour (1)";
  EXPECT_EQ(round_bf16(1.0f + 3 * 0x1p-8f), 1.0f + 0x1p-6f) << "a tie rounds to the even neighbour (1 + 2^-6)";
  EXPECT_EQ(round_bf16(1.0f + 0x1p-8f + 0x1p-20f), 1.0f + 0x1p-7f) << "above the tie rounds up";
  EXPECT_EQ(round_bf16(-(1.0f + 0x1p-8f + 0x1p-20f)), -(1.0f + 0x1p-7f)) << "sign-magnitude: the same below zero";
  EXPECT_EQ(round_bf16(0x1.ff8p0f), 2.0f) << "a carry into the exponent";
  EXPECT_EQ(bits(round_bf16(-0.0f)), bits(-0.0f));
  EXPECT_EQ(round_bf16(std::numeric_limits<float>::infinity()), std::numeric_limits<float>::infinity());
  EXPECT_EQ(round_bf16(std::numeric_limits<float>::max()), std::numeric_limits<float>::infinity())
      << "above the largest bf16 (0x1.fep127) rounds to infinity";
  EXPECT_EQ(round_bf16(0x1.fep127f), 0x1.fep127f);
  EXPECT_TRUE(std::isnan(round_bf16(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_TRUE(std::isnan(round_bf16(from_bits(0x7f800001u)))) << "a NaN whose payload is only in the low bits";
  EXPECT_EQ(round_bf16(from_bits(0x00012345u)), from_bits(0x00010000u)) << "subnormals round the same way";
}

TEST(ReferenceBf16, RoundingMatchesTorch) {
  MG_REQUIRE_TORCH();
  std::mt19937 rng(17);
  std::vector<uint32_t> words = {0x3f800000u, 0x3f808000u, 0x3f818000u, 0x3f808001u, 0xbf808001u, 0x3fffc000u,
                                 0x80000000u, 0x7f800000u, 0xff800000u, 0x7f7fffffu, 0x7f7f7fffu, 0x7f7f8000u,
                                 0x00012345u, 0x00008000u, 0x00018000u, 0x807fffffu};
  std::uniform_int_distribution<uint32_t> any;
  while (words.size() < 20000) {
    const uint32_t w = any(rng);
    if ((w & 0x7fffffffu) > 0x7f800000u) continue;  // NaN payloads: only NaN-ness is promised
    // Half of them ties or near-ties: the low 16 bits at or next to 0x8000.
    words.push_back(words.size() % 2 ? w : (w & 0xffff0000u) | (0x7fffu + (w & 3u)));
  }
  std::ostringstream in;
  for (uint32_t w : words) in << std::hex << w << "\n";
  const std::string file = ::testing::TempDir() + "bf16_words.txt";
  {
    FILE* f = std::fopen(file.c_str(), "w");
    ASSERT_NE(f, nullptr) << file;
    std::fputs(in.str().c_str(), f);
    std::fclose(f);
  }
  std::string out;
  const std::string cmd = test::python_exe() + " " + test::reference_script("ref_bf16.py") + " < " + file;
  ASSERT_EQ(test::run_command(cmd, &out), 0) << cmd << "\n" << out;
  std::istringstream lines(out);
  size_t i = 0, mismatches = 0;
  for (std::string line; std::getline(lines, line) && i < words.size(); ++i) {
    const uint32_t want = static_cast<uint32_t>(std::stoul(line, nullptr, 16));
    const uint32_t got = bits(round_bf16(from_bits(words[i])));
    if (got != want && ++mismatches <= 5)
      ADD_FAILURE() << "float bits " << std::hex << words[i] << ": ours " << got << ", torch " << want;
  }
  EXPECT_EQ(i, words.size()) << "torch answered " << i << " of " << words.size() << " values";
  EXPECT_EQ(mismatches, 0u);
}

// The emulated conv against float64 sums of the same rounded operands, rounded as the contract
// says. The emulation sums in float32, so a sum within float32 rounding of a bf16 boundary may
// land on the other side: nearly every element is identical, the rest one bf16 step apart.
TEST(Bf16, ConvRoundsWhereTheContractSays) {
  for (const bool same : {false, true}) {
    const Conv1dDims d{5, 13, 17, 41, 4, same ? 1 : 0, same ? 2 : 0};
    const size_t B = 5, Cin = 13, Cout = 17, K = 4, Tin = 41, Tout = static_cast<size_t>(d.Tout());
    std::mt19937 rng(same ? 3 : 2);
    const auto x = uniform(rng, B * Cin * Tin, -1, 1), w = uniform(rng, Cout * Cin * K, -0.5f, 0.5f),
               b = uniform(rng, Cout, -0.5f, 0.5f), dy = uniform(rng, B * Cout * Tout, -1, 1);
    const auto x64 = rounded64(x), w64 = rounded64(w), dy64 = rounded64(dy);
    // Forward: y = r(conv(r x, r w)) + b.
    std::vector<double> y_sum(B * Cout * Tout), zero_b(Cout, 0.0);
    conv1d_forward_cpu(x64.data(), w64.data(), zero_b.data(), y_sum.data(), d);
    std::vector<double> y_want(y_sum.size());
    for (size_t i = 0; i < y_sum.size(); ++i)
      y_want[i] = round_bf16(static_cast<float>(y_sum[i])) + static_cast<double>(b[(i / Tout) % Cout]);
    std::vector<float> y(y_sum.size(), std::nanf(""));
    conv1d_forward_bf16_cpu(x.data(), w.data(), b.data(), y.data(), d);
    size_t equal = 0;
    for (size_t i = 0; i < y.size(); ++i) equal += static_cast<double>(y[i]) == static_cast<float>(y_want[i]);
    EXPECT_GE(equal, y.size() * 99 / 100) << "forward: elements identical to the float64 contract";
    EXPECT_LE(rel_error(y, y_want), 2e-4) << "forward (bound: a few one-step flips, 2^-8 each)";

    // Backward: dx = r(conv^T(r dy, r w)); dw += r(corr(r x, r dy)); db += sum dy (float32 dy).
    std::vector<double> dx_sum(x.size()), dw_sum(w.size(), 0.0), db_rounded(Cout, 0.0);
    conv1d_backward_cpu(dy64.data(), x64.data(), w64.data(), dx_sum.data(), dw_sum.data(), db_rounded.data(), d);
    const auto dw0 = uniform(rng, w.size(), -3, 3), db0 = uniform(rng, Cout, -3, 3);
    std::vector<double> dx_want(x.size()), dw_want(w.size()), db_want(Cout);
    for (size_t i = 0; i < x.size(); ++i) dx_want[i] = round_bf16(static_cast<float>(dx_sum[i]));
    for (size_t i = 0; i < w.size(); ++i)
      dw_want[i] = dw0[i] + static_cast<double>(round_bf16(static_cast<float>(dw_sum[i])));
    for (size_t c = 0; c < Cout; ++c) {
      double s = 0;
      for (size_t bi = 0; bi < B; ++bi)
        for (size_t t = 0; t < Tout; ++t) s += dy[(bi * Cout + c) * Tout + t];
      db_want[c] = db0[c] + s;
    }
    std::vector<float> dx(x.size(), std::nanf("")), dw = dw0, db = db0;
    conv1d_backward_bf16_cpu(dy.data(), x.data(), w.data(), dx.data(), dw.data(), db.data(), d);
    EXPECT_LE(rel_error(dx, dx_want), 2e-4) << "dx";
    EXPECT_LE(rel_error(dw, dw_want), 2e-4) << "dw: the rounded sum added to what was there";
    EXPECT_LE(rel_error(db, db_want), 1e-6) << "db: from the float32 dy, not rounded";
  }
}

// The linear layer rounds its operands only: its sums come back in float32.
TEST(Bf16, LinearRoundsTheOperandsOnly) {
  const int B = 19, C = 37, E = 11;
  std::mt19937 rng(5);
  const auto x = uniform(rng, size_t{B} * C, 0, 2), w = uniform(rng, size_t{E} * C, -0.3f, 0.3f),
             b = uniform(rng, E, -0.5f, 0.5f), dy = uniform(rng, size_t{B} * E, -1, 1);
  const auto x64 = rounded64(x), w64 = rounded64(w), dy64 = rounded64(dy);
  const std::vector<double> b64(b.begin(), b.end());
  std::vector<double> y_want(size_t{B} * E);
  linear_forward_cpu(x64.data(), w64.data(), b64.data(), y_want.data(), B, C, E);
  std::vector<float> y(y_want.size(), std::nanf(""));
  linear_forward_bf16_cpu(x.data(), w.data(), b.data(), y.data(), B, C, E);
  EXPECT_LE(rel_error(y, y_want), 1e-6) << "forward: float32 rounding of the sums only";

  std::vector<double> dx_want(x.size()), dw_want(w.size(), 0.0), db_unused(E, 0.0);
  linear_backward_cpu(dy64.data(), x64.data(), w64.data(), dx_want.data(), dw_want.data(), db_unused.data(), B, C, E);
  std::vector<double> db_want(E, 0.0);
  for (int i = 0; i < B; ++i)
    for (int e = 0; e < E; ++e) db_want[static_cast<size_t>(e)] += dy[static_cast<size_t>(i) * E + e];
  std::vector<float> dx(x.size(), std::nanf("")), dw(w.size(), 0.0f), db(E, 0.0f);
  linear_backward_bf16_cpu(dy.data(), x.data(), w.data(), dx.data(), dw.data(), db.data(), B, C, E);
  EXPECT_LE(rel_error(dx, dx_want), 1e-6) << "dx";
  EXPECT_LE(rel_error(dw, dw_want), 1e-6) << "dw";
  EXPECT_LE(rel_error(db, db_want), 1e-6) << "db: from the float32 dy";
}

// How far bf16 lands from float32 on test_backend_ops' inputs: far beyond the bounds there
// (5e-4 conv, 2e-5 linear), so a CUDA path that skipped the rounding would fail them.
TEST(Bf16, DiffersFromFloat32FarBeyondTheCudaBounds) {
  const Conv1dDims d{6, 128, 128, 431, 4, 0, 0};
  std::mt19937 rng(11);
  const auto x = uniform(rng, size_t{6} * 128 * 431, -1, 1), w = uniform(rng, size_t{128} * 128 * 4, -0.5f, 0.5f),
             b = uniform(rng, 128, -0.5f, 0.5f);
  std::vector<float> y32(size_t{6} * 128 * static_cast<size_t>(d.Tout())), y16(y32.size());
  conv1d_forward_cpu(x.data(), w.data(), b.data(), y32.data(), d);
  conv1d_forward_bf16_cpu(x.data(), w.data(), b.data(), y16.data(), d);
  const double conv_gap = rel_error(y16, y32);
  EXPECT_GE(conv_gap, 4 * 5e-4) << "conv1d bf16 vs float32";

  const int B = 192, C = 256, E = 128;
  const auto lx = uniform(rng, size_t{B} * C, 0, 2), lw = uniform(rng, size_t{E} * C, -0.3f, 0.3f),
             lb = uniform(rng, E, -0.5f, 0.5f);
  std::vector<float> l32(size_t{B} * E), l16(l32.size());
  linear_forward_cpu(lx.data(), lw.data(), lb.data(), l32.data(), B, C, E);
  linear_forward_bf16_cpu(lx.data(), lw.data(), lb.data(), l16.data(), B, C, E);
  const double linear_gap = rel_error(l16, l32);
  EXPECT_GE(linear_gap, 10 * 2e-5) << "linear bf16 vs float32";
  std::printf("  bf16 vs float32, norm-wise: conv1d %.2e, linear %.2e\n", conv_gap, linear_gap);
}

}  // namespace
}  // namespace mg
