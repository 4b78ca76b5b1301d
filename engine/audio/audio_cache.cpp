#include "engine/audio/audio_cache.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <utility>

#include "engine/audio/cache_schema.h"
#include "engine/audio/half.h"

namespace mg::audio {

static_assert(std::endian::native == std::endian::little, "pcm.bin is little-endian and read in place");

namespace {

namespace fs = std::filesystem;

// All 65536 halves as floats: a clip converts at table-lookup speed.
const float* half_table() {
  static const std::array<float, 65536> table = [] {
    std::array<float, 65536> t{};
    for (uint32_t h = 0; h < 65536; ++h) t[h] = half_to_float(static_cast<uint16_t>(h));
    return t;
  }();
  return table.data();
}

}  // namespace

AudioCache AudioCache::open(const std::string& dir, const FileLock::WaitNotice& waiting) {
  const fs::path index = fs::path(dir) / schema::kIndexFile;
  std::error_code ec;
  if (!fs::is_regular_file(index, ec))
    throw CacheError(dir + ": no audio cache here (no " + schema::kIndexFile + "); make one with melgraph prepare --out " +
                     dir);
  const FileLock opening((fs::path(dir) / schema::kLockFile).string(), LockMode::kShared, waiting);
  AudioCache c;
  c.dir_ = dir;
  std::string pcm_name = schema::kPcmFile;
  {
    // Read-write (not created) when the file allows, so SQLite can roll back the journal of
    // a writer that was killed mid-transaction; read-only otherwise.
    SqliteDb db(index.string(), SQLITE_OPEN_READWRITE);
    db.exec("BEGIN");  // one consistent snapshot of meta, items and failures
    c.settings_ = schema::read_settings(db, dir);
    c.pcm_bytes_ = schema::committed_pcm_bytes(db);
    // A compaction that committed its new offsets but was stopped before renaming its file.
    if (schema::get_meta(db, "compact_pending", "") == "1" && fs::exists(fs::path(dir) / schema::kCompactFile, ec))
      pcm_name = schema::kCompactFile;
    c.entries_ = schema::load_items(db);
    c.failures_ = schema::load_failures(db);
    db.exec("COMMIT");
  }

  const std::string pcm = (fs::path(dir) / pcm_name).string();
  const int fd = ::open(pcm.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw CacheError(pcm + ": cannot open: " + std::strerror(errno) + " (--rebuild the cache)");
  struct stat st {};
  if (::fstat(fd, &st) != 0 || st.st_size < c.pcm_bytes_) {
    ::close(fd);
    throw CacheError(pcm + ": " + std::to_string(st.st_size) + " bytes, but the index says " +
                     std::to_string(c.pcm_bytes_) + " were committed: the cache is damaged; --rebuild it");
  }
  if (c.pcm_bytes_ > 0) {
    void* p = ::mmap(nullptr, static_cast<size_t>(c.pcm_bytes_), PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      const int e = errno;
      ::close(fd);
      throw CacheError(pcm + ": mmap failed: " + std::strerror(e));
    }
    c.map_ = static_cast<const unsigned char*>(p);
    c.map_size_ = static_cast<size_t>(c.pcm_bytes_);
  }
  ::close(fd);  // the mapping keeps the file

  const auto bps = static_cast<int64_t>(bytes_per_sample(c.settings_.dtype));
  for (size_t i = 0; i < c.entries_.size(); ++i) {
    const CacheEntry& e = c.entries_[i];
    if (e.offset < 0 || e.length < 0 || (e.offset + e.length) * bps > c.pcm_bytes_)
      throw CacheError(index.string() + ": item '" + e.id + "' (samples " + std::to_string(e.offset) + " + " +
                       std::to_string(e.length) + ") lies outside the " + std::to_string(c.pcm_bytes_) +
                       " committed bytes of pcm.bin: the cache is damaged; --rebuild it");
    c.index_.emplace(e.id, static_cast<int64_t>(i));
    c.total_samples_ += e.length;
  }
  return c;
}

AudioCache::AudioCache(AudioCache&& o) noexcept { *this = std::move(o); }

AudioCache& AudioCache::operator=(AudioCache&& o) noexcept {
  if (this != &o) {
    if (map_) ::munmap(const_cast<unsigned char*>(map_), map_size_);
    dir_ = std::move(o.dir_);
    settings_ = o.settings_;
    entries_ = std::move(o.entries_);
    index_ = std::move(o.index_);
    failures_ = std::move(o.failures_);
    total_samples_ = o.total_samples_;
    pcm_bytes_ = o.pcm_bytes_;
    map_ = std::exchange(o.map_, nullptr);
    map_size_ = std::exchange(o.map_size_, 0);
  }
  return *this;
}

AudioCache::~AudioCache() {
  if (map_) ::munmap(const_cast<unsigned char*>(map_), map_size_);
}

int64_t AudioCache::find(const std::string& id) const {
  const auto it = index_.find(id);
  return it == index_.end() ? -1 : it->second;
}

// out [count] = samples [from, from + count) of e, which the caller keeps inside the item.
void AudioCache::convert(const CacheEntry& e, int64_t from, int64_t count, float* out) const {
  const size_t first = static_cast<size_t>(e.offset + from);
  if (settings_.dtype == CacheDtype::Int16) {
    const auto* s = reinterpret_cast<const int16_t*>(map_) + first;
    for (int64_t k = 0; k < count; ++k) out[k] = static_cast<float>(s[k]) * (1.0f / 32768.0f);
  } else {
    const auto* s = reinterpret_cast<const uint16_t*>(map_) + first;
    const float* table = half_table();
    for (int64_t k = 0; k < count; ++k) out[k] = table[s[k]];
  }
}

void AudioCache::read_clip(int64_t i, int64_t start, int64_t n, ShortClip pad, float* out) const {
  if (i < 0 || i >= size())
    throw std::out_of_range("AudioCache::read_clip: item " + std::to_string(i) + " of " + std::to_string(size()));
  if (start < 0 || n < 0)
    throw std::out_of_range("AudioCache::read_clip: start " + std::to_string(start) + ", n " + std::to_string(n) +
                            " (both must be >= 0)");
  const CacheEntry& e = entries_[static_cast<size_t>(i)];
  int64_t done = 0;
  if (start < e.length) {
    done = std::min(n, e.length - start);
    convert(e, start, done, out);
  }
  if (done == n) return;
  if (pad == ShortClip::Zero || e.length == 0) {
    std::fill(out + done, out + n, 0.0f);
    return;
  }
  // Repeat: position p reads sample p mod length.
  int64_t pos = (start + done) % e.length;
  while (done < n) {
    const int64_t run = std::min(n - done, e.length - pos);
    convert(e, pos, run, out + done);
    done += run;
    pos = 0;
  }
}

bool AudioCache::verify(int64_t i) const {
  const CacheEntry& e = entry(i);
  const size_t bps = bytes_per_sample(settings_.dtype);
  const unsigned char* p = map_ ? map_ + static_cast<size_t>(e.offset) * bps : nullptr;
  const uLong crc = crc32_z(crc32_z(0L, Z_NULL, 0), p, static_cast<size_t>(e.length) * bps);
  return static_cast<uint32_t>(crc) == e.checksum;
}

}  // namespace mg::audio
