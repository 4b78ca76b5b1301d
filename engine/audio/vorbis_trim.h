// Where the reference Vorbis decoders start and end an Ogg Vorbis stream, so that melgraph's
// decode (FFmpeg's decoder, which keeps every decoded sample of the first page) gives the
// same samples as libvorbis under libvorbisfile and libsndfile (python-soundfile).
//
// Decoded position d counts the samples the decoder produces from the stream's first audio
// packet (FFmpeg and libvorbis produce the same ones, packet for packet). The first audio page
// ends at granule G after D decoded samples. When D > G the stream starts S = D - G samples
// later than its first page decodes (a file cut from a longer one without re-encoding, or an
// encoder's delay). libvorbis applies that when it meets the page's granule, to the samples it
// holds at that moment, the last packet's L: it drops min(S, L) samples at decoded position
// D - L, and keeps the rest of the surplus (libvorbisfile and libsndfile alike). libsndfile then
// reads no more than its frame count, the last granule minus the start it computes (G - D,
// with granules read as unsigned; 0 when G < D), which drops that kept surplus's length from
// the end. A stream whose only audio page also ends it is trimmed at the end instead (the
// spec: a short single page starts at 0). Measured on the realset excerpts, which ffmpeg's
// stream copy cut this way: S up to 43125, L 1024 or 128.
//
// Positions are counted, never taken from FFmpeg's timestamps: its Ogg demuxer dates a page's
// first packet by a duration that ignores the previous page's block size, which puts it up to
// (long - short block) / 4 samples off (measured: 448) wherever a page starts with a block
// size change. VorbisClock counts packets' decoded lengths from their block sizes instead.
#pragma once
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

struct AVVorbisParseContext;

namespace mg::audio {

// What of a decoded frame the reference keeps: its samples [erase_from, erase_from +
// erase_count) go, and of the rest only the first `keep` remain.
struct FrameCut {
  int erase_from = 0, erase_count = 0;
  int keep = 0;
  int64_t output_position = 0;  // where the first kept sample lies in the output
};

class VorbisTrim {
 public:
  // first_granule: G of the first audio page; durations: the decoded length of each of its
  // packets but the first (which yields none), in order; ends_stream: that page is also the
  // last; last_granule: the granule of the stream's last page, when the tail could be read.
  VorbisTrim(int64_t first_granule, const std::vector<int64_t>& durations, bool ends_stream,
             std::optional<int64_t> last_granule);

  FrameCut cut(int64_t decoded_position, int samples) const;
  // Output samples of the whole stream; nullopt when the end is not known.
  std::optional<int64_t> length() const;
  int64_t decoded_from_output(int64_t output_position) const;

 private:
  int64_t output_from_decoded(int64_t d) const;

  int64_t page_samples_ = 0;  // D
  int64_t erase_from_ = 0;    // D - L
  int64_t erase_count_ = 0;   // min(S, L), or 0
  int64_t keep_end_ = std::numeric_limits<int64_t>::max();  // decoded positions from here are dropped
};

// The decoded position where each packet's output ends, from the packets alone (their block
// sizes), for packets demuxed in order from the stream's first audio packet: a packet decodes
// to (previous block + its block) / 4 samples, the first to none.
class VorbisClock {
 public:
  // `extradata`: the three Vorbis headers as libavformat gives them; throws std::runtime_error
  // if they cannot be parsed.
  VorbisClock(const uint8_t* extradata, int extradata_size);
  ~VorbisClock();
  VorbisClock(const VorbisClock&) = delete;
  VorbisClock& operator=(const VorbisClock&) = delete;
  int64_t advance(const uint8_t* packet, int size);  // returns where this packet's output ends

 private:
  AVVorbisParseContext* parser_;
  bool primed_ = false;
  int64_t end_ = 0;
};

// Reads the first audio page of the Ogg file's stream `stream` (libavformat's AVStream::id for
// Ogg: the streams numbered in the order their first pages come) and its last page;
// `extradata` is the stream's three Vorbis headers as libavformat gives them. nullopt when the
// pages cannot be read (the decode then keeps FFmpeg's own trimming).
std::optional<VorbisTrim> read_vorbis_trim(const std::string& path, int stream, const uint8_t* extradata,
                                           int extradata_size);

}  // namespace mg::audio
