// Philox 4x32-10 counter-based RNG (Salmon et al., "Parallel random numbers: as easy as
// 1, 2, 3", SC'11). Header-only and usable from host and device code so that the CPU and
// CUDA backends draw bit-identical streams from the same (seed, stream, index).
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define MG_HD __host__ __device__ __forceinline__
#else
#define MG_HD inline
#endif

namespace mg {

struct Philox4x32 {
  uint32_t v[4];
};

MG_HD uint32_t philox_mulhilo(uint32_t a, uint32_t b, uint32_t* hi) {
  const uint64_t p = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
  *hi = static_cast<uint32_t>(p >> 32);
  return static_cast<uint32_t>(p);
}

// One block: counter (4 words) and key (2 words) -> 4 random words.
MG_HD Philox4x32 philox4x32_10(Philox4x32 ctr, uint32_t k0, uint32_t k1) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, hi1;
    const uint32_t lo0 = philox_mulhilo(kM0, ctr.v[0], &hi0);
    const uint32_t lo1 = philox_mulhilo(kM1, ctr.v[2], &hi1);
    ctr = Philox4x32{{hi1 ^ ctr.v[1] ^ k0, lo1, hi0 ^ ctr.v[3] ^ k1, lo0}};
    k0 += kW0;
    k1 += kW1;
  }
  return ctr;
}

// The melgraph stream convention: key = seed, counter = (block lo, block hi, stream lo,
// stream hi) with block = index / 4, lane = index % 4. Element `index` of stream `stream` is
// therefore independent of how the work is split across threads or GPU blocks.
MG_HD uint32_t philox_u32(uint64_t seed, uint64_t stream, uint64_t index) {
  const uint64_t block = index >> 2;
  Philox4x32 ctr{{static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32),
                  static_cast<uint32_t>(stream), static_cast<uint32_t>(stream >> 32)}};
  const Philox4x32 r = philox4x32_10(ctr, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
  return r.v[index & 3];
}

// Uniform in [0, 1) with 24 random bits (exactly representable in float).
MG_HD float philox_uniform(uint64_t seed, uint64_t stream, uint64_t index) {
  return static_cast<float>(philox_u32(seed, stream, index) >> 8) * (1.0f / 16777216.0f);
}

}  // namespace mg
