#include "engine/audio/resampler.h"

#include <algorithm>
#include <numeric>
#include <stdexcept>
#include <string>

extern "C" {
#include <libavutil/opt.h>
}

namespace mg::audio {
namespace {

void check(int code, const char* what) {
  if (code < 0) throw std::runtime_error(std::string("libswresample: ") + what + ": " + av_error_text(code));
}

}  // namespace

Resampler::Resampler(int out_rate, ResampleEngine engine) : out_rate_(out_rate), engine_(engine) {
  if (out_rate <= 0) throw std::invalid_argument("Resampler: output rate must be > 0, got " + std::to_string(out_rate));
  install_quiet_ffmpeg_log();
}

int64_t Resampler::alignment(int in_rate) const { return in_rate / std::gcd(in_rate, out_rate_); }

void Resampler::configure(const AVFrame& frame) {
  const int channels = frame.ch_layout.nb_channels;
  if (channels <= 0 || frame.sample_rate <= 0)
    throw std::runtime_error("libswresample: a decoded frame has " + std::to_string(channels) +
                             " channels at " + std::to_string(frame.sample_rate) + " Hz");
  if (frame.sample_rate < kMinSourceRate || frame.sample_rate > kMaxSourceRate)  // a stream that changed its rate
    throw std::runtime_error("a decoded frame at " + std::to_string(frame.sample_rate) + " Hz, outside the " +
                             std::to_string(kMinSourceRate) + " to " + std::to_string(kMaxSourceRate) +
                             " Hz of audio: a damaged stream");
  // Our matrix does the downmix, so the layout only has to be valid: a file that does not name
  // its channels (e.g. a WAV without a channel mask) gets the default layout for the count.
  struct Layout {
    AVChannelLayout l{};
    ~Layout() { av_channel_layout_uninit(&l); }
  } in;
  if (frame.ch_layout.order == AV_CHANNEL_ORDER_UNSPEC) av_channel_layout_default(&in.l, channels);
  else check(av_channel_layout_copy(&in.l, &frame.ch_layout), "copy the channel layout");
  AVChannelLayout mono = AV_CHANNEL_LAYOUT_MONO;
  const std::vector<double> mean(static_cast<size_t>(channels), 1.0 / channels);  // [1 out, channels in]

  for (;;) {
    SwrContext* s = nullptr;
    check(swr_alloc_set_opts2(&s, &mono, AV_SAMPLE_FMT_FLT, out_rate_, &in.l,
                              static_cast<AVSampleFormat>(frame.format), frame.sample_rate, 0, nullptr),
          "allocate a context");
    SwrPtr swr(s);
    check(av_opt_set_sample_fmt(s, "internal_sample_fmt", AV_SAMPLE_FMT_FLTP, 0), "set float processing");
    if (engine_ == ResampleEngine::Soxr) {
      check(av_opt_set_int(s, "resampler", SWR_ENGINE_SOXR, 0), "choose soxr");
      check(av_opt_set_double(s, "precision", 28, 0), "set soxr precision");  // 28 bits: soxr "very high"
    } else {
      // swr's default filter (32 taps) leaves aliasing near -60 dB; 128 taps with its Kaiser
      // window (beta 9) keep it far lower.
      check(av_opt_set_int(s, "filter_size", 128, 0), "set the filter size");
      check(av_opt_set_int(s, "exact_rational", 1, 0), "set exact rational");
    }
    check(swr_set_matrix(s, mean.data(), channels), "set the downmix matrix");
    const int init = swr_init(s);
    if (init < 0 && engine_ == ResampleEngine::Soxr) {
      engine_ = ResampleEngine::Swr;  // this FFmpeg has no soxr: use swr's own resampler
      continue;
    }
    check(init, "initialise");
    swr_ = std::move(swr);
    break;
  }
  in_rate_ = frame.sample_rate;
  in_channels_ = channels;
  in_format_ = frame.format;
}

void Resampler::convert(const uint8_t* const* in, int count) {
  for (;;) {
    const int cap = std::max(swr_get_out_samples(swr_.get(), count), 256);
    const size_t old = out_.size();
    out_.resize(old + static_cast<size_t>(cap));
    uint8_t* out = reinterpret_cast<uint8_t*>(out_.data() + old);
    const int n = swr_convert(swr_.get(), &out, cap, const_cast<const uint8_t**>(in), count);
    if (n < 0) out_.resize(old);
    check(n, "convert");
    out_.resize(old + static_cast<size_t>(n));
    // Input is taken whole in one call; a flush (in == nullptr) repeats until nothing is left.
    if (in != nullptr || n == 0) return;
  }
}

std::span<const float> Resampler::push(const AVFrame& frame, int first) {
  out_.clear();
  if (swr_ && (frame.sample_rate != in_rate_ || frame.format != in_format_ ||
               frame.ch_layout.nb_channels != in_channels_)) {
    convert(nullptr, 0);  // the old stream's tail comes first
    swr_.reset();
  }
  if (!swr_) configure(frame);
  const int count = frame.nb_samples - first;
  if (count <= 0) return out_;
  const auto fmt = static_cast<AVSampleFormat>(frame.format);
  const int bytes = av_get_bytes_per_sample(fmt);
  const bool planar = av_sample_fmt_is_planar(fmt) != 0;
  const int planes = planar ? in_channels_ : 1;
  const size_t skip = static_cast<size_t>(first) * static_cast<size_t>(bytes * (planar ? 1 : in_channels_));
  std::vector<const uint8_t*> in(static_cast<size_t>(planes));  // one pointer per plane
  for (int p = 0; p < planes; ++p) in[static_cast<size_t>(p)] = frame.extended_data[p] + skip;
  convert(in.data(), count);
  return out_;
}

std::span<const float> Resampler::flush() {
  out_.clear();
  if (swr_) convert(nullptr, 0);
  return out_;
}

}  // namespace mg::audio
