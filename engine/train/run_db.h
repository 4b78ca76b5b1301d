// The results database of training runs: one SQLite file that any SQLite client can read.
//
// Schema (version kSchemaVersion, stored in PRAGMA user_version):
//   runs(id INTEGER PRIMARY KEY, name TEXT, config TEXT (the run's TOML), seed INTEGER,
//        device TEXT, git_commit TEXT, started_at TEXT, ended_at TEXT (NULL while running),
//        status TEXT: running | finished | interrupted | failed | diverged, message TEXT)
//   metrics(run INTEGER REFERENCES runs(id), step INTEGER, name TEXT, value REAL, time REAL)
//        index metrics_run_name_step (run, name, step)
// Times: started_at / ended_at are UTC ISO 8601 text ("2024-05-01T12:34:56.789Z");
// metrics.time is Unix seconds (REAL; datetime(time, 'unixepoch') in SQL). A NaN value is
// stored as NULL (SQLite has no NaN); +-inf are stored as such. (The column is git_commit,
// not commit: COMMIT is an SQL keyword that every reader would have to quote.)
//
// Durability: WAL journal, synchronous = FULL, every write in one transaction. log() only
// buffers; flush() writes the buffer in one transaction, so a crash loses at most the metrics
// logged since the last flush and never leaves a partial write. Other processes may read
// (sqlite3 CLI, Python) while a run writes; concurrent writers wait up to busy_timeout_ms.
//
// metrics.jsonl (mirror_to_jsonl): the same, as JSON lines for tools that tail a run, written
// after each commit, one line per metric and per run event:
//   {"run":1,"step":10,"name":"train.loss","value":0.53,"time":1765100000.125}   (value null: NaN or +-inf)
//   {"event":"begin","run":1,"name":"...","seed":0,"device":"cpu","time":...}
//   {"event":"resume","run":1,"from_step":200,"time":...}: lines of run 1 with step > 200 written
//        before it are superseded (the resumed run logs those steps again)
//   {"event":"end","run":1,"status":"finished","message":"...","time":...}
//
// Errors throw RunDbError naming the database file and the SQL operation that failed.
// A RunDb is one connection: use it from one thread at a time.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

namespace mg {

class SqliteDb;  // engine/sqlite/sqlite_db.h
class LineLog;   // engine/io/line_log.h

struct RunDbError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum class RunStatus { Running, Finished, Interrupted, Failed, Diverged };
const char* to_string(RunStatus s);
// Throws RunDbError for an unknown name.
RunStatus parse_run_status(std::string_view s);

struct RunInfo {
  std::string name;
  std::string config;  // TOML (to_toml(config))
  uint64_t seed = 0;
  std::string device;  // e.g. "cpu" or "cuda:0 (NVIDIA H200)"
  std::string git_commit;  // empty: the build's commit (MELGRAPH_GIT_COMMIT, "unknown" outside git)
};

struct RunRecord {
  int64_t id = 0;
  RunInfo info;
  std::string started_at;
  std::optional<std::string> ended_at;
  RunStatus status = RunStatus::Running;
  std::string message;
};

struct MetricRow {
  int64_t run = 0, step = 0;
  std::string name;
  double value = 0;  // NaN when stored as NULL
  double time = 0;   // Unix seconds
};

class RunDb {
 public:
  static constexpr int kSchemaVersion = 1;

  // ReadOnly: for readers (melgraph report, the Python module): the file must exist and hold
  // the schema; nothing is created or written (no journal-mode switch either), so a run
  // directory on a read-only file system or an archived copy can be read, and a reader never
  // changes the file a run is writing. Writes through such a RunDb fail with RunDbError.
  enum class Access { ReadWrite, ReadOnly };

  // Opens (ReadWrite: creating it and its schema if missing) the database at `path`. Refuses a
  // file written by a newer schema version, and a file that has tables but no melgraph schema.
  static constexpr int kBusyTimeoutMs = 10000;
  explicit RunDb(const std::string& path, int busy_timeout_ms = kBusyTimeoutMs, Access access = Access::ReadWrite);
  RunDb(const std::string& path, Access access) : RunDb(path, kBusyTimeoutMs, access) {}
  // Flushes buffered metrics; errors there are swallowed (destructors cannot throw): call
  // flush() or end_run() to see them.
  ~RunDb();
  RunDb(const RunDb&) = delete;
  RunDb& operator=(const RunDb&) = delete;

  const std::string& path() const { return path_; }

  // A new run with status running; returns its id.
  int64_t begin_run(const RunInfo& info);
  // Continues run `id` (after --resume from a checkpoint at `from_step`): status back to
  // running, ended_at cleared, and the metrics with step > from_step deleted, since the
  // resumed run logs those steps again. Works from any status: a run whose process was killed
  // is still marked running. Returns the status it had. Throws RunDbError for an unknown id.
  RunStatus resume_run(int64_t id, int64_t from_step);
  // Flushes buffered metrics and sets the final status, ended_at and message, in one
  // transaction. The run must be running (RunDbError otherwise, e.g. when ended twice) and
  // `status` must not be Running.
  void end_run(int64_t id, RunStatus status, std::string_view message = {});

  // Buffers one metric (time = now). Nothing is written until flush(). Throws RunDbError,
  // buffering nothing, when run `run` does not exist (its row could never be written).
  void log(int64_t run, int64_t step, std::string_view name, double value);
  // Writes the buffered metrics in one transaction and empties the buffer; on failure the
  // buffer is kept (a later flush retries) and RunDbError is thrown. The one exception: the
  // metrics of a run deleted since they were logged are dropped and named in the error.
  void flush();
  size_t pending() const { return buffer_.size(); }
  // From now on, mirrors what is committed to `path` as JSON lines (the format above),
  // appending to what the file holds. A mirror line that cannot be written throws RunDbError
  // naming that file; the database has the rows then.
  void mirror_to_jsonl(const std::string& path);

  // Readers (for tests, eval and reports).
  std::optional<RunRecord> run(int64_t id) const;
  std::vector<RunRecord> runs() const;
  // The run's metrics ordered by (name, step, rowid); all names when `name` is empty.
  std::vector<MetricRow> metrics(int64_t run, std::string_view name = {}) const;

 private:
  RunStatus status_of(int64_t id, const char* what) const;
  bool run_exists(int64_t id, const char* what) const;
  void drop_metrics_of_missing_runs();
  void insert_buffer();
  void mirror(const std::vector<MetricRow>& rows);
  void mirror_event(const std::string& json_line);

  std::string path_;
  std::unique_ptr<SqliteDb> db_;
  std::vector<MetricRow> buffer_;
  std::unique_ptr<LineLog> jsonl_;          // null: no mirror
  std::unordered_set<int64_t> known_runs_;  // seen to exist: log() looks up only the others
};

}  // namespace mg
