#include "engine/audio/ogg_tail.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <fstream>
#include <vector>

namespace mg::audio {
namespace {

// Ogg's page checksum (RFC 3533): CRC-32, polynomial 0x04c11db7, MSB first, initial value 0,
// no final xor, computed with the checksum field zeroed.
uint32_t ogg_crc(const uint8_t* p, size_t n) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t r = i << 24;
      for (int k = 0; k < 8; ++k) r = (r & 0x80000000u) ? (r << 1) ^ 0x04c11db7u : r << 1;
      t[i] = r;
    }
    return t;
  }();
  uint32_t crc = 0;
  for (size_t i = 0; i < n; ++i) {
    const uint8_t byte = (i >= 22 && i < 26) ? 0 : p[i];  // bytes 22..25 hold the checksum
    crc = (crc << 8) ^ table[((crc >> 24) ^ byte) & 0xff];
  }
  return crc;
}

constexpr size_t kHeader = 27;          // fixed part of a page header
constexpr size_t kMaxPage = 27 + 255 + 255 * 255;

}  // namespace

std::string ogg_tail_problem(const std::string& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) return std::string();
  const auto size = static_cast<size_t>(std::max<std::streamoff>(0, f.tellg()));
  const size_t n = std::min(size, 2 * kMaxPage);  // the tail holds at least one whole page
  std::vector<uint8_t> buf(n);
  f.seekg(static_cast<std::streamoff>(size - n));
  if (!f.read(reinterpret_cast<char*>(buf.data()), static_cast<std::streamsize>(n))) return std::string();

  size_t last_end = 0;
  uint8_t last_flags = 0;
  bool found = false;
  for (size_t i = 0; i + kHeader <= n;) {
    const uint8_t* p = buf.data() + i;
    if (!(p[0] == 'O' && p[1] == 'g' && p[2] == 'g' && p[3] == 'S' && p[4] == 0)) {
      ++i;
      continue;
    }
    const size_t segments = p[26];
    size_t end = i + kHeader + segments;
    if (end <= n)
      for (size_t s = 0; s < segments; ++s) end += p[kHeader + s];
    const uint32_t stored = uint32_t(p[22]) | uint32_t(p[23]) << 8 | uint32_t(p[24]) << 16 | uint32_t(p[25]) << 24;
    if (end <= n && ogg_crc(p, end - i) == stored) {
      found = true;
      last_end = end;
      last_flags = p[5];
      i = end;
    } else {
      ++i;  // a cut page, or "OggS" inside packet data
    }
  }
  if (!found) return std::string();
  if (last_end < n)
    return "truncated: the file ends inside an Ogg page (" + std::to_string(n - last_end) +
           " bytes after the last whole page)";
  if (!(last_flags & 0x04)) return "truncated: the last Ogg page has no end-of-stream mark";
  return std::string();
}

}  // namespace mg::audio
