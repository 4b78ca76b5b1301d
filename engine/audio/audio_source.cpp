#include "engine/audio/audio_source.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "engine/audio/decode.h"
#include "engine/audio/mp3_source.h"
#include "engine/audio/resampler.h"

extern "C" {
#include <libavutil/encryption_info.h>
}

namespace mg::audio {
namespace {

// The FFmpeg error text, plus the last error FFmpeg logged on this thread when there is one
// (it usually says more: "moov atom not found" behind "Invalid data found").
std::string reason_for(int code) {
  std::string r = av_error_text(code);
  const std::string& logged = thread_log().last_error;
  if (!logged.empty()) r += " (" + logged + ")";
  return r;
}

std::string streams_summary(const AVFormatContext& f) {
  int video = 0, subtitle = 0, other = 0;
  for (unsigned i = 0; i < f.nb_streams; ++i) {
    switch (f.streams[i]->codecpar->codec_type) {
      case AVMEDIA_TYPE_VIDEO: ++video; break;
      case AVMEDIA_TYPE_SUBTITLE: ++subtitle; break;
      default: ++other; break;
    }
  }
  std::string s = "the " + std::string(f.iformat->name) + " container holds";
  if (f.nb_streams == 0) return s + " no streams";
  const char* sep = " ";
  auto add = [&](int n, const char* what) {
    if (n == 0) return;
    s += sep + std::to_string(n) + " " + what + (n == 1 ? " stream" : " streams");
    sep = ", ";
  };
  add(video, "video");
  add(subtitle, "subtitle");
  add(other, "other");
  return s;
}

// A codec tag as the container spells it: a fourcc ('mp4a') or a number (WAV's 0x0001).
std::string tag_text(uint32_t tag) {
  char buf[16];
  const bool fourcc = tag > 0xffff;
  for (int i = 0; fourcc && i < 4; ++i) {
    const unsigned c = (tag >> (8 * i)) & 0xff;
    buf[i] = (c >= 32 && c < 127) ? static_cast<char>(c) : '?';
  }
  if (fourcc) return "'" + std::string(buf, 4) + "'";
  std::snprintf(buf, sizeof buf, "0x%04x", tag);
  return buf;
}

// FairPlay ('drms', 'drmi') and Common Encryption ('enca' without a known original format)
// sample entries, or CENC key information on the stream.
bool stream_is_encrypted(const AVStream& st) {
  const uint32_t tag = st.codecpar->codec_tag;
  if (tag == MKTAG('d', 'r', 'm', 's') || tag == MKTAG('d', 'r', 'm', 'i') ||
      tag == MKTAG('e', 'n', 'c', 'a'))
    return true;
  return av_stream_get_side_data(&st, AV_PKT_DATA_ENCRYPTION_INIT_INFO, nullptr) != nullptr;
}

const char* const kEncrypted = "encrypted (DRM) audio: it cannot be decoded without the key";

int64_t frame_timestamp(const AVFrame& frame) {
  return frame.best_effort_timestamp != AV_NOPTS_VALUE ? frame.best_effort_timestamp : frame.pts;
}

// Moves samples [from + count, nb_samples) of a writable frame to `from`.
void erase_samples(AVFrame& f, int from, int count) {
  const auto fmt = static_cast<AVSampleFormat>(f.format);
  const bool planar = av_sample_fmt_is_planar(fmt) != 0;
  const int channels = f.ch_layout.nb_channels;
  const auto unit = static_cast<size_t>(av_get_bytes_per_sample(fmt) * (planar ? 1 : channels));
  const auto tail = static_cast<size_t>(f.nb_samples - from - count) * unit;
  for (int p = 0; p < (planar ? channels : 1); ++p)
    std::memmove(f.extended_data[p] + static_cast<size_t>(from) * unit,
                 f.extended_data[p] + static_cast<size_t>(from + count) * unit, tail);
}

}  // namespace

AudioSource::AudioSource(const std::string& path) : path_(path) {
  install_quiet_ffmpeg_log();
  open_container();
  open_stream();
  frame_.reset(av_frame_alloc());
  packet_.reset(av_packet_alloc());
  if (!frame_ || !packet_) throw AudioError(path_, "out of memory allocating a frame");
}

AudioSource::~AudioSource() = default;

void AudioSource::open_container() {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status st = fs::status(path_, ec);
  if (!fs::exists(st)) {
    if (ec && ec != std::errc::no_such_file_or_directory)
      throw AudioError(path_, "cannot read: " + ec.message());
    throw AudioError(path_, "no such file");
  }
  if (fs::is_directory(st)) throw AudioError(path_, "is a directory, not an audio file");
  if (fs::is_regular_file(st) && fs::file_size(path_, ec) == 0 && !ec)
    throw AudioError(path_, "zero-length file (0 bytes)");

  // "file:" keeps a name like "a:b.mp3" or "concat:..." from being read as a protocol.
  AVIOContext* io = nullptr;
  int r = avio_open(&io, ("file:" + path_).c_str(), AVIO_FLAG_READ);
  if (r < 0) throw AudioError(path_, "cannot open: " + reason_for(r));
  io_.reset(io);

  // An empty name: the format is chosen by the bytes alone, never by the extension.
  const AVInputFormat* ifmt = nullptr;
  r = av_probe_input_buffer2(io, &ifmt, "", nullptr, 0, 0);
  if (r < 0 || !ifmt)
    throw AudioError(path_, "not an audio format FFmpeg recognises: " + reason_for(r));

  AVFormatContext* f = avformat_alloc_context();
  if (!f) throw AudioError(path_, "out of memory allocating a format context");
  f->pb = io;
  f->flags |= AVFMT_FLAG_CUSTOM_IO;
  r = avformat_open_input(&f, path_.c_str(), ifmt, nullptr);  // frees f on failure
  if (r < 0)
    throw AudioError(path_, "cannot read the " + std::string(ifmt->name) + " container: " + reason_for(r));
  fmt_.reset(f);
  r = avformat_find_stream_info(f, nullptr);
  if (r < 0) throw AudioError(path_, "cannot read the stream parameters: " + reason_for(r));
}

void AudioSource::open_stream() {
  AVFormatContext* f = fmt_.get();
  const AVCodec* codec = nullptr;
  const int idx = av_find_best_stream(f, AVMEDIA_TYPE_AUDIO, -1, -1, &codec, 0);
  if (idx == AVERROR_STREAM_NOT_FOUND) throw AudioError(path_, "no audio stream (" + streams_summary(*f) + ")");
  if (idx == AVERROR_DECODER_NOT_FOUND) {
    for (unsigned i = 0; i < f->nb_streams; ++i) {
      const AVStream& st = *f->streams[i];
      if (st.codecpar->codec_type != AVMEDIA_TYPE_AUDIO) continue;
      if (stream_is_encrypted(st)) throw AudioError(path_, kEncrypted);
      const AVCodecID id = st.codecpar->codec_id;
      if (id == AV_CODEC_ID_NONE)
        throw AudioError(path_, "no decoder for codec tag " + tag_text(st.codecpar->codec_tag) +
                                    " (a codec unknown to FFmpeg)");
      throw AudioError(path_, "no decoder for codec " + std::string(avcodec_get_name(id)) +
                                  " in this FFmpeg build");
    }
  }
  if (idx < 0) throw AudioError(path_, "cannot choose an audio stream: " + reason_for(idx));
  stream_ = idx;
  const AVStream& st = *f->streams[idx];
  if (stream_is_encrypted(st)) throw AudioError(path_, kEncrypted);
  // Cover art, video and other audio streams are not read at all.
  for (unsigned i = 0; i < f->nb_streams; ++i)
    if (static_cast<int>(i) != idx) f->streams[i]->discard = AVDISCARD_ALL;
  // 0: not declared; the decoded frames say (Resampler checks them).
  if (const int rate = st.codecpar->sample_rate; rate > 0 && (rate < kMinSourceRate || rate > kMaxSourceRate))
    throw AudioError(path_, "sample rate " + std::to_string(rate) + " Hz, outside the " +
                                std::to_string(kMinSourceRate) + " to " + std::to_string(kMaxSourceRate) +
                                " Hz of audio: a damaged header, or not audio");
  if (open_mp3(st)) return;

  dec_.reset(avcodec_alloc_context3(codec));
  if (!dec_) throw AudioError(path_, "out of memory allocating a decoder");
  int r = avcodec_parameters_to_context(dec_.get(), st.codecpar);
  if (r < 0) throw AudioError(path_, "bad " + std::string(codec->name) + " parameters: " + reason_for(r));
  dec_->pkt_timebase = st.time_base;
  dec_->thread_count = 1;  // parallelism is across files: one decoder thread per file
  plan_vorbis_trim(st);
  r = avcodec_open2(dec_.get(), codec, nullptr);
  if (r < 0) throw AudioError(path_, "cannot open the " + std::string(codec->name) + " decoder: " + reason_for(r));
}

// A plain MP3 file goes to libmpg123, the reference's decoder (mp3_source.h). MP3 inside
// another container (WAV, MP4, Matroska) stays with libavcodec, and so does a file libmpg123
// cannot open: FFmpeg found MP3 frames in it, so its decode is better than none.
bool AudioSource::open_mp3(const AVStream& st) {
  if (st.codecpar->codec_id != AV_CODEC_ID_MP3 || std::strcmp(fmt_->iformat->name, "mp3") != 0) return false;
  // libavformat read the same Info/Xing header: a duration from the bitrate means there is none.
  mp3_ = Mp3Source::open(path_, fmt_->duration_estimation_method != AVFMT_DURATION_FROM_BITRATE);
  return mp3_ != nullptr;
}

void AudioSource::plan_vorbis_trim(const AVStream& st) {
  // Vorbis granules count samples, and so do the timestamps only in a 1/rate time base.
  const AVCodecParameters& par = *st.codecpar;
  if (par.codec_id != AV_CODEC_ID_VORBIS || std::strcmp(fmt_->iformat->name, "ogg") != 0 ||
      st.time_base.num != 1 || st.time_base.den != par.sample_rate)
    return;
  vorbis_trim_ = read_vorbis_trim(path_, st.id, par.extradata, par.extradata_size);
  // FFmpeg's end trimming is replaced by ours: it cuts a stream of one audio page short.
  if (vorbis_trim_) dec_->flags2 |= AV_CODEC_FLAG2_SKIP_MANUAL;
}

std::string AudioSource::container() const { return fmt_->iformat->name; }
std::string AudioSource::codec() const { return avcodec_get_name(fmt_->streams[stream_]->codecpar->codec_id); }
int AudioSource::sample_rate() const {
  return mp3_ ? mp3_->sample_rate() : fmt_->streams[stream_]->codecpar->sample_rate;
}
int AudioSource::channels() const {
  return mp3_ ? mp3_->channels() : fmt_->streams[stream_]->codecpar->ch_layout.nb_channels;
}
int64_t AudioSource::packets_read() const { return mp3_ ? mp3_->frames_read() : packets_read_; }
const StreamDamage& AudioSource::damage() const { return mp3_ ? mp3_->damage() : damage_; }

double AudioSource::declared_seconds(bool* estimated) const {
  if (mp3_) return mp3_->declared_seconds(estimated);
  const AVStream& st = *fmt_->streams[stream_];
  if (vorbis_trim_ && vorbis_trim_->length() && st.codecpar->sample_rate > 0) {
    if (estimated) *estimated = false;
    return static_cast<double>(*vorbis_trim_->length()) / st.codecpar->sample_rate;
  }
  double s = -1;
  if (st.duration != AV_NOPTS_VALUE && st.duration > 0)
    s = static_cast<double>(st.duration) * av_q2d(st.time_base);
  else if (fmt_->duration != AV_NOPTS_VALUE && fmt_->duration > 0)
    s = static_cast<double>(fmt_->duration) / AV_TIME_BASE;
  if (estimated) *estimated = fmt_->duration_estimation_method == AVFMT_DURATION_FROM_BITRATE;
  return s;
}

void AudioSource::check_not_encrypted(const AVPacket& packet) const {
  // libavformat hands CENC-encrypted samples over with their IVs when it has no key.
  if (av_packet_get_side_data(&packet, AV_PKT_DATA_ENCRYPTION_INFO, nullptr))
    throw AudioError(path_, kEncrypted);
}

const AVFrame* AudioSource::next_frame() {
  if (mp3_) return mp3_->next_frame();
  AVCodecContext* dec = dec_.get();
  while (!ended_) {
    int r = avcodec_receive_frame(dec, frame_.get());
    if (r >= 0) {
      if (vorbis_trim_ && !trim_frame()) continue;
      return frame_.get();
    }
    if (r == AVERROR_EOF || flushing_) {
      ended_ = true;  // a decoder error while draining also ends the stream
      break;
    }
    if (r != AVERROR(EAGAIN)) {
      damage_.note_corrupt(reason_for(r));  // that packet is lost; the decoder goes on with the next one
      continue;
    }
    r = av_read_frame(fmt_.get(), packet_.get());
    if (r < 0) {
      if (r != AVERROR_EOF) damage_.read_error = reason_for(r);
      avcodec_send_packet(dec, nullptr);  // drain the frames the decoder still holds
      flushing_ = true;
      continue;
    }
    if (packet_->stream_index != stream_) {
      av_packet_unref(packet_.get());
      continue;
    }
    check_not_encrypted(*packet_);
    ++packets_read_;
    if (vorbis_clock_ && skip_vorbis_packet()) {
      av_packet_unref(packet_.get());
      continue;
    }
    // The demuxer marks a packet it could not read whole (the file ends inside it); what
    // there is still goes to the decoder.
    if (packet_->flags & AV_PKT_FLAG_CORRUPT) ++damage_.incomplete_packets;
    r = avcodec_send_packet(dec, packet_.get());
    av_packet_unref(packet_.get());
    if (r < 0 && r != AVERROR(EAGAIN)) damage_.note_corrupt(reason_for(r));
  }
  return nullptr;
}

// The first packet that ends at or after the target is decoded, though the decoder gives no
// samples for it (the first packet it sees only primes it): the next frame starts where it ends.
bool AudioSource::skip_vorbis_packet() {
  const int64_t end = vorbis_clock_->advance(packet_->data, packet_->size);
  if (end < skip_before_) return true;
  next_decoded_ = end;
  vorbis_clock_.reset();
  return false;
}

// Keeps what libvorbis keeps of the frame just decoded, at its decoded position.
bool AudioSource::trim_frame() {
  AVFrame& f = *frame_;
  const FrameCut c = vorbis_trim_->cut(next_decoded_, f.nb_samples);
  next_decoded_ += f.nb_samples;
  frame_output_ = c.output_position;
  if (c.keep == 0) return false;
  if (c.erase_count > 0) {
    if (av_frame_make_writable(&f) < 0) throw AudioError(path_, "out of memory trimming a decoded frame");
    erase_samples(f, c.erase_from, c.erase_count);
  }
  f.nb_samples = c.keep;
  return true;
}

bool AudioSource::seek(double seconds) {
  if (mp3_) return mp3_->seek(seconds);
  const AVStream& st = *fmt_->streams[stream_];
  if (vorbis_trim_) return seek_vorbis(seconds);
  const int64_t start = st.start_time != AV_NOPTS_VALUE ? st.start_time : 0;
  const int64_t ts = start + av_rescale_q(std::llround(seconds * AV_TIME_BASE), AV_TIME_BASE_Q, st.time_base);
  if (av_seek_frame(fmt_.get(), stream_, ts, AVSEEK_FLAG_BACKWARD) < 0) return false;
  avcodec_flush_buffers(dec_.get());
  flushing_ = ended_ = false;
  return true;
}

bool AudioSource::seek_vorbis(double seconds) {
  if (packets_read_ > 0) return false;
  const AVCodecParameters& par = *fmt_->streams[stream_]->codecpar;
  // Each packet decodes to at most half its largest block (4096 samples for 8192, the most
  // Vorbis allows): starting this far before the target, the primer ends before it.
  constexpr int64_t kPrimerMargin = 8192;
  skip_before_ = vorbis_trim_->decoded_from_output(std::llround(seconds * par.sample_rate)) - kPrimerMargin;
  try {
    if (skip_before_ > 0) vorbis_clock_ = std::make_unique<VorbisClock>(par.extradata, par.extradata_size);
  } catch (const std::runtime_error&) {
    return false;  // headers FFmpeg accepted but its parser does not: the caller counts instead
  }
  return true;
}

std::optional<int64_t> AudioSource::frame_position() const {
  if (mp3_) return mp3_->frame_position();
  if (vorbis_trim_) return frame_output_;  // counted, never from the timestamps (vorbis_trim.h)
  const AVFrame& frame = *frame_;
  const int64_t ts = frame_timestamp(frame);
  if (ts == AV_NOPTS_VALUE || frame.sample_rate <= 0) return std::nullopt;
  const AVStream& st = *fmt_->streams[stream_];
  const int64_t start = st.start_time != AV_NOPTS_VALUE ? st.start_time : 0;
  return av_rescale_q(ts - start, st.time_base, AVRational{1, frame.sample_rate});
}

}  // namespace mg::audio
