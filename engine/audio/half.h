// IEEE 754 binary16 ("half") <-> float, for the cache's float16 PCM. Written out rather than
// taken from F16C so the cache reads the same on every CPU.
//
// half layout: sign (1 bit) | exponent (5 bits, bias 15) | mantissa (10 bits).
//   exponent 0:  zero and subnormals, value = mantissa * 2^-24
//   exponent 31: infinity (mantissa 0) or NaN (payload kept in the top mantissa bits)
#pragma once
#include <bit>
#include <cmath>
#include <cstdint>

namespace mg::audio {

inline float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1Fu;
  const uint32_t mantissa = h & 0x3FFu;
  if (exponent == 0) {  // zero or subnormal: exact in float
    const float v = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -v : v;
  }
  if (exponent == 31) return std::bit_cast<float>(sign | 0x7F800000u | mantissa << 13);
  return std::bit_cast<float>(sign | (exponent - 15 + 127) << 23 | mantissa << 13);
}

// Round to nearest, ties to even; values beyond the half range become infinity.
inline uint16_t float_to_half(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  const auto sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t ax = x & 0x7FFFFFFFu;
  if (ax >= 0x7F800000u) {  // inf, or NaN kept quiet with the top of its payload
    const uint32_t payload = ax > 0x7F800000u ? 0x200u | ((ax >> 13) & 0x3FFu) : 0u;
    return static_cast<uint16_t>(sign | 0x7C00u | payload);
  }
  // 65520 = halfway between the largest half (65504) and 2^16: from there on it rounds up
  // to infinity (65504's mantissa is odd, so the tie goes up too).
  if (ax >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);
  if (ax < 0x38800000u) {  // below 2^-14, the smallest normal half: a subnormal (or 0)
    // |f| * 2^24 is exact; nearbyint rounds half to even (the default rounding mode).
    // 1024 (= 2^-14) lands exactly on the smallest normal's encoding.
    const float scaled = std::ldexp(std::bit_cast<float>(ax), 24);
    return static_cast<uint16_t>(sign | static_cast<uint16_t>(std::nearbyint(scaled)));
  }
  const uint32_t exponent = (ax >> 23) - 127 + 15;  // 1 .. 30
  const uint32_t mantissa = ax & 0x7FFFFFu;
  uint32_t h = exponent << 10 | mantissa >> 13;
  const uint32_t rest = mantissa & 0x1FFFu;  // the 13 bits dropped
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;  // a carry into the exponent is right
  return static_cast<uint16_t>(sign | h);
}

}  // namespace mg::audio
