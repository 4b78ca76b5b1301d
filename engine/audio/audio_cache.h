// The decoded-audio cache: what `melgraph prepare` writes and training reads. A directory:
//
//   pcm.bin       every item's PCM at the model's sample rate, mono, int16 or float16
//                 (little-endian), items contiguous, append-only. Bytes no index row points
//                 at are dead space (an item decoded again after its file changed).
//   index.sqlite  items(id, path, offset, length, source_size, source_mtime_ns, checksum,
//                 source_seconds, offset_seconds, codec, warning): offset and length in
//                 samples, checksum = zlib's CRC-32 of the item's PCM bytes;
//                 failures(id, path, source_size, source_mtime_ns, reason);
//                 meta(key, value): format, format_version, sample_rate, dtype, excerpt,
//                 excerpt_seconds, pcm_bytes (the committed extent of pcm.bin);
//                 PRAGMA user_version = the schema version.
//   cache.lock    flock'ed by the writer (exclusive) and opening readers (shared); see below.
//
// Crash safety (cache_writer.h): PCM is appended and fsync'ed before the index rows that
// point at it are committed, so the committed index only ever names durable bytes; bytes
// past meta.pcm_bytes are an interrupted run's and are cut off when a writer next opens.
//
// Locking: the cache's lock file (cache_schema.h) is held exclusively by the one writer and
// shared by readers while they open, so any number of readers open a warm cache at once.
//
// AudioCache is the reader: the index in memory, pcm.bin memory-mapped read-only. All its
// methods are const and it holds no mutable state, so any number of threads may read at once.
#pragma once
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/config.h"
#include "engine/io/file_lock.h"

namespace mg::audio {

// A cache that cannot be opened or used: the message names the directory or file and what
// to do (e.g. "use another --out or --rebuild").
struct CacheError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// The directory holds another cache: made with other settings, by another schema version, or
// no melgraph cache at all. The fix is on the command line (another --out, or --rebuild).
struct CacheMismatchError : CacheError {
  using CacheError::CacheError;
};

// The settings a cache is made for. A cache refuses to be extended under other settings:
// its items would mix rates, sample formats or excerpt rules.
struct CacheSettings {
  int sample_rate = 22050;
  CacheDtype dtype = CacheDtype::Int16;
  Excerpt excerpt = Excerpt::Middle;
  double excerpt_seconds = 30.0;
};
CacheSettings cache_settings(const AudioConfig& audio);
size_t bytes_per_sample(CacheDtype dtype);
const char* dtype_name(CacheDtype dtype);      // "int16", "float16" (the config's words)
const char* excerpt_name(Excerpt excerpt);     // "middle", "start"

// One decoded item; offset and length count samples of pcm.bin.
struct CacheEntry {
  std::string id, path;
  int64_t offset = 0, length = 0;
  int64_t source_size = 0, source_mtime_ns = 0;  // the file when it was decoded
  uint32_t checksum = 0;                         // CRC-32 of the item's PCM bytes
  double source_seconds = -1;                    // the whole source's duration; -1 unknown
  double offset_seconds = 0;                     // where the excerpt starts in the source
  std::string codec;
  std::string warning;                           // e.g. "truncated: ..."; empty when clean
  int decoder = 1;                               // schema::kDecoderRevision when it was decoded
};

// A file that gave no audio, and why (AudioError's reason).
struct CacheFailure {
  std::string id, path;
  int64_t source_size = -1, source_mtime_ns = 0;  // -1: the file could not be stat'ed
  std::string reason;
};

class AudioCache {
 public:
  // Loads the index of the cache in `dir` and maps its PCM. Throws CacheError when the
  // directory holds no cache, the cache comes from another melgraph (schema version), or
  // the index points past the end of pcm.bin. Waits while a writer holds the cache (it could
  // be replacing pcm.bin); `waiting` is told by whom first. After open() the mapping pins the
  // PCM it read, so a later writer cannot change what this reader sees.
  static AudioCache open(const std::string& dir, const FileLock::WaitNotice& waiting = {});

  AudioCache(AudioCache&& o) noexcept;
  AudioCache& operator=(AudioCache&& o) noexcept;
  AudioCache(const AudioCache&) = delete;
  AudioCache& operator=(const AudioCache&) = delete;
  ~AudioCache();

  const std::string& dir() const { return dir_; }
  const CacheSettings& settings() const { return settings_; }
  int64_t size() const { return static_cast<int64_t>(entries_.size()); }
  const CacheEntry& entry(int64_t i) const { return entries_.at(static_cast<size_t>(i)); }
  int64_t find(const std::string& id) const;  // index, or -1
  const std::vector<CacheFailure>& failures() const { return failures_; }
  int64_t total_samples() const { return total_samples_; }
  int64_t pcm_bytes() const { return pcm_bytes_; }  // committed extent, dead space included

  // out [n] = the item's samples [start, start + n) as float in [-1, 1] (int16 / 32768,
  // float16 exactly). Positions past the item's end follow `pad`: Repeat loops the item
  // from its start, Zero writes silence. Throws std::out_of_range for a bad i, start < 0
  // or n < 0.
  void read_clip(int64_t i, int64_t start, int64_t n, ShortClip pad, float* out) const;
  // Whether the item's PCM still has the CRC-32 stored in the index.
  bool verify(int64_t i) const;

 private:
  AudioCache() = default;
  void convert(const CacheEntry& e, int64_t from, int64_t count, float* out) const;

  std::string dir_;
  CacheSettings settings_;
  std::vector<CacheEntry> entries_;  // in pcm.bin order
  std::unordered_map<std::string, int64_t> index_;
  std::vector<CacheFailure> failures_;
  int64_t total_samples_ = 0;
  int64_t pcm_bytes_ = 0;
  const unsigned char* map_ = nullptr;
  size_t map_size_ = 0;
};

}  // namespace mg::audio
