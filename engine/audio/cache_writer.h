// Appends decoded items to an audio cache (layout in audio_cache.h). One writer per cache at
// a time, and no reader opening it meanwhile: the writer holds the cache's lock file
// exclusively (AudioCache::open takes it shared); one thread drives it.
//
// Crash safety. put() appends an item's PCM to pcm.bin and adds its row to an open SQLite
// transaction; commit() first fdatasync()s pcm.bin, then commits the rows together with the
// new meta.pcm_bytes. So a committed row never points at bytes that were not on disk, and a
// run killed at any point (kill -9, power loss) leaves the index of its last commit. The
// bytes it appended after that commit lie past meta.pcm_bytes; the next writer to open the
// cache truncates them away (truncated_on_open()).
//
// Batching: rows are committed every kBatchItems items or kBatchSeconds, whichever comes
// first, so a collection of small files does not pay one fsync per file.
#pragma once
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>

#include "engine/audio/audio_cache.h"
#include "engine/io/file_lock.h"
#include "engine/sqlite/sqlite_db.h"

namespace mg::audio {

class CacheWriter {
 public:
  static constexpr int kBatchItems = 64;
  static constexpr double kBatchSeconds = 0.5;

  // Opens the cache in `dir` (creating the directory and an empty cache when there is none)
  // for appending. A cache made with other settings throws CacheError naming the setting.
  // rebuild: deletes the cache's own files (pcm.bin, index.sqlite and its journal) first.
  // Finishes a compaction that was interrupted after it committed. Waits while another
  // process writes the cache or opens it to read; `waiting` is told by whom first.
  CacheWriter(const std::string& dir, const CacheSettings& settings, bool rebuild,
              const FileLock::WaitNotice& waiting = {});
  ~CacheWriter();  // commits what is pending; errors there are lost, so call commit() first
  CacheWriter(const CacheWriter&) = delete;
  CacheWriter& operator=(const CacheWriter&) = delete;

  const std::string& dir() const { return dir_; }
  const CacheSettings& settings() const { return settings_; }
  // The index as it stands: committed rows plus those put() since the last commit.
  const std::unordered_map<std::string, CacheEntry>& items() const { return items_; }
  const std::unordered_map<std::string, CacheFailure>& failures() const { return failures_; }

  // Appends samples [n] (float, clamped to [-1, 1] for int16) as the item `meta.id`,
  // replacing an earlier item or failure of that id; offset, length and checksum are set
  // here. Commits when a batch is due.
  void put(CacheEntry meta, const float* samples, int64_t n);
  // Records a failure, replacing an earlier item or failure of that id.
  void put_failure(const CacheFailure& f);
  // Makes everything put so far durable: fdatasync(pcm.bin), then COMMIT.
  void commit();
  // Commits when the open batch holds kBatchItems or is kBatchSeconds old (put() calls it;
  // an idle caller may too, so a slow decode does not hold finished items uncommitted).
  void commit_if_due();
  int64_t pending() const { return pending_; }
  int64_t committed_puts() const { return committed_puts_; }  // put + put_failure calls committed

  int64_t pcm_bytes() const { return pcm_bytes_; }    // bytes appended (dead space included)
  int64_t live_bytes() const;                         // bytes the index points at
  int64_t dead_bytes() const { return pcm_bytes_ - live_bytes(); }
  int64_t truncated_on_open() const { return truncated_on_open_; }  // an interrupted run's tail

  // Rewrites pcm.bin with the live items only, in their current order. Crash-safe: the new
  // file is complete and synced before the index switches to it (see cache_writer.cpp).
  void compact();

 private:
  void open_files(bool rebuild);
  void close_files();
  void begin_if_needed();
  void finish_compaction();

  std::string dir_;
  CacheSettings settings_;
  std::unique_ptr<SqliteDb> db_;
  FileLock lock_;  // the cache's lock file, exclusive while this writer lives
  int pcm_fd_ = -1;
  int64_t pcm_bytes_ = 0;
  int64_t truncated_on_open_ = 0;
  std::unordered_map<std::string, CacheEntry> items_;
  std::unordered_map<std::string, CacheFailure> failures_;
  bool in_transaction_ = false;
  int64_t pending_ = 0, committed_puts_ = 0;
  std::chrono::steady_clock::time_point batch_start_;
};

}  // namespace mg::audio
