#include "engine/audio/vorbis_trim.h"

#include <algorithm>
#include <fstream>
#include <memory>
#include <numeric>
#include <stdexcept>

#include "engine/audio/ogg_pages.h"

extern "C" {
#include <libavcodec/vorbis_parser.h>
}

namespace mg::audio {
namespace {

// Headers and comments come first; a Vorbis comment header with cover art can fill many
// pages, but no real file takes this many before its first audio page.
constexpr int kMaxLeadingPages = 4096;

// libsndfile's frame count: the last granule minus the start it computes from the first page,
// in unsigned arithmetic as it stores granules; nullopt where that count is not a length.
std::optional<int64_t> libsndfile_frames(int64_t first_granule, int64_t page_samples, int64_t last_granule) {
  const auto g = static_cast<uint64_t>(first_granule), d = static_cast<uint64_t>(page_samples);
  const uint64_t start = g < d ? 0 : g - d;
  const auto frames = static_cast<int64_t>(static_cast<uint64_t>(last_granule) - start);
  if (frames < 0) return std::nullopt;
  return frames;
}

std::optional<int64_t> last_granule(const std::string& path, uint32_t serial) {
  const OggTail tail = read_ogg_tail(path);
  for (auto it = tail.pages.rbegin(); it != tail.pages.rend(); ++it)
    if (it->serial == serial && it->granule != -1) return it->granule;
  return std::nullopt;
}

struct ParserFree {
  void operator()(AVVorbisParseContext* p) const { av_vorbis_parse_free(&p); }
};

}  // namespace

VorbisTrim::VorbisTrim(int64_t first_granule, const std::vector<int64_t>& durations, bool ends_stream,
                       std::optional<int64_t> last)
    : page_samples_(std::accumulate(durations.begin(), durations.end(), int64_t{0})) {
  const int64_t held = durations.empty() ? 0 : durations.back();  // L: what libvorbis holds at the granule
  const int64_t surplus = page_samples_ - first_granule;           // S
  if (ends_stream) {
    keep_end_ = page_samples_ - std::clamp<int64_t>(surplus, 0, held);
  } else {
    erase_from_ = page_samples_ - held;
    erase_count_ = std::clamp<int64_t>(surplus, 0, held);
    if (last) keep_end_ = *last - first_granule + page_samples_;  // past the last granule
  }
  if (!last) return;
  if (const std::optional<int64_t> frames = libsndfile_frames(first_granule, page_samples_, *last))
    keep_end_ = std::min(keep_end_, decoded_from_output(*frames));
}

int64_t VorbisTrim::output_from_decoded(int64_t d) const {
  return d - std::clamp<int64_t>(d - erase_from_, 0, erase_count_);
}

FrameCut VorbisTrim::cut(int64_t decoded_position, int samples) const {
  const int64_t d0 = decoded_position;
  const auto end = static_cast<int>(std::clamp<int64_t>(keep_end_ - d0, 0, samples));
  const auto a = static_cast<int>(std::clamp<int64_t>(erase_from_ - d0, 0, end));
  const auto b = static_cast<int>(std::clamp<int64_t>(erase_from_ + erase_count_ - d0, 0, end));
  FrameCut c;
  c.erase_from = a;
  c.erase_count = b - a;
  c.keep = end - c.erase_count;
  c.output_position = output_from_decoded(a == 0 ? d0 + b : d0);
  return c;
}

std::optional<int64_t> VorbisTrim::length() const {
  if (keep_end_ == std::numeric_limits<int64_t>::max()) return std::nullopt;
  return output_from_decoded(keep_end_);
}

int64_t VorbisTrim::decoded_from_output(int64_t output_position) const {
  return output_position < erase_from_ ? output_position : output_position + erase_count_;
}

VorbisClock::VorbisClock(const uint8_t* extradata, int extradata_size)
    : parser_(av_vorbis_parse_init(extradata, extradata_size)) {
  if (!parser_) throw std::runtime_error("cannot parse the Vorbis headers");
}

VorbisClock::~VorbisClock() { av_vorbis_parse_free(&parser_); }

int64_t VorbisClock::advance(const uint8_t* packet, int size) {
  // An empty or undecodable packet yields no samples, in the decoder as here.
  const int d = size > 0 ? av_vorbis_parse_frame(parser_, packet, size) : -1;
  if (d < 0) return end_;
  if (primed_) end_ += d;
  primed_ = true;
  return end_;
}

std::optional<VorbisTrim> read_vorbis_trim(const std::string& path, int stream, const uint8_t* extradata,
                                           int extradata_size) {
  std::unique_ptr<AVVorbisParseContext, ParserFree> parser(av_vorbis_parse_init(extradata, extradata_size));
  std::ifstream in(path, std::ios::binary);
  if (!parser || !in) return std::nullopt;
  OggPage page;
  std::vector<uint8_t> packet;
  int64_t packets = 0;  // packets completed; the first three are the headers
  std::vector<int64_t> durations;
  int first_pages = 0;  // pages that begin a stream: libavformat numbers its streams in their order
  std::optional<uint32_t> serial;
  for (int n = 0; n < kMaxLeadingPages && read_ogg_page(in, page); ++n) {
    if ((page.flags & 0x02) && first_pages++ == stream) serial = page.serial;
    if (!serial || page.serial != *serial) continue;
    if (!(page.flags & 0x01)) packet.clear();  // a packet cut by a lost page is dropped
    bool audio = false;
    size_t offset = 0;
    for (const uint8_t lace : page.lacing) {
      packet.insert(packet.end(), page.body.begin() + static_cast<std::ptrdiff_t>(offset),
                    page.body.begin() + static_cast<std::ptrdiff_t>(offset + lace));
      offset += lace;
      if (lace == 255) continue;  // the packet goes on
      // Empty packets decode to nothing, in libvorbis as in FFmpeg.
      if (packets++ >= 3 && !packet.empty()) {
        const int d = av_vorbis_parse_frame(parser.get(), packet.data(), static_cast<int>(packet.size()));
        if (d < 0) return std::nullopt;
        if (audio) durations.push_back(d);  // the first audio packet only primes the decoder
        audio = true;
      }
      packet.clear();
    }
    if (!audio) continue;
    if (page.granule == -1) return std::nullopt;
    return VorbisTrim(page.granule, durations, page.ends_stream(), last_granule(path, *serial));
  }
  return std::nullopt;
}

}  // namespace mg::audio
