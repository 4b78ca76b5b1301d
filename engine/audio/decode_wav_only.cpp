// decode_audio in a build without FFmpeg (MELGRAPH_FFMPEG=OFF, see engine/audio/CMakeLists.txt):
// reads WAV files (16-bit PCM or 32-bit float, any channel count) whose sample rate is already
// the model's, which is what the demo's generator writes; anything else fails with the reason,
// so `prepare` records it and moves on. Everything that reads an already prepared cache works
// as in the full build.
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "engine/audio/decode.h"

namespace mg::audio {

namespace {

constexpr const char* kNoDecoder =
    "this melgraph was built without FFmpeg (MELGRAPH_FFMPEG=OFF) and reads only 16-bit or float WAV at the "
    "model's sample rate";

uint32_t le32(const unsigned char* p) {
  return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 | static_cast<uint32_t>(p[2]) << 16 |
         static_cast<uint32_t>(p[3]) << 24;
}
uint16_t le16(const unsigned char* p) { return static_cast<uint16_t>(p[0] | p[1] << 8); }

}  // namespace

DecodedAudio decode_audio(const std::string& path, const DecodeRequest& request) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw AudioError(path, "cannot open: " + std::string(std::strerror(errno)));
  const std::vector<unsigned char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (bytes.empty()) throw AudioError(path, "zero-length file (0 bytes)");
  if (bytes.size() < 12 || std::memcmp(bytes.data(), "RIFF", 4) != 0 || std::memcmp(bytes.data() + 8, "WAVE", 4) != 0)
    throw AudioError(path, std::string("not a WAV file: ") + kNoDecoder);

  int format = 0, channels = 0, rate = 0, bits = 0;
  size_t data = 0, data_bytes = 0;
  bool truncated = false;
  for (size_t pos = 12; pos + 8 <= bytes.size();) {
    const unsigned char* c = bytes.data() + pos;
    const size_t size = le32(c + 4);
    if (std::memcmp(c, "fmt ", 4) == 0 && size >= 16 && pos + 8 + 16 <= bytes.size()) {
      format = le16(c + 8);
      channels = le16(c + 10);
      rate = static_cast<int>(le32(c + 12));
      bits = le16(c + 22);
      if (format == 0xFFFE && size >= 40 && pos + 8 + 26 <= bytes.size()) format = le16(c + 32);  // extensible
    } else if (std::memcmp(c, "data", 4) == 0) {
      data = pos + 8;
      data_bytes = size;
      if (data + data_bytes > bytes.size()) {
        data_bytes = bytes.size() - data;
        truncated = true;
      }
      break;
    }
    pos += 8 + size + (size & 1);
  }
  const bool pcm16 = format == 1 && bits == 16, f32 = format == 3 && bits == 32;
  if (!pcm16 && !f32)
    throw AudioError(path, "WAV format " + std::to_string(format) + " with " + std::to_string(bits) +
                               "-bit samples: " + kNoDecoder);
  if (channels < 1) throw AudioError(path, "WAV header gives no channels");
  if (rate != request.sample_rate)
    throw AudioError(path, "sample rate " + std::to_string(rate) + " Hz, the model's is " +
                               std::to_string(request.sample_rate) + " Hz: " + kNoDecoder);
  const size_t frame_bytes = static_cast<size_t>(channels) * (pcm16 ? 2 : 4);
  const auto frames = static_cast<int64_t>(data == 0 ? 0 : data_bytes / frame_bytes);
  if (frames == 0) throw AudioError(path, "no audio samples (the file holds only a header)");

  DecodedAudio out;
  out.container = "wav";
  out.codec = pcm16 ? "pcm_s16le" : "pcm_f32le";
  out.source_rate = rate;
  out.source_channels = channels;
  out.source_seconds = static_cast<double>(frames) / rate;
  int64_t first = 0, count = frames;
  if (request.max_samples > 0 && frames > request.max_samples) {
    count = request.max_samples;
    if (request.excerpt == Excerpt::Middle) first = (frames - count) / 2;
  }
  out.offset_seconds = static_cast<double>(first) / rate;
  out.samples.resize(static_cast<size_t>(count));
  for (int64_t f = 0; f < count; ++f) {
    const unsigned char* p = bytes.data() + data + static_cast<size_t>(first + f) * frame_bytes;
    double sum = 0;
    for (int ch = 0; ch < channels; ++ch) {
      if (pcm16) {
        sum += static_cast<int16_t>(le16(p + 2 * ch)) / 32768.0;
      } else {
        float v;
        std::memcpy(&v, p + 4 * ch, 4);
        sum += v;
      }
    }
    const auto v = static_cast<float>(sum / channels);
    if (!std::isfinite(v))
      throw AudioError(path, "non-finite sample (NaN or infinity) in the audio; the file is corrupt");
    out.samples[static_cast<size_t>(f)] = v;
  }
  if (truncated) {
    out.truncated = true;
    out.warning = "truncated: the data chunk is longer than the file";
  }
  return out;
}

}  // namespace mg::audio
