#include "engine/audio/decode_window.h"

#include <algorithm>
#include <limits>
#include <optional>
#include <span>

namespace mg::audio {
namespace {

// Input fed to the resampler ahead of a window that starts inside the track, so that the
// window's first samples see the signal before them and not the filter's start-up. soxr's
// very-high-quality filters reach a few ms; 100 ms leaves a wide margin.
constexpr int64_t kLeadDivisor = 10;  // lead = rate / 10 samples

int64_t floor_to(int64_t x, int64_t step) { return x / step * step; }
int64_t ceil_to(int64_t x, int64_t step) { return (x + step - 1) / step * step; }

}  // namespace

WindowResult decode_window(AudioSource& src, Resampler& rs, OutputWindow window, Position position,
                           bool count_to_end, std::vector<float>& out) {
  WindowResult result;
  const size_t start_size = out.size();
  const int64_t end = window.length < 0 ? std::numeric_limits<int64_t>::max() : window.begin + window.length;
  auto kept = [&] { return static_cast<int64_t>(out.size() - start_size); };
  auto full = [&] { return window.length >= 0 && kept() >= window.length; };

  bool located = position == Position::Counted;  // in_pos is known
  int64_t in_pos = 0;      // source sample where the frame starts
  int64_t feed_from = -1;  // first source sample resampled: on the output grid (see Resampler)
  int64_t out_pos = 0;     // output position of the next resampled sample
  auto keep = [&](std::span<const float> chunk) {
    const int64_t n = static_cast<int64_t>(chunk.size());
    const int64_t lo = std::max(window.begin, out_pos), hi = std::min(end, out_pos + n);
    if (hi > lo) out.insert(out.end(), chunk.begin() + (lo - out_pos), chunk.begin() + (hi - out_pos));
    out_pos += n;
  };

  while (const AVFrame* f = src.next_frame()) {
    const int n = f->nb_samples;
    if (!located) {
      const std::optional<int64_t> p = src.frame_position();
      if (!p) continue;  // no timestamp yet: still in the pre-roll after the seek
      in_pos = *p;
      located = true;
    }
    if (full()) {
      if (!count_to_end) return result;
      in_pos += n;
      continue;
    }
    if (feed_from < 0) {
      const int rate = f->sample_rate;
      result.source_rate = rate;
      const int64_t step = rs.alignment(rate);
      const int64_t window_in = window.begin * rate / rs.out_rate();  // window start in source samples
      const int64_t wanted = window.begin > 0 ? floor_to(std::max<int64_t>(0, window_in - rate / kLeadDivisor), step) : 0;
      feed_from = std::max(wanted, ceil_to(std::max<int64_t>(0, in_pos), step));
      out_pos = feed_from / step * (rs.out_rate() / (rate / step));
      if (out_pos > window.begin) {
        result.placed = false;
        return result;
      }
    }
    if (in_pos + n > feed_from) keep(rs.push(*f, static_cast<int>(std::max<int64_t>(0, feed_from - in_pos))));
    in_pos += n;
    if (full() && !count_to_end) return result;
  }
  result.reached_end = true;
  result.input_samples = std::max<int64_t>(0, in_pos);
  if (feed_from >= 0 && !full()) keep(rs.flush());
  return result;
}

}  // namespace mg::audio
