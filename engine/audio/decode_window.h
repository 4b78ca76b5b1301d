// One pass over an open source: decode, resample, and keep the output samples that fall in a
// window of the output timeline. Samples before the window are skipped as decoded frames
// (never resampled), and decoding stops once the window is full.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/audio/audio_source.h"
#include "engine/audio/resampler.h"

namespace mg::audio {

struct OutputWindow {
  int64_t begin = 0;    // first output sample kept (at the resampler's rate, from the track start)
  int64_t length = -1;  // samples kept; -1 = up to the end of the stream
};

enum class Position {
  Counted,   // the source is at the start of the stream: positions are counted from sample 0
  Timestamp  // the source was seeked: the first frame with a timestamp says where it is
};

struct WindowResult {
  bool reached_end = false;    // the stream ended (rather than the window filling)
  bool placed = true;          // false: the decode began after the window start (a seek overshot)
  int64_t input_samples = 0;   // with Position::Counted: source samples decoded from the start
  int source_rate = 0;         // the rate of the first decoded frame (0 if none)
};

// Appends the window's samples to `out`. With `count_to_end`, decoding goes on to the end
// of the stream once the window is full (frames only counted, not resampled), so that
// input_samples is the whole track's length.
WindowResult decode_window(AudioSource& src, Resampler& rs, OutputWindow window, Position position,
                           bool count_to_end, std::vector<float>& out);

}  // namespace mg::audio
