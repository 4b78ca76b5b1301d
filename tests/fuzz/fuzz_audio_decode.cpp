// The audio decode entry (engine/audio/decode.h) on arbitrary bytes: FFmpeg's probing and
// decoders (not instrumented: system libraries) behind melgraph's own container handling,
// MP3 path (libmpg123), Ogg page and Vorbis trimming, resampling and excerpt windows. The
// header promises that a file that cannot give audio throws AudioError and that decoding never
// aborts; anything else is a finding. Seeds are real files cut short (scripts/fuzz).
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "engine/audio/decode.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = mg::fuzz::input_file(data, size, "track.audio");
  // The cache's requests (start or middle excerpt) at the default rate and at 8 kHz, the whole
  // track or a 2 s window; chosen by the length so that a seed file is decoded as it is.
  mg::audio::DecodeRequest request;
  request.excerpt = size % 2 == 0 ? mg::Excerpt::Start : mg::Excerpt::Middle;
  request.sample_rate = (size / 2) % 2 == 0 ? 22050 : 8000;
  request.max_samples = (size / 4) % 2 == 0 ? -1 : 2 * int64_t{request.sample_rate};
  try {
    const mg::audio::DecodedAudio audio = mg::audio::decode_audio(path, request);
    // What the cache writer relies on: a bounded excerpt, finite samples.
    if (request.max_samples > 0 && static_cast<int64_t>(audio.samples.size()) > request.max_samples) __builtin_trap();
    for (float s : audio.samples)
      if (!std::isfinite(s)) __builtin_trap();
  } catch (const mg::audio::AudioError&) {
  }
  return 0;
}
