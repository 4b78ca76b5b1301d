// One open audio file: libavformat's demuxer (format probed from the content only) and
// libavcodec's decoder for its best audio stream, yielding decoded frames in the source's own
// rate, layout and sample format. Opening classifies every way a file can fail to be audio
// and throws AudioError with the reason; mid-stream damage is recorded, not thrown.
//
// The frames hold the samples the reference decoders give: FFmpeg applies the start and end
// trimming the containers declare (Opus pre-skip, the granule of an Ogg stream's last page);
// an Ogg Vorbis stream is trimmed as libvorbis does it (vorbis_trim.h), which FFmpeg does not;
// a plain MP3 file is decoded by libmpg123 instead of libavcodec (mp3_source.h), as the
// reference decodes it (gapless, its own intensity-stereo rules).
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "engine/audio/ffmpeg_util.h"
#include "engine/audio/stream_damage.h"
#include "engine/audio/vorbis_trim.h"

namespace mg::audio {

class Mp3Source;

class AudioSource {
 public:
  explicit AudioSource(const std::string& path);  // throws AudioError
  ~AudioSource();

  const std::string& path() const { return path_; }
  std::string container() const;  // libavformat's short name
  std::string codec() const;      // libavcodec's codec name
  int sample_rate() const;        // as declared by the stream (0 if it does not say)
  int channels() const;
  // Length of the whole stream in seconds as the container declares it (for Ogg Vorbis the
  // exact length of the decode, from the first and last pages), -1 if unknown. `estimated` is
  // set when it is only a guess from the bitrate (e.g. an MP3 without a Xing/Info header):
  // good enough to aim a seek, not to call a file truncated.
  double declared_seconds(bool* estimated = nullptr) const;

  // The next decoded frame, owned by the source and valid until the next call; nullptr at the
  // end of the stream (or where the rest cannot be read: see problems()).
  const AVFrame* next_frame();
  // Seeks to the last seek point at or before `seconds` from the start of the stream; the
  // decoder is flushed. False if the demuxer cannot seek there. A plain MP3 file (libmpg123)
  // seeks to that very sample. An Ogg Vorbis stream is not seeked but read from its start, its
  // packets up to `seconds` demuxed and counted, not decoded (VorbisClock): that only works
  // before the first next_frame(), else it is false.
  bool seek(double seconds);
  // Where the frame last returned by next_frame() starts, in source samples from the start
  // of the stream (as a whole decode counts them): from its timestamp, nullopt if it has none;
  // for Ogg Vorbis and MP3 counted from the start.
  std::optional<int64_t> frame_position() const;

  int64_t packets_read() const;  // for MP3: MPEG frames decoded
  int corrupt_packets() const { return damage().corrupt_packets; }
  // Damage met while decoding, for DecodedAudio::warning: "" when none.
  std::string problems() const { return damage().text(); }

 private:
  void open_container();
  void open_stream();
  bool open_mp3(const AVStream& st);
  void check_not_encrypted(const AVPacket& packet) const;
  const StreamDamage& damage() const;
  void plan_vorbis_trim(const AVStream& st);
  bool seek_vorbis(double seconds);
  bool skip_vorbis_packet();  // true: the packet lies before the seek target and is not decoded
  bool trim_frame();          // false: nothing of the frame is kept

  std::string path_;
  IoPtr io_;         // our own AVIOContext, so probing sees bytes, never the file name;
  FormatPtr fmt_;    // declared after io_: closed first, as FFmpeg requires for custom I/O
  CodecPtr dec_;
  FramePtr frame_;
  PacketPtr packet_;
  int stream_ = -1;
  bool flushing_ = false;  // end of input reached, the decoder is being drained
  bool ended_ = false;
  int64_t packets_read_ = 0;
  StreamDamage damage_;
  std::unique_ptr<Mp3Source> mp3_;  // a plain MP3 file: libmpg123 decodes, not dec_
  // Ogg Vorbis only. Positions count decoded samples from the stream's first audio packet.
  std::optional<VorbisTrim> vorbis_trim_;
  std::unique_ptr<VorbisClock> vorbis_clock_;  // while seeking: packets before skip_before_
  int64_t skip_before_ = 0;
  int64_t next_decoded_ = 0;  // of the next frame the decoder gives
  int64_t frame_output_ = 0;  // output position of the frame last returned
};

}  // namespace mg::audio
