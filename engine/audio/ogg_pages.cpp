#include "engine/audio/ogg_pages.h"

#include <algorithm>
#include <array>
#include <fstream>

namespace mg::audio {
namespace {

constexpr size_t kHeader = 27;  // fixed part of a page header
constexpr size_t kMaxPage = kHeader + 255 + 255 * 255;

int64_t le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = v << 8 | p[i];
  return static_cast<int64_t>(v);
}
uint32_t le32(const uint8_t* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}

bool is_capture(const uint8_t* p) { return p[0] == 'O' && p[1] == 'g' && p[2] == 'g' && p[3] == 'S' && p[4] == 0; }

void fill_header(const uint8_t* p, OggPage& page) {
  page.flags = p[5];
  page.granule = le64(p + 6);
  page.serial = le32(p + 14);
}

}  // namespace

// RFC 3533: polynomial 0x04c11db7, MSB first, initial value 0, no final xor.
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

bool read_ogg_page(std::istream& in, OggPage& page) {
  std::vector<uint8_t> raw(kHeader);
  if (!in.read(reinterpret_cast<char*>(raw.data()), kHeader) || !is_capture(raw.data())) return false;
  const size_t segments = raw[26];
  raw.resize(kHeader + segments);
  if (!in.read(reinterpret_cast<char*>(raw.data() + kHeader), static_cast<std::streamsize>(segments))) return false;
  size_t body = 0;
  for (size_t s = 0; s < segments; ++s) body += raw[kHeader + s];
  raw.resize(kHeader + segments + body);
  if (!in.read(reinterpret_cast<char*>(raw.data() + kHeader + segments), static_cast<std::streamsize>(body)))
    return false;
  if (ogg_crc(raw.data(), raw.size()) != le32(raw.data() + 22)) return false;
  fill_header(raw.data(), page);
  page.lacing.assign(raw.begin() + kHeader, raw.begin() + static_cast<std::ptrdiff_t>(kHeader + segments));
  page.body.assign(raw.begin() + static_cast<std::ptrdiff_t>(kHeader + segments), raw.end());
  return true;
}

OggTail read_ogg_tail(const std::string& path) {
  OggTail tail;
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) return tail;
  const auto size = static_cast<size_t>(std::max<std::streamoff>(0, f.tellg()));
  const size_t n = std::min(size, 2 * kMaxPage);  // the tail holds at least one whole page
  std::vector<uint8_t> buf(n);
  f.seekg(static_cast<std::streamoff>(size - n));
  if (!f.read(reinterpret_cast<char*>(buf.data()), static_cast<std::streamsize>(n))) return tail;

  size_t last_end = 0;
  for (size_t i = 0; i + kHeader <= n;) {
    const uint8_t* p = buf.data() + i;
    if (!is_capture(p)) {
      ++i;
      continue;
    }
    const size_t segments = p[26];
    size_t end = i + kHeader + segments;
    if (end <= n)
      for (size_t s = 0; s < segments; ++s) end += p[kHeader + s];
    if (end <= n && ogg_crc(p, end - i) == le32(p + 22)) {
      OggPage page;
      fill_header(p, page);
      tail.pages.push_back(std::move(page));
      last_end = end;
      i = end;
    } else {
      ++i;  // a cut page, or "OggS" inside packet data
    }
  }
  if (!tail.pages.empty()) tail.bytes_after_last = n - last_end;
  return tail;
}

}  // namespace mg::audio
