// Decoded frames (any rate, layout, sample format) -> mono float32 at one output rate, with
// libswresample: the downmix is the plain mean of the channels (our own matrix, not swr's
// default that lowers a stereo pair by 3 dB), the rate conversion is the soxr engine at very
// high quality (precision 28 bits), or swr's own with a long filter where FFmpeg was built
// without soxr.
//
// Output sample j of a stream that starts at input sample p lies at input time
// p + j * in_rate / out_rate: the resampler adds no delay. Starting at a p that is a multiple
// of alignment() puts every output sample on the grid of a decode from sample 0.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "engine/audio/ffmpeg_util.h"

namespace mg::audio {

enum class ResampleEngine { Soxr, Swr };

// The source rates melgraph decodes: telephone-band audio upwards, DSD's PCM rates included.
// A rate outside is a damaged or hostile header, not audio: a 13 KB WAV that claims 2 Hz would
// otherwise resample to 38 million samples (fuzz_audio_decode found it taking a minute).
constexpr int kMinSourceRate = 1000;
constexpr int kMaxSourceRate = 3000000;

class Resampler {
 public:
  explicit Resampler(int out_rate, ResampleEngine engine = ResampleEngine::Soxr);

  // Converts frame samples [first, nb_samples); the result is valid until the next call.
  // A frame whose rate, layout or format differs from the previous one flushes the old
  // conversion first (its tail is part of the result). Throws std::runtime_error on an
  // FFmpeg failure (out of memory, an unsupported format).
  std::span<const float> push(const AVFrame& frame, int first = 0);
  // The samples still held back by the filter; call once at the end of the stream.
  std::span<const float> flush();

  // The input step (in samples at `in_rate`) that maps onto a whole number of output samples.
  int64_t alignment(int in_rate) const;
  int out_rate() const { return out_rate_; }
  // The engine in use: Swr when soxr was asked for but is not in this FFmpeg build.
  ResampleEngine engine() const { return engine_; }

 private:
  void configure(const AVFrame& frame);
  void convert(const uint8_t* const* in, int count);

  int out_rate_;
  ResampleEngine engine_;
  SwrPtr swr_;
  int in_rate_ = 0, in_channels_ = 0, in_format_ = -1;
  std::vector<float> out_;
};

}  // namespace mg::audio
