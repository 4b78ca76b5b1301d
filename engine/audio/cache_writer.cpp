#include "engine/audio/cache_writer.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <vector>

#include "engine/audio/cache_schema.h"
#include "engine/audio/half.h"
#include "engine/timer.h"

namespace mg::audio {

namespace {

namespace fs = std::filesystem;

std::string in_dir(const std::string& dir, const std::string& name) { return (fs::path(dir) / name).string(); }

[[noreturn]] void fail_errno(const std::string& path, const std::string& what) {
  throw CacheError(path + ": " + what + ": " + std::strerror(errno));
}

void pwrite_all(int fd, const void* data, size_t n, int64_t offset, const std::string& path) {
  const auto* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::pwrite(fd, p, n, static_cast<off_t>(offset));
    if (w < 0) {
      if (errno == EINTR) continue;
      fail_errno(path, "write failed");
    }
    p += w;
    n -= static_cast<size_t>(w);
    offset += w;
  }
}

void pread_all(int fd, void* data, size_t n, int64_t offset, const std::string& path) {
  auto* p = static_cast<char*>(data);
  while (n > 0) {
    const ssize_t r = ::pread(fd, p, n, static_cast<off_t>(offset));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      if (r == 0) errno = EIO;  // the index points past the end: pcm.bin was cut short
      fail_errno(path, "read failed");
    }
    p += r;
    n -= static_cast<size_t>(r);
    offset += r;
  }
}

// A rename is durable only once the directory entry is.
void sync_dir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) fail_errno(dir, "cannot open the directory to sync it");
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) fail_errno(dir, "fsync of the directory failed");
}

// Model-rate float samples -> the cache's 16-bit words. NaN (which no decoder should give)
// becomes silence rather than poison for training.
std::vector<uint16_t> encode(const float* x, int64_t n, CacheDtype dtype) {
  std::vector<uint16_t> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const float v = std::isnan(x[i]) ? 0.0f : x[i];
    if (dtype == CacheDtype::Int16) {
      const float s = std::clamp(v * 32768.0f, -32768.0f, 32767.0f);
      out[static_cast<size_t>(i)] = static_cast<uint16_t>(static_cast<int16_t>(std::lrint(s)));
    } else {
      out[static_cast<size_t>(i)] = float_to_half(v);
    }
  }
  return out;
}

// The lock is taken in the constructor's initializer list, so the directory must exist first.
std::string lock_path_in_new_dir(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw CacheError(dir + ": cannot create the cache directory: " + ec.message());
  return in_dir(dir, schema::kLockFile);
}

}  // namespace

// One writer at a time: two would interleave their appends to pcm.bin; and no reader in the
// middle of opening, which could map a pcm.bin that a compaction just replaced.
CacheWriter::CacheWriter(const std::string& dir, const CacheSettings& settings, bool rebuild,
                         const FileLock::WaitNotice& waiting)
    : dir_(dir), settings_(settings), lock_(lock_path_in_new_dir(dir), LockMode::kExclusive, waiting) {
  try {
    open_files(rebuild);
  } catch (...) {
    close_files();
    throw;
  }
}

