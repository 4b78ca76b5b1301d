// The parts of decode.h that do not depend on the decoder: built with and without FFmpeg.
#include "engine/audio/decode.h"

namespace mg::audio {

AudioError::AudioError(const std::string& p, const std::string& r)
    : std::runtime_error(p + ": " + r), path(p), reason(r) {}

DecodeRequest decode_request(const AudioConfig& audio) {
  DecodeRequest r;
  r.sample_rate = audio.sample_rate;
  r.excerpt = audio.excerpt;
  r.max_samples = audio.excerpt_samples();
  return r;
}

}  // namespace mg::audio
