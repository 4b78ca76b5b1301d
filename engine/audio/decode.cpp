// decode_audio: which part of the track to decode (Start / Middle / whole), how to get there
// (a seek when the container declares a duration, else counting passes), and what to report.
#include "engine/audio/decode.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "engine/audio/audio_source.h"
#include "engine/audio/decode_window.h"
#include "engine/audio/ogg_tail.h"
#include "engine/audio/resampler.h"

namespace mg::audio {

namespace {

// After a seek, decoding starts this long before the window: decoders need a run-in (MP3's
// bit reservoir, the Vorbis and Opus overlap) and seek points are sparse in some containers.
constexpr double kSeekPrerollSeconds = 1.0;

std::string seconds_text(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f s", s);
  return buf;
}

// Reports what the decode met: damage the source saw, and a stream that ended well before
// the length its container declares (a declared length that is only a bitrate estimate does
// not count).
class Report {
 public:
  void add_source(const AudioSource& src) {
    packets_ += src.packets_read();
    add(src.problems());
  }
  void check_length(const AudioSource& src, double decoded_seconds) {
    bool estimated = false;
    const double declared = src.declared_seconds(&estimated);
    if (declared > 0 && !estimated && decoded_seconds < declared - (0.5 + 0.01 * declared))
      add("truncated: decoded " + seconds_text(decoded_seconds) + " of " + seconds_text(declared) + " declared");
  }
  void add(const std::string& s) {
    if (!s.empty()) text_ += (text_.empty() ? "" : "; ") + s;
  }
  void finish(DecodedAudio& out, const std::string& path) const {
    if (out.samples.empty()) {
      const ThreadLog& log = thread_log();
      const std::string logged = log.last_error.empty() ? "" : " (" + log.last_error + ")";
      if (log.mentions_drm) throw AudioError(path, "encrypted (DRM) audio: it cannot be decoded" + logged);
      if (packets_ == 0 && text_.empty()) throw AudioError(path, "no audio samples (the file holds only a header)");
      if (!text_.empty()) throw AudioError(path, "no audio could be decoded: " + text_);
      throw AudioError(path, "no audio could be decoded: " + std::to_string(packets_) + " packets gave no samples" + logged);
    }
    out.truncated = !text_.empty();
    out.warning = text_;
  }

 private:
  int64_t packets_ = 0;
  std::string text_;
};

DecodedAudio describe(const AudioSource& src) {
  DecodedAudio d;
  d.container = src.container();
  d.codec = src.codec();
  d.source_rate = src.sample_rate();
  d.source_channels = src.channels();
  d.source_seconds = src.declared_seconds();
  return d;
}

void note_rate(DecodedAudio& out, const WindowResult& r) {
  if (r.source_rate > 0) out.source_rate = r.source_rate;
}

// From the start of the stream: the first max_samples (or everything).
void decode_start(AudioSource& src, const DecodeRequest& req, DecodedAudio& out, Report& report) {
  Resampler rs(req.sample_rate);
  const WindowResult r = decode_window(src, rs, {0, req.max_samples}, Position::Counted, false, out.samples);
  note_rate(out, r);
  if (r.reached_end && r.source_rate > 0) {
    out.source_seconds = static_cast<double>(r.input_samples) / r.source_rate;
    report.check_length(src, out.source_seconds);
  }
  report.add_source(src);
}

// Middle without a usable seek: one pass finds the length (keeping the first window, which
// is the answer when the whole track fits), a second decodes the centred window.
void decode_middle_counting(const std::string& path, const DecodeRequest& req, DecodedAudio& out,
                            Report& report) {
  out.samples.clear();
  AudioSource first(path);
  Resampler rs(req.sample_rate);
  const WindowResult r = decode_window(first, rs, {0, req.max_samples}, Position::Counted, true, out.samples);
  note_rate(out, r);
  report.add_source(first);
  if (r.source_rate <= 0) return;  // nothing decoded: finish() says why
  out.source_seconds = static_cast<double>(r.input_samples) / r.source_rate;
  report.check_length(first, out.source_seconds);
  const int64_t total = (r.input_samples * req.sample_rate + r.source_rate - 1) / r.source_rate;
  if (total <= req.max_samples) return;

  out.samples.clear();
  const int64_t begin = (total - req.max_samples) / 2;
  AudioSource second(path);
  Resampler rs2(req.sample_rate);
  decode_window(second, rs2, {begin, req.max_samples}, Position::Counted, false, out.samples);
  out.offset_seconds = static_cast<double>(begin) / req.sample_rate;
}

// Middle: seek near the centred window and place it by the frames' timestamps; fall back to
// counting when the container gives no duration, cannot seek there, or the stream ends early.
void decode_middle(AudioSource& src, const std::string& path, const DecodeRequest& req, DecodedAudio& out,
                   Report& report) {
  const double declared = src.declared_seconds();
  if (declared <= 0) return decode_middle_counting(path, req, out, report);
  const int64_t total = std::llround(declared * req.sample_rate);
  if (total <= req.max_samples) return decode_start(src, req, out, report);

  const int64_t begin = (total - req.max_samples) / 2;
  const double begin_seconds = static_cast<double>(begin) / req.sample_rate;
  if (src.seek(std::max(0.0, begin_seconds - kSeekPrerollSeconds))) {
    Resampler rs(req.sample_rate);
    const WindowResult r = decode_window(src, rs, {begin, req.max_samples}, Position::Timestamp, false, out.samples);
    note_rate(out, r);
    if (r.placed && static_cast<int64_t>(out.samples.size()) == req.max_samples) {
      out.offset_seconds = begin_seconds;
      report.add_source(src);
      return;
    }
  }
  decode_middle_counting(path, req, out, report);
}

}  // namespace

DecodedAudio decode_audio(const std::string& path, const DecodeRequest& request) {
  if (request.sample_rate <= 0 || request.max_samples == 0 || request.max_samples < -1)
    throw std::invalid_argument("decode_audio: sample_rate must be > 0 and max_samples > 0 or -1 (got " +
                                std::to_string(request.sample_rate) + ", " + std::to_string(request.max_samples) + ")");
  install_quiet_ffmpeg_log();
  reset_thread_log();
  try {
    AudioSource src(path);
    DecodedAudio out = describe(src);
    Report report;
    if (request.excerpt == Excerpt::Middle && request.max_samples > 0) decode_middle(src, path, request, out, report);
    else decode_start(src, request, out, report);
    if (out.container == "ogg") report.add(ogg_tail_problem(path));  // whatever part was decoded
    report.finish(out, path);
    // A float source can hold NaN or infinity (a corrupt float WAV): such samples would poison
    // every spectrogram and gradient they touch, so the file is refused, not cached.
    for (size_t i = 0; i < out.samples.size(); ++i) {
      if (!std::isfinite(out.samples[i]))
        throw AudioError(path, "non-finite sample (NaN or infinity) at " +
                                   seconds_text(out.offset_seconds + static_cast<double>(i) / request.sample_rate) +
                                   " of the decoded audio; the file is corrupt");
    }
    return out;
  } catch (const AudioError&) {
    throw;
  } catch (const std::bad_alloc&) {
    throw AudioError(path, "out of memory while decoding");
  } catch (const std::runtime_error& e) {  // the resampler's FFmpeg failures
    throw AudioError(path, e.what());
  }
}

}  // namespace mg::audio
