#include "engine/audio/prepare.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <exception>
#include <filesystem>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "engine/audio/cache_schema.h"
#include "engine/audio/cache_writer.h"
#include "engine/audio/decode.h"
#include "engine/io/progress_line.h"
#include "engine/io/stop_point.h"
#include "engine/timer.h"

namespace mg::audio {

namespace {

struct SourceStat {
  int64_t size = -1, mtime_ns = 0;  // size -1: stat failed (missing file); the decode says why
};

SourceStat stat_source(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return {};
  return {static_cast<int64_t>(st.st_size),
          static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + static_cast<int64_t>(st.st_mtim.tv_nsec)};
}

struct Job {
  size_t item;  // index into the items
  SourceStat stat;
};

struct Result {
  size_t job = 0;
  bool ok = false;
  DecodedAudio audio;
  std::string reason;
};

// Finished decodes on their way from the workers to the writer. Bounded, so that fast
// decoders cannot pile up decoded audio faster than the writer stores it.
class ResultQueue {
 public:
  explicit ResultQueue(size_t capacity) : capacity_(capacity) {}
  // False when the queue was closed (the writer gave up): the worker stops.
  bool push(Result r) {
    std::unique_lock lock(mu_);
    not_full_.wait(lock, [&] { return q_.size() < capacity_ || closed_; });
    if (closed_) return false;
    q_.push_back(std::move(r));
    not_empty_.notify_one();
    return true;
  }
  // Waits up to `wait` for a result.
  bool pop(Result* r, std::chrono::milliseconds wait) {
    std::unique_lock lock(mu_);
    if (!not_empty_.wait_for(lock, wait, [&] { return !q_.empty(); })) return false;
    *r = std::move(q_.front());
    q_.pop_front();
    not_full_.notify_one();
    return true;
  }
  void close() {
    std::lock_guard lock(mu_);
    closed_ = true;
    not_full_.notify_all();
  }
  bool closed() {
    std::lock_guard lock(mu_);
    return closed_;
  }

 private:
  std::mutex mu_;
  std::condition_variable not_full_, not_empty_;
  std::deque<Result> q_;
  size_t capacity_;
  bool closed_ = false;
};

// The decoding threads: each takes the next job, decodes it and queues the result. Joined
// (after closing the queue) by the destructor, also when the writer throws.
class DecodePool {
 public:
  DecodePool(const std::vector<PrepareItem>& items, const std::vector<Job>& jobs, const DecodeRequest& request,
             int threads, ResultQueue& queue)
      : items_(items), jobs_(jobs), request_(request), queue_(queue) {
    for (int t = 0; t < threads; ++t) threads_.emplace_back([this] { run(); });
  }
  ~DecodePool() {
    queue_.close();
    for (std::thread& t : threads_) t.join();
  }

 private:
  void run() {
    for (;;) {
      const size_t j = next_.fetch_add(1);
      if (j >= jobs_.size() || queue_.closed()) return;
      Result r;
      r.job = j;
      const std::string& path = items_[jobs_[j].item].path;
      try {
        r.audio = decode_audio(path, request_);
        r.ok = true;
      } catch (const AudioError& e) {
        r.reason = e.reason;
      } catch (const std::exception& e) {  // e.g. out of memory on a huge excerpt
        r.reason = e.what();
      }
      if (!queue_.push(std::move(r))) return;
    }
  }

