#include "engine/audio/mp3_source.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <system_error>

#include <mpg123.h>

#include "engine/audio/decode.h"

namespace mg::audio {
namespace {

// libsndfile's settings (its mpeg_decode.c): no resampling inside libmpg123, gapless, no
// Frankenstein streams; float output at every MPEG rate, mono or stereo as the file is. Quiet:
// libmpg123 would print its resync notes to stderr.
bool configure(mpg123_handle* mh) {
  if (mpg123_param(mh, MPG123_REMOVE_FLAGS, MPG123_AUTO_RESAMPLE, 0) != MPG123_OK ||
      mpg123_param(mh, MPG123_ADD_FLAGS, MPG123_GAPLESS | MPG123_NO_FRANKENSTEIN | MPG123_QUIET, 0) != MPG123_OK ||
      mpg123_format_none(mh) != MPG123_OK)
    return false;
  const long* rates = nullptr;
  size_t count = 0;
  mpg123_rates(&rates, &count);
  for (size_t i = 0; i < count; ++i)
    if (mpg123_format(mh, rates[i], MPG123_MONO | MPG123_STEREO, MPG123_ENC_FLOAT_32) != MPG123_OK) return false;
  return true;
}

// A handle set up as configure() says, open on `path` and past its first frame, which gives
// the rate and channels; null if libmpg123 cannot open the file or finds no frame in it.
Mpg123Ptr open_handle(const std::string& path, long& rate, int& channels) {
  Mpg123Ptr mh(mpg123_new(nullptr, nullptr));
  if (!mh || !configure(mh.get()) || mpg123_open(mh.get(), path.c_str()) != MPG123_OK) return nullptr;
  int encoding = 0;
  if (mpg123_getformat(mh.get(), &rate, &channels, &encoding) != MPG123_OK || encoding != MPG123_ENC_FLOAT_32)
    return nullptr;
  return mh;
}

// The exact length of a file without an Info header: libmpg123 reads every frame header. On a
// handle of its own, so that the decoding handle goes through libsndfile's calls only (a scan
// seeks back to the start, which can change the first samples of a gapless decode).
int64_t scanned_length(const std::string& path) {
  long rate = 0;
  int channels = 0;
  const Mpg123Ptr mh = open_handle(path, rate, channels);
  if (!mh || mpg123_scan(mh.get()) != MPG123_OK) return -1;
  const off_t n = mpg123_length(mh.get());
  return n >= 0 ? static_cast<int64_t>(n) : -1;
}

// The largest layer III frame: MPEG-1 at 320 kbit/s and 32 kHz, padded.
constexpr int64_t kMaxFrameBytes = 1441;

// The first 3 bytes at `offset` ("" if they cannot be read).
std::string bytes_at(const std::string& path, int64_t offset) {
  std::ifstream f(path, std::ios::binary);
  std::string b(3, '\0');
  if (!f.seekg(offset) || !f.read(b.data(), 3)) return std::string();
  return b;
}

bool is_frame_sync(const std::string& b) {  // 11 set bits
  return b.size() >= 2 && static_cast<unsigned char>(b[0]) == 0xff && (static_cast<unsigned char>(b[1]) & 0xe0) == 0xe0;
}

}  // namespace

void Mpg123Deleter::operator()(mpg123_handle_struct* h) const { mpg123_delete(h); }

std::unique_ptr<Mp3Source> Mp3Source::open(const std::string& path, bool info_header) {
  long rate = 0;
  int channels = 0;
  Mpg123Ptr mh = open_handle(path, rate, channels);
  if (!mh) return nullptr;
  return std::unique_ptr<Mp3Source>(new Mp3Source(path, std::move(mh), static_cast<int>(rate), channels, info_header));
}

Mp3Source::Mp3Source(const std::string& path, Mpg123Ptr handle, int rate, int channels, bool info_header)
    : path_(path), mh_(std::move(handle)), rate_(rate), channels_(channels) {
  // Taken now: once decoding has begun libmpg123 replaces it by what it has counted.
  const off_t length = mpg123_length(mh_.get());
  declared_samples_ = length >= 0 ? static_cast<int64_t>(length) : -1;
  length_exact_ = info_header;
  if (!info_header) {
    // Without one, libmpg123's length is a guess from the first frame's bitrate, which for a
    // VBR file can be off by most of the track: the Middle window would sit far from the middle.
    const int64_t scanned = scanned_length(path_);
    if (scanned >= 0) declared_samples_ = scanned, length_exact_ = true;
  }
  allocate_frame();
}

// One reusable frame the size of libmpg123's largest output per MPEG frame.
void Mp3Source::allocate_frame() {
  frame_.reset(av_frame_alloc());
  if (!frame_) throw AudioError(path_, "out of memory allocating a frame");
  frame_->format = AV_SAMPLE_FMT_FLT;
  frame_->sample_rate = rate_;
  av_channel_layout_default(&frame_->ch_layout, channels_);
  capacity_ = mpg123_outblock(mh_.get()) / (sizeof(float) * static_cast<size_t>(channels_));
  frame_->nb_samples = static_cast<int>(capacity_);
  if (av_frame_get_buffer(frame_.get(), 0) < 0) throw AudioError(path_, "out of memory allocating a frame");
}

double Mp3Source::declared_seconds(bool* estimated) const {
  if (estimated) *estimated = !length_exact_;
  return declared_samples_ >= 0 ? static_cast<double>(declared_samples_) / rate_ : -1;
}

const AVFrame* Mp3Source::next_frame() {
  while (!ended_) {
    unsigned char* audio = nullptr;
    size_t bytes = 0;
    const int r = mpg123_decode_frame(mh_.get(), nullptr, &audio, &bytes);
    if (r != MPG123_OK) {
      end_of_stream(r);
      break;
    }
    note_frame_bytes();
    if (bytes > 0) return fill_frame(audio, bytes);  // else a frame wholly inside the encoder delay or padding
  }
  return nullptr;
}

// libmpg123 resyncs silently over bytes that are no frame: a frame that does not begin where
// the one before it ended marks such a stretch (as FFmpeg's decoder rejects a packet there).
void Mp3Source::note_frame_bytes() {
  mpg123_frameinfo2 info{};
  mpg123_info2(mh_.get(), &info);
  const int64_t at = mpg123_framepos(mh_.get());
  if (frame_end_ >= 0 && at > frame_end_)
    damage_.note_corrupt(std::to_string(at - frame_end_) + " bytes at byte " + std::to_string(frame_end_) +
                         " are no MPEG audio frame; libmpg123 skipped them");
  frame_end_ = at + info.framesize;
  ++frames_read_;
}

const AVFrame* Mp3Source::fill_frame(const unsigned char* audio, size_t bytes) {
  const size_t samples = bytes / (sizeof(float) * static_cast<size_t>(channels_));
  if (samples > capacity_)  // never: libmpg123 announces its largest frame
    throw AudioError(path_, "libmpg123 gave a frame of " + std::to_string(samples) + " samples, more than it announced");
  std::memcpy(frame_->data[0], audio, bytes);
  frame_->nb_samples = static_cast<int>(samples);
  frame_position_ = next_position_;
  next_position_ += static_cast<int64_t>(samples);
  return frame_.get();
}

void Mp3Source::end_of_stream(int code) {
  ended_ = true;
  if (code == MPG123_DONE) return check_tail();
  if (code == MPG123_NEW_FORMAT) {
    // Excluded by MPG123_NO_FRANKENSTEIN; libsndfile also stops reading at one.
    damage_.read_error = "the MPEG stream changes its sample rate or channels there";
    return;
  }
  damage_.read_error = std::string("libmpg123: ") +
                       (code == MPG123_ERR ? mpg123_strerror(mh_.get()) : mpg123_plain_strerror(code));
}

// What follows the last frame decoded when libmpg123 ends the stream: nothing, a tag or padding
// (no damage), less than a frame that begins like one (a frame the file ends inside: a cut
// file), or more MPEG audio, frames or the ID3 tag of a second file glued on, which libmpg123
// does not decode past the length an Info header declares or a change of rate or channels
// (nor does libsndfile).
void Mp3Source::check_tail() {
  std::error_code ec;
  const auto size = static_cast<int64_t>(std::filesystem::file_size(path_, ec));
  if (frame_end_ < 0 || ec || size - frame_end_ < 3) return;
  int64_t at = frame_end_;
  std::string head = bytes_at(path_, at);
  if (head == "TAG" && size - at > 128) head = bytes_at(path_, at += 128);  // the first file's ID3v1 tag
  const bool sync = is_frame_sync(head);
  if (sync && size - at < kMaxFrameBytes) {
    ++damage_.incomplete_packets;
  } else if (sync || head == "ID3") {
    damage_.read_error = std::to_string(size - at) + " bytes from byte " + std::to_string(at) +
                         " hold more MPEG audio (another file glued on?), which libmpg123 does not decode "
                         "past the track's declared end or a change of rate or channels";
  }
}

bool Mp3Source::seek(double seconds) {
  const off_t at = mpg123_seek(mh_.get(), static_cast<off_t>(std::llround(seconds * rate_)), SEEK_SET);
  if (at < 0) return false;
  next_position_ = at;
  frame_end_ = -1;  // the frames read next do not follow the last one decoded
  ended_ = false;
  return true;
}

}  // namespace mg::audio
