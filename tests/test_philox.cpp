#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "kernels/philox.h"

namespace mg {
namespace {

// Known-answer vectors of Random123's tests/kat_vectors ("philox4x32 10" lines):
// counter (4 words), key (2 words) -> output (4 words).
TEST(Philox, KnownAnswerVectors) {
  struct Kat {
    Philox4x32 ctr;
    uint32_t k0, k1;
    Philox4x32 out;
  };
  const Kat kats[] = {
      {{{0, 0, 0, 0}}, 0, 0, {{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}}},
      {{{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}}, 0xffffffff, 0xffffffff,
       {{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}}},
      {{{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}}, 0xa4093822, 0x299f31d0,
       {{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}}},
  };
  for (const Kat& k : kats) {
    const Philox4x32 r = philox4x32_10(k.ctr, k.k0, k.k1);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(r.v[i], k.out.v[i]) << "word " << i;
  }
}

TEST(Philox, StreamsAndIndicesAreDistinct) {
  std::set<uint32_t> seen;
  for (uint64_t stream = 0; stream < 4; ++stream)
    for (uint64_t i = 0; i < 1000; ++i) seen.insert(philox_u32(7, stream, i));
  EXPECT_GT(seen.size(), 3990u);  // 4000 draws of 32 bits: collisions are vanishingly rare
  EXPECT_NE(philox_u32(7, 0, 0), philox_u32(8, 0, 0));
}

TEST(Philox, UniformMoments) {
  // 1e5 draws: mean 1/2 and variance 1/12 within ~5 standard errors.
  const int n = 100000;
  double s = 0, s2 = 0, lo = 1, hi = 0;
  for (int i = 0; i < n; ++i) {
    const double u = philox_uniform(42, 3, static_cast<uint64_t>(i));
    s += u;
    s2 += u * u;
    lo = std::min(lo, u);
    hi = std::max(hi, u);
  }
  const double mean = s / n, var = s2 / n - mean * mean;
  EXPECT_NEAR(mean, 0.5, 5 * std::sqrt(1.0 / 12 / n));
  EXPECT_NEAR(var, 1.0 / 12, 0.002);
  EXPECT_GE(lo, 0.0);
  EXPECT_LT(hi, 1.0);
}

}  // namespace
}  // namespace mg
