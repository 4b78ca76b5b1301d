// Decoding any music file to mono float PCM at the model's sample rate (FFmpeg: libavformat
// finds the container and stream from the content, libavcodec decodes, libswresample downmixes
// and resamples with the soxr engine at high quality). The decode streams: only the requested
// excerpt is ever held in memory, and decoding stops at its end.
//
// This is the only part of melgraph that links FFmpeg (library melgraph_audio); the engine,
// the GPU tests and benchmarks do not.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/config.h"

namespace mg::audio {

// A file that cannot give audio. what() is one line: "<path>: <reason>", e.g.
// "a.wav: no audio samples (the file holds only a header)". `reason` is the part after the path.
struct AudioError : std::runtime_error {
  AudioError(const std::string& path, const std::string& reason);
  std::string path, reason;
};

// Which samples to decode, in output samples at `sample_rate`.
struct DecodeRequest {
  int sample_rate = 22050;             // output rate (Hz)
  Excerpt excerpt = Excerpt::Start;    // Start: from the beginning; Middle: centred on the middle
                                       // of the declared duration (else of the decoded length);
                                       // a track no longer than the window is decoded whole
  int64_t max_samples = -1;            // excerpt length; -1 = the whole track
};
DecodeRequest decode_request(const AudioConfig& audio);  // the cache's request for a config

struct DecodedAudio {
  std::vector<float> samples;     // mono, at DecodeRequest::sample_rate; downmix = channel mean
  // What the source is, for summaries and the cache index.
  std::string container;          // libavformat's short name, e.g. "ogg", "mov,mp4,m4a,3gp,3g2,mj2"
  std::string codec;              // e.g. "vorbis", "flac", "mp3", "aac", "alac", "pcm_s16le"
  int source_rate = 0;
  int source_channels = 0;
  double source_seconds = -1;     // duration of the whole source (decoded or declared); -1 unknown
  double offset_seconds = 0;      // where `samples` starts in the source
  // Set when the stream ended early or had corrupt packets: what was decoded is kept, and
  // `warning` says what happened ("truncated: decoded 12.3 s of 30.0 s declared").
  bool truncated = false;
  std::string warning;
};

// Throws AudioError for a missing, unreadable, empty (header only), zero-length, non-audio,
// unsupported (no decoder), encrypted (DRM) or wholly corrupt file. Never aborts the process,
// never writes to stderr. Thread-safe: decode one file per thread, as many threads as wanted.
// std::invalid_argument for a request with sample_rate <= 0 or max_samples not > 0 or -1.
DecodedAudio decode_audio(const std::string& path, const DecodeRequest& request);

}  // namespace mg::audio
