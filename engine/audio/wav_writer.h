// Writes WAV files (RIFF, little-endian): 16-bit PCM or 32-bit IEEE float, any channel
// count. For tests (signals in every format start as our WAV) and generated demo audio.
#pragma once
#include <span>
#include <stdexcept>
#include <string>

namespace mg::audio {

enum class WavEncoding {
  Pcm16,   // round(x * 32768) clipped to [-32768, 32767]: FFmpeg's convention, which reads v / 32768
  Float32  // exact
};

struct WavError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// interleaved: [frames, channels] row-major (frame f, channel c at f * channels + c).
// Written to a temporary name beside `path` and renamed, so `path` is never half-written.
void write_wav(const std::string& path, std::span<const float> interleaved, int channels, int sample_rate,
               WavEncoding encoding);

}  // namespace mg::audio
