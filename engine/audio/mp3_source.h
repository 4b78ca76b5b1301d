// A plain MP3 file decoded by libmpg123, the decoder of the reference (libsndfile, under
// python-soundfile), set up as libsndfile sets it up, so that the samples are the reference's:
// gapless (the LAME/Info encoder delay and padding trimmed), 32-bit float at the file's own rate
// and channels, and no "Frankenstein" streams (decoding stops where the Info header says the
// track ends). FFmpeg's MP3 decoder differs from it on MPEG-2/2.5 intensity stereo (FFmpeg
// never treats an intensity position as illegal there, mpg123 treats 7 as illegal): up to
// 1.6e-2 on such files.
//
// AudioSource uses it in place of libavcodec once libavformat has probed the file and found a
// plain MP3 (container "mp3"); the frames it yields look like libavcodec's (interleaved float),
// so the resampler and the window logic see no difference. Positions are libmpg123's sample
// counts, exact from the start and after a seek. The length is exact too: the Info header's,
// or, without one, the frames counted on opening (libsndfile keeps libmpg123's guess from the
// first frame's bitrate, and stops reading there: a VBR file can lose most of its track, which
// melgraph deliberately does not copy). One handle per source: thread-safe without any global
// set-up (libmpg123 >= 1.27, where mpg123_init() does nothing).
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "engine/audio/ffmpeg_util.h"
#include "engine/audio/stream_damage.h"

struct mpg123_handle_struct;  // mpg123_handle: mpg123.h stays out of this header

namespace mg::audio {

struct Mpg123Deleter {
  void operator()(mpg123_handle_struct* h) const;
};
using Mpg123Ptr = std::unique_ptr<mpg123_handle_struct, Mpg123Deleter>;

class Mp3Source {
 public:
  // nullptr when libmpg123 cannot open the file or find its first frame (AudioSource then
  // lets FFmpeg decode it). `info_header`: the file declares its length (an Info/Xing header,
  // as libavformat found); without one the frames are counted on opening, a pass over their
  // headers. Throws AudioError only when out of memory.
  static std::unique_ptr<Mp3Source> open(const std::string& path, bool info_header);

  int sample_rate() const { return rate_; }
  int channels() const { return channels_; }
  // The track's length in seconds as it was on opening: the Info header's, or the frames
  // counted; -1 if unknown. `estimated` when counting failed and it is libmpg123's guess from
  // the file size and the first frame's bitrate.
  double declared_seconds(bool* estimated = nullptr) const;

  // Same contracts as AudioSource's.
  const AVFrame* next_frame();
  bool seek(double seconds);  // sample-accurate: the next frame starts at `seconds`
  int64_t frame_position() const { return frame_position_; }
  int64_t frames_read() const { return frames_read_; }  // MPEG frames decoded
  const StreamDamage& damage() const { return damage_; }

 private:
  Mp3Source(const std::string& path, Mpg123Ptr handle, int rate, int channels, bool info_header);
  void allocate_frame();
  void note_frame_bytes();
  void end_of_stream(int code);
  void check_tail();
  const AVFrame* fill_frame(const unsigned char* audio, size_t bytes);

  std::string path_;
  Mpg123Ptr mh_;
  int rate_, channels_;
  int64_t declared_samples_ = -1;
  bool length_exact_ = false;
  FramePtr frame_;
  size_t capacity_ = 0;  // samples the frame's buffer holds
  bool ended_ = false;
  int64_t frames_read_ = 0;
  int64_t next_position_ = 0;   // sample where the next frame starts
  int64_t frame_position_ = 0;  // sample where the frame last returned starts
  int64_t frame_end_ = -1;      // byte where the last decoded MPEG frame ends; -1: none since open or seek
  StreamDamage damage_;
};

}  // namespace mg::audio
