// Random draws for the demo collection: a cursor over one Philox stream, so each clip and each
// graph item has its own stream (seed, stream) and what it draws does not depend on which
// thread renders it or in what order.
#pragma once
#include <cstdint>

#include "kernels/philox.h"

namespace mg::demo {

// Stream namespaces: the high 32 bits say what the stream is for, the low bits which one.
constexpr uint64_t kClipStream = 1ull << 32;    // + clip index: the clip's score and sound
constexpr uint64_t kItemStream = 2ull << 32;    // + item index: the item's recommendations
constexpr uint64_t kNamesStream = 3ull << 32;   // + item index: title and artist
constexpr uint64_t kGraphStream = 4ull << 32;   // hub choice (one stream)

class Draws {
 public:
  Draws(uint64_t seed, uint64_t stream) : seed_(seed), stream_(stream) {}
  uint32_t u32() { return philox_u32(seed_, stream_, next_++); }
  uint64_t u64() { return static_cast<uint64_t>(u32()) << 32 | u32(); }
  // Uniform in [0, 1), 24 bits.
  double uniform() { return static_cast<double>(u32() >> 8) * (1.0 / 16777216.0); }
  // Uniform in [0, n), n >= 1 (multiply-shift; the bias is below 2^-32 * n).
  int below(int n) {
    return static_cast<int>((static_cast<uint64_t>(u32()) * static_cast<uint64_t>(n)) >> 32);
  }
  // Uniform in [lo, hi].
  int between(int lo, int hi) { return lo + below(hi - lo + 1); }

 private:
  uint64_t seed_, stream_, next_ = 0;
};

}  // namespace mg::demo