void CacheWriter::open_files(bool rebuild) {
  const std::string index = in_dir(dir_, schema::kIndexFile), pcm = in_dir(dir_, schema::kPcmFile),
                    compact_file = in_dir(dir_, schema::kCompactFile);
  if (rebuild)
    for (const std::string& f : {index, index + "-journal", pcm, compact_file}) {
      std::error_code ec;
      fs::remove(f, ec);
      if (ec) throw CacheError(f + ": cannot remove it for --rebuild: " + ec.message());
    }

  db_ = std::make_unique<SqliteDb>(index, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  // The default rollback journal with synchronous = FULL: a commit is on disk when COMMIT
  // returns, and a read-only reader needs no -wal/-shm files beside the index.
  db_->exec("PRAGMA journal_mode = DELETE; PRAGMA synchronous = FULL");
  bool fresh = false;
  if (schema::is_empty(*db_)) {
    schema::create(*db_, settings_);
    fresh = true;
  } else {
    schema::check_same(schema::read_settings(*db_, dir_), settings_, dir_);
    schema::migrate(*db_);
  }

  std::error_code ec;
  if (schema::get_meta(*db_, "compact_pending", "") == "1") {
    finish_compaction();
  } else if (fs::exists(compact_file, ec)) {
    fs::remove(compact_file, ec);  // a compaction stopped before it committed: pcm.bin is current
  }

  pcm_fd_ = ::open(pcm.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (pcm_fd_ < 0) fail_errno(pcm, "cannot open");
  struct stat st {};
  if (::fstat(pcm_fd_, &st) != 0) fail_errno(pcm, "cannot stat");
  const int64_t committed = fresh ? 0 : schema::committed_pcm_bytes(*db_);
  if (st.st_size < committed)
    throw CacheError(pcm + ": " + std::to_string(st.st_size) + " bytes, but the index says " +
                     std::to_string(committed) + " were committed: the cache is damaged; --rebuild it");
  if (st.st_size > committed) {  // what an interrupted run appended after its last commit
    if (::ftruncate(pcm_fd_, static_cast<off_t>(committed)) != 0 || ::fsync(pcm_fd_) != 0)
      fail_errno(pcm, "cannot truncate the uncommitted tail");
    truncated_on_open_ = st.st_size - committed;
  }
  pcm_bytes_ = committed;
  for (CacheEntry& e : schema::load_items(*db_)) items_.emplace(e.id, std::move(e));
  for (CacheFailure& f : schema::load_failures(*db_)) failures_.emplace(f.id, std::move(f));
}

void CacheWriter::close_files() {
  db_.reset();
  if (pcm_fd_ >= 0) ::close(pcm_fd_);
  pcm_fd_ = -1;
}

CacheWriter::~CacheWriter() {
  try {
    commit();
  } catch (const std::exception&) {
    // Nothing to do here: the uncommitted rows are lost and their PCM is cut off on the next
    // open; callers that care call commit() themselves.
  }
  close_files();
}

void CacheWriter::begin_if_needed() {
  if (in_transaction_) return;
  db_->exec("BEGIN IMMEDIATE");
  in_transaction_ = true;
  batch_start_ = WallClock::now();
}

void CacheWriter::put(CacheEntry meta, const float* samples, int64_t n) {
  const std::vector<uint16_t> words = encode(samples, n, settings_.dtype);
  const size_t bytes = words.size() * sizeof(uint16_t);
  const auto* raw = reinterpret_cast<const Bytef*>(words.data());
  meta.checksum = static_cast<uint32_t>(crc32_z(crc32_z(0L, Z_NULL, 0), raw, bytes));
  meta.offset = pcm_bytes_ / static_cast<int64_t>(bytes_per_sample(settings_.dtype));
  meta.length = n;

  begin_if_needed();
  const std::string pcm = in_dir(dir_, schema::kPcmFile);
  pwrite_all(pcm_fd_, words.data(), bytes, pcm_bytes_, pcm);
  pcm_bytes_ += static_cast<int64_t>(bytes);  // from here on, a failure below leaves dead space
  SqliteStmt ins(*db_,
                 "INSERT OR REPLACE INTO items (id, path, \"offset\", length, source_size, source_mtime_ns, checksum,"
                 " source_seconds, offset_seconds, codec, warning, decoder) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
  ins.bind(1, meta.id).bind(2, meta.path).bind(3, meta.offset).bind(4, meta.length).bind(5, meta.source_size);
  ins.bind(6, meta.source_mtime_ns).bind(7, static_cast<int64_t>(meta.checksum)).bind(8, meta.source_seconds);
  ins.bind(9, meta.offset_seconds).bind(10, meta.codec).bind(11, meta.warning).bind(12, int64_t{meta.decoder}).run();
  SqliteStmt del(*db_, "DELETE FROM failures WHERE id = ?");
  del.bind(1, meta.id).run();

  failures_.erase(meta.id);
  const std::string id = meta.id;
  items_.insert_or_assign(id, std::move(meta));
  ++pending_;
  commit_if_due();
}

void CacheWriter::put_failure(const CacheFailure& f) {
  begin_if_needed();
  SqliteStmt ins(*db_,
                 "INSERT OR REPLACE INTO failures (id, path, source_size, source_mtime_ns, reason)"
                 " VALUES (?, ?, ?, ?, ?)");
  ins.bind(1, f.id).bind(2, f.path).bind(3, f.source_size).bind(4, f.source_mtime_ns).bind(5, f.reason).run();
  SqliteStmt del(*db_, "DELETE FROM items WHERE id = ?");  // its old PCM becomes dead space
  del.bind(1, f.id).run();
  items_.erase(f.id);
  failures_.insert_or_assign(f.id, f);
  ++pending_;
  commit_if_due();
}

void CacheWriter::commit_if_due() {
  if (!in_transaction_) return;
  const double held = seconds_since(batch_start_);
  if (pending_ >= kBatchItems || held >= kBatchSeconds) commit();
}

void CacheWriter::commit() {
  if (!in_transaction_) return;
  // The PCM first: once COMMIT returns, the rows point at bytes that are already durable.
  if (::fdatasync(pcm_fd_) != 0) fail_errno(in_dir(dir_, schema::kPcmFile), "fdatasync failed");
  schema::set_meta(*db_, "pcm_bytes", std::to_string(pcm_bytes_));
  db_->exec("COMMIT");
  in_transaction_ = false;
  committed_puts_ += pending_;
  pending_ = 0;
}

int64_t CacheWriter::live_bytes() const {
  int64_t samples = 0;
  for (const auto& [id, e] : items_) samples += e.length;
  return samples * static_cast<int64_t>(bytes_per_sample(settings_.dtype));
}

// Compaction, crash-safe in four steps:
//   1. copy the live items into pcm.bin.compact and fsync it;
//   2. commit their new offsets, the new pcm_bytes and meta compact_pending = 1 in one
//      transaction (from here on the index describes pcm.bin.compact; a reader that finds
//      compact_pending and the file maps it instead of pcm.bin);
//   3. rename pcm.bin.compact over pcm.bin and sync the directory;
//   4. delete compact_pending.
// Stopped before 2, the next writer deletes the stray copy; stopped after 2, it redoes 3-4.
void CacheWriter::compact() {
  commit();
  if (dead_bytes() == 0) return;
  const std::string pcm = in_dir(dir_, schema::kPcmFile), tmp = in_dir(dir_, schema::kCompactFile);
  const auto bps = static_cast<int64_t>(bytes_per_sample(settings_.dtype));

  std::vector<CacheEntry*> order;
  for (auto& [id, e] : items_) order.push_back(&e);
  std::sort(order.begin(), order.end(), [](const CacheEntry* a, const CacheEntry* b) { return a->offset < b->offset; });
  std::vector<int64_t> new_offset(order.size());

  const int out = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (out < 0) fail_errno(tmp, "cannot create");
  int64_t written = 0;
  try {
    std::vector<char> buf(size_t{1} << 20);
    for (size_t k = 0; k < order.size(); ++k) {
      new_offset[k] = written / bps;
      int64_t from = order[k]->offset * bps, left = order[k]->length * bps;
      while (left > 0) {
        const size_t chunk = static_cast<size_t>(std::min<int64_t>(left, static_cast<int64_t>(buf.size())));
        pread_all(pcm_fd_, buf.data(), chunk, from, pcm);
        pwrite_all(out, buf.data(), chunk, written, tmp);
        from += static_cast<int64_t>(chunk);
        written += static_cast<int64_t>(chunk);
        left -= static_cast<int64_t>(chunk);
      }
    }
    if (::fdatasync(out) != 0) fail_errno(tmp, "fdatasync failed");
  } catch (...) {
    ::close(out);
    ::unlink(tmp.c_str());
    throw;
  }
  ::close(out);

  db_->exec("BEGIN IMMEDIATE");
  {
    SqliteStmt up(*db_, "UPDATE items SET \"offset\" = ? WHERE id = ?");
    for (size_t k = 0; k < order.size(); ++k) up.bind(1, new_offset[k]).bind(2, order[k]->id).run();
  }
  schema::set_meta(*db_, "pcm_bytes", std::to_string(written));
  schema::set_meta(*db_, "compact_pending", "1");
  db_->exec("COMMIT");
  for (size_t k = 0; k < order.size(); ++k) order[k]->offset = new_offset[k];
  pcm_bytes_ = written;

  ::close(pcm_fd_);
  pcm_fd_ = -1;
  finish_compaction();
  pcm_fd_ = ::open(pcm.c_str(), O_RDWR | O_CLOEXEC);
  if (pcm_fd_ < 0) fail_errno(pcm, "cannot reopen after compaction");
}

void CacheWriter::finish_compaction() {
  const std::string pcm = in_dir(dir_, schema::kPcmFile), tmp = in_dir(dir_, schema::kCompactFile);
  std::error_code ec;
  if (fs::exists(tmp, ec)) {  // absent: step 3 was done, only step 4 is left
    if (::rename(tmp.c_str(), pcm.c_str()) != 0) fail_errno(pcm, "cannot rename " + tmp + " over it");
    sync_dir(dir_);
  }
  schema::delete_meta(*db_, "compact_pending");
}

}  // namespace mg::audio
