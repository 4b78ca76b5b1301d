// Ogg pages (RFC 3533) read straight from the file, for what libavformat's Ogg demuxer does
// not tell: the granule positions of a stream's first audio page and of its last page (where
// the reference decoders start and end a Vorbis stream), and whether the file ends with a
// whole page.
#pragma once
#include <cstdint>
#include <istream>
#include <string>
#include <vector>

namespace mg::audio {

struct OggPage {
  uint8_t flags = 0;     // 0x01 continues a packet, 0x02 first page, 0x04 last page (end of stream)
  int64_t granule = -1;  // as stored: signed, -1 = no packet ends on this page
  uint32_t serial = 0;   // which logical stream
  std::vector<uint8_t> lacing;  // segment sizes; a size < 255 ends a packet
  std::vector<uint8_t> body;
  bool ends_stream() const { return (flags & 0x04) != 0; }
};

// CRC-32 of a whole page as Ogg computes it (the checksum field counted as zero).
uint32_t ogg_crc(const uint8_t* page, size_t n);

// Reads the page that starts at the stream's position; false at the end of the file, at bytes
// that are not a page header, at a page the file cuts short, or at a bad checksum.
bool read_ogg_page(std::istream& in, OggPage& page);

// The whole, CRC-valid pages found in the last 128 KiB of the file (at least one maximal
// page), in file order, without their bodies; `bytes_after_last` counts what follows the
// last of them (a page cut by the end of the file).
struct OggTail {
  std::vector<OggPage> pages;
  size_t bytes_after_last = 0;
};
OggTail read_ogg_tail(const std::string& path);

}  // namespace mg::audio
