// Small pieces every FFmpeg user in melgraph_audio needs: owning pointers for FFmpeg's C
// objects, error codes as text, and a log sink that keeps FFmpeg quiet.
//
// FFmpeg logs through one process-wide callback. Ours prints nothing: it keeps the last error
// line of the calling thread, so a failure can name its cause ("moov atom not found") in the
// one-line reason instead of FFmpeg writing to stderr once per file. Each thread decodes its
// own files with single-threaded decoders, so thread-local capture sees that file's messages.
#pragma once
#include <memory>
#include <string>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libswresample/swresample.h>
}

namespace mg::audio {

struct FormatCloser {
  void operator()(AVFormatContext* f) const { avformat_close_input(&f); }
};
struct IoCloser {
  void operator()(AVIOContext* io) const { avio_closep(&io); }
};
struct CodecFreer {
  void operator()(AVCodecContext* c) const { avcodec_free_context(&c); }
};
struct FrameFreer {
  void operator()(AVFrame* f) const { av_frame_free(&f); }
};
struct PacketFreer {
  void operator()(AVPacket* p) const { av_packet_free(&p); }
};
struct SwrFreer {
  void operator()(SwrContext* s) const { swr_free(&s); }
};
using FormatPtr = std::unique_ptr<AVFormatContext, FormatCloser>;
using IoPtr = std::unique_ptr<AVIOContext, IoCloser>;
using CodecPtr = std::unique_ptr<AVCodecContext, CodecFreer>;
using FramePtr = std::unique_ptr<AVFrame, FrameFreer>;
using PacketPtr = std::unique_ptr<AVPacket, PacketFreer>;
using SwrPtr = std::unique_ptr<SwrContext, SwrFreer>;

// av_strerror's text for an FFmpeg (or AVERROR(errno)) code.
std::string av_error_text(int code);

// Installs the quiet log callback once per process (thread-safe; later calls do nothing).
void install_quiet_ffmpeg_log();

// What FFmpeg logged at error level on this thread since the last reset_thread_log().
struct ThreadLog {
  std::string last_error;  // "<component>: <message>", e.g. "mov,mp4,m4a,3gp,3g2,mj2: moov atom not found"
  int errors = 0;
  bool mentions_drm = false;  // any message (warnings included) about DRM or encryption
};
void reset_thread_log();
const ThreadLog& thread_log();

}  // namespace mg::audio