  const std::vector<PrepareItem>& items_;
  const std::vector<Job>& jobs_;
  const DecodeRequest request_;
  ResultQueue& queue_;
  std::atomic<size_t> next_{0};
  std::vector<std::thread> threads_;
};

int64_t crash_hook_from_env() {
  const char* v = std::getenv("MELGRAPH_PREPARE_CRASH_AFTER");
  if (!v || !*v) return 0;
  char* end = nullptr;
  const long long n = std::strtoll(v, &end, 10);
  return end && *end == '\0' && n > 0 ? n : 0;
}

std::string progress_text(size_t done, size_t total, int64_t failed, double seconds, double wall) {
  char buf[200];
  std::snprintf(buf, sizeof buf, "prepare: %zu/%zu items, %lld failed, %.2f h audio, %.0fx realtime, ", done, total,
                static_cast<long long>(failed), seconds / 3600.0, wall > 0 ? seconds / wall : 0.0);
  return buf + rate_and_eta(static_cast<int64_t>(done), static_cast<int64_t>(total), wall, "items");
}

// What a run must decode: everything not already cached (or failed) from the same file, and
// what an older decoder than this one decoded differently (schema::decoder_revision_needed).
struct Plan {
  std::vector<Job> jobs;
  int64_t unchanged = 0, failed_earlier = 0;
  std::vector<PrepareIssue> earlier_failures;
};

// find_item(id) / find_failure(id): the cache's row for the id, or null.
template <class FindItem, class FindFailure>
Plan plan_jobs(const std::vector<PrepareItem>& items, const FindItem& find_item, const FindFailure& find_failure) {
  Plan plan;
  for (size_t i = 0; i < items.size(); ++i) {
    const PrepareItem& it = items[i];
    const SourceStat st = stat_source(it.path);
    const auto same = [&](const auto& row) {
      return row.path == it.path && row.source_size == st.size && row.source_mtime_ns == st.mtime_ns;
    };
    const auto current = [](const CacheEntry& e) { return e.decoder >= schema::decoder_revision_needed(e.codec); };
    if (const CacheEntry* c = find_item(it.id); c && same(*c) && current(*c)) {
      ++plan.unchanged;
    } else if (const CacheFailure* f = find_failure(it.id); f && same(*f)) {
      ++plan.failed_earlier;
      plan.earlier_failures.push_back({it.id, it.path, f->reason, true});
    } else {
      plan.jobs.push_back({i, st});
    }
  }
  return plan;
}

// The summary's count of the cache's items: those of the catalog, the others, their audio.
// Returns their samples. `for_each_entry(f)` calls f(const CacheEntry&) for every entry (a
// callback rather than a std::views pipeline: clang 14 cannot compile libstdc++ 12's views).
template <class ForEachEntry>
int64_t count_cached(const std::vector<PrepareItem>& items, const ForEachEntry& for_each_entry, int sample_rate,
                     PrepareSummary* s) {
  std::unordered_set<std::string> ids;
  for (const PrepareItem& it : items) ids.insert(it.id);
  int64_t samples = 0;
  for_each_entry([&](const CacheEntry& e) {
    samples += e.length;
    if (ids.count(e.id))
      ++s->usable;
    else
      ++s->not_in_catalog;
  });
  s->cache_seconds = static_cast<double>(samples) / sample_rate;
  return samples;
}

bool compaction_due(int64_t dead, int64_t pcm_bytes, bool asked) {
  return dead > 0 && (asked || static_cast<double>(dead) > kAutoCompactDeadFraction * static_cast<double>(pcm_bytes));
}

FileLock::WaitNotice wait_notice(FILE* out, const std::string& dir) {
  if (!out) return {};
  return [out, dir](const std::string& holder) {
    std::fprintf(out, "prepare: the audio cache %s is in use by %s: waiting for it\n", dir.c_str(), holder.c_str());
    std::fflush(out);
  };
}

// A warm cache is only read: when every item is cached or failed from the same file and no
// compaction is due, nothing needs writing, so the writer's exclusive lock is not taken and
// trainings and exports that start together on one cache do not shut each other out.
// nullopt: the writer's path has work to do (or a cache that does not open as it stands).
std::optional<PrepareSummary> read_warm(const std::vector<PrepareItem>& items, const AudioConfig& audio,
                                        const std::string& dir, const PrepareOptions& options) {
  std::error_code ec;
  if (options.rebuild || !std::filesystem::is_regular_file(std::filesystem::path(dir) / schema::kIndexFile, ec))
    return std::nullopt;
  std::optional<AudioCache> cache;
  try {
    cache.emplace(AudioCache::open(dir, wait_notice(options.progress, dir)));
  } catch (const CacheError&) {
    return std::nullopt;  // the writer repairs it or says what is wrong
  }
  PrepareSummary s;
  s.dir = dir;
  s.settings = cache_settings(audio);
  s.catalog_items = static_cast<int64_t>(items.size());
  schema::check_same(cache->settings(), s.settings, dir);
  std::unordered_map<std::string, const CacheFailure*> failures;
  for (const CacheFailure& f : cache->failures()) failures.emplace(f.id, &f);
  Plan plan = plan_jobs(
      items,
      [&](const std::string& id) {
        const int64_t i = cache->find(id);
        return i < 0 ? nullptr : &cache->entry(i);
      },
      [&](const std::string& id) {
        const auto f = failures.find(id);
        return f == failures.end() ? nullptr : f->second;
      });
  const auto entries = [&](const auto& f) {
    for (int64_t i = 0; i < cache->size(); ++i) f(cache->entry(i));
  };
  const int64_t live_samples = count_cached(items, entries, audio.sample_rate, &s);
  const int64_t dead = cache->pcm_bytes() - live_samples * static_cast<int64_t>(bytes_per_sample(s.settings.dtype));
  if (!plan.jobs.empty() || compaction_due(dead, cache->pcm_bytes(), options.compact)) return std::nullopt;
  s.unchanged = plan.unchanged;
  s.failed_earlier = plan.failed_earlier;
  for (PrepareIssue& issue : plan.earlier_failures) s.failures.push_back(std::move(issue));
  s.pcm_bytes = cache->pcm_bytes();
  s.dead_bytes = dead;
  return s;
}

}  // namespace

PrepareSummary prepare_cache(const std::vector<PrepareItem>& requested, const AudioConfig& audio,
                             const std::string& out_dir, const PrepareOptions& options) {
  // The cache records every source by its absolute path: a training run that names the catalog
  // relative to the working directory and an export that names it otherwise then find the
  // same rows instead of decoding everything again.
  std::vector<PrepareItem> items = requested;
  for (PrepareItem& it : items) it.path = std::filesystem::absolute(it.path).lexically_normal().string();
  const auto t0 = WallClock::now();
  const auto wall = [&] { return seconds_since(t0); };
  PrepareSummary s;
  s.dir = out_dir;
  s.settings = cache_settings(audio);
  s.catalog_items = static_cast<int64_t>(items.size());
  if (std::optional<PrepareSummary> warm = read_warm(items, audio, out_dir, options)) {
    warm->wall_seconds = wall();
    return *warm;
  }
  CacheWriter writer(out_dir, s.settings, options.rebuild, wait_notice(options.progress, out_dir));
  s.truncated_on_open = writer.truncated_on_open();

  Plan plan = plan_jobs(
      items,
      [&](const std::string& id) {
        const auto c = writer.items().find(id);
        return c == writer.items().end() ? nullptr : &c->second;
      },
      [&](const std::string& id) {
        const auto f = writer.failures().find(id);
        return f == writer.failures().end() ? nullptr : &f->second;
      });
  s.unchanged = plan.unchanged;
  s.failed_earlier = plan.failed_earlier;
  const std::vector<Job>& jobs = plan.jobs;

  const int64_t crash_after = crash_hook_from_env();
  std::vector<std::pair<size_t, PrepareIssue>> failed, warned;  // (catalog index, issue)
  ProgressLine progress(options.progress);
  if (!jobs.empty()) {
    int threads = options.threads > 0 ? options.threads : static_cast<int>(std::thread::hardware_concurrency());
    threads = std::clamp(threads, 1, static_cast<int>(std::min<size_t>(jobs.size(), 4096)));
    ResultQueue queue(static_cast<size_t>(threads));
    const DecodeRequest request = decode_request(audio);
    DecodePool pool(items, jobs, request, threads, queue);
    size_t done = 0;
    while (done < jobs.size()) {
      Result r;
      if (!queue.pop(&r, std::chrono::milliseconds(200))) {  // a slow decode: commit what is done
        writer.commit_if_due();
        progress.update(progress_text(done, jobs.size(), s.failed, s.decoded_seconds, wall()));
        continue;
      }
      ++done;
      const Job& job = jobs[r.job];
      const PrepareItem& it = items[job.item];
      if (r.ok) {
        CacheEntry e;
        e.id = it.id;
        e.path = it.path;
        e.source_size = job.stat.size;
        e.source_mtime_ns = job.stat.mtime_ns;
        e.source_seconds = r.audio.source_seconds;
        e.offset_seconds = r.audio.offset_seconds;
        e.codec = r.audio.codec;
        e.warning = r.audio.warning;
        e.decoder = schema::kDecoderRevision;
        writer.put(std::move(e), r.audio.samples.data(), static_cast<int64_t>(r.audio.samples.size()));
        ++s.decoded;
        s.decoded_seconds += static_cast<double>(r.audio.samples.size()) / audio.sample_rate;
        if (!r.audio.warning.empty()) warned.push_back({job.item, {it.id, it.path, r.audio.warning, false}});
      } else {
        writer.put_failure({it.id, it.path, job.stat.size, job.stat.mtime_ns, r.reason});
        ++s.failed;
        failed.push_back({job.item, {it.id, it.path, r.reason, false}});
      }
      stop_point("prepare.item");  // kill tests: mid-decoding, the item maybe not committed yet
      if (crash_after > 0) {  // the test hook (see prepare.h)
        if (writer.committed_puts() >= crash_after) ::_exit(137);
        if (writer.committed_puts() + writer.pending() >= crash_after) writer.commit();
      }
      progress.update(progress_text(done, jobs.size(), s.failed, s.decoded_seconds, wall()), done == jobs.size());
    }
    progress.finish();
  }
  writer.commit();
  if (crash_after > 0 && writer.committed_puts() >= crash_after) ::_exit(137);

  const auto by_catalog = [](const auto& a, const auto& b) { return a.first < b.first; };
  std::sort(failed.begin(), failed.end(), by_catalog);
  std::sort(warned.begin(), warned.end(), by_catalog);
  for (auto& [i, issue] : failed) s.failures.push_back(std::move(issue));
  for (PrepareIssue& issue : plan.earlier_failures) s.failures.push_back(std::move(issue));
  for (auto& [i, issue] : warned) s.warnings.push_back(std::move(issue));

  count_cached(
      items,
      [&](const auto& f) {
        for (const auto& [id, entry] : writer.items()) f(entry);
      },
      audio.sample_rate, &s);

  const int64_t dead = writer.dead_bytes();
  if (compaction_due(dead, writer.pcm_bytes(), options.compact)) {
    writer.compact();
    s.compacted_bytes = dead;
  }
  s.pcm_bytes = writer.pcm_bytes();
  s.dead_bytes = writer.dead_bytes();
  s.wall_seconds = wall();
  return s;
}

}  // namespace mg::audio
