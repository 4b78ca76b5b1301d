#include "engine/train/run_db.h"

#include <unistd.h>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <utility>

#include "build_info.h"
#include "engine/io/json_text.h"
#include "engine/io/line_log.h"
#include "engine/sqlite/sqlite_db.h"

namespace mg {

namespace {

constexpr const char* kStatusNames[] = {"running", "finished", "interrupted", "failed", "diverged"};

const char* const kSchema = R"sql(
CREATE TABLE runs (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  config TEXT NOT NULL,
  seed INTEGER NOT NULL,
  device TEXT NOT NULL,
  git_commit TEXT NOT NULL,
  started_at TEXT NOT NULL,
  ended_at TEXT,
  status TEXT NOT NULL CHECK (status IN ('running', 'finished', 'interrupted', 'failed', 'diverged')),
  message TEXT NOT NULL DEFAULT ''
);
CREATE TABLE metrics (
  run INTEGER NOT NULL REFERENCES runs(id),
  step INTEGER NOT NULL,
  name TEXT NOT NULL,
  value REAL,
  time REAL NOT NULL
);
CREATE INDEX metrics_run_name_step ON metrics (run, name, step);
)sql";

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string error_text(const std::string& path, const std::string& what, const SqliteError& e) {
  return "run database " + path + ": " + what + ": " + e.reason() + " (SQLite error " + std::to_string(e.code()) + ")";
}

// Runs the SQLite work f, whose errors then read as RunDbError naming the file and `what`.
template <class F>
decltype(auto) named(const std::string& path, const std::string& what, F&& f) {
  try {
    return f();
  } catch (const SqliteError& e) {
    throw RunDbError(error_text(path, what, e));
  }
}

void exec(SqliteDb& db, const std::string& sql, const std::string& what) {
  named(db.path(), what, [&] { db.exec(sql); });
}

// For the queries that always return one row (PRAGMA, count(*)).
void step_to_row(SqliteStmt& st, const std::string& path, const std::string& what) {
  if (!st.step()) throw RunDbError("run database " + path + ": " + what + ": no row returned");
}

std::optional<std::string> optional_text(const SqliteStmt& st, int col) {
  if (st.is_null(col)) return std::nullopt;
  return st.text(col);
}

// SQLite has no NaN: a NaN metric is stored as NULL, and read back as NaN.
double real_or_nan(const SqliteStmt& st, int col) {
  return st.is_null(col) ? std::numeric_limits<double>::quiet_NaN() : st.real(col);
}

// BEGIN IMMEDIATE takes the write lock up front (waiting up to the busy timeout), so a
// transaction never fails half-way on lock upgrade; leaving scope without commit() (an
// exception) rolls back.
class Transaction {
 public:
  explicit Transaction(SqliteDb& db) : db_(db) { exec(db_, "BEGIN IMMEDIATE", "BEGIN IMMEDIATE (write lock)"); }
  ~Transaction() {
    if (done_) return;
    try {
      db_.exec("ROLLBACK");
    } catch (const SqliteError&) {
      // Some errors end the transaction themselves: then there is nothing left to roll back.
    }
  }
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  void commit() {
    exec(db_, "COMMIT", "COMMIT");
    done_ = true;
  }

 private:
  SqliteDb& db_;
  bool done_ = false;
};

// ---- open ----------------------------------------------------------------------------------

int64_t read_user_version(SqliteDb& db) {
  constexpr const char* what = "PRAGMA user_version";
  return named(db.path(), what, [&] {
    SqliteStmt st(db, what);
    step_to_row(st, db.path(), what);
    return st.int64(0);
  });
}

void refuse_newer_schema(const std::string& path, int64_t version) {
  if (version > RunDb::kSchemaVersion)
    throw RunDbError("run database " + path + " has schema version " + std::to_string(version) +
                     ", written by a newer melgraph; this build reads versions up to " +
                     std::to_string(RunDb::kSchemaVersion) + ": use a newer melgraph or another database file");
}

void switch_to_wal(SqliteDb& db) {
  constexpr const char* what = "PRAGMA journal_mode = WAL";
  const std::string mode = named(db.path(), what, [&] {
    SqliteStmt st(db, what);
    step_to_row(st, db.path(), what);
    return st.text(0);
  });
  if (mode != "wal" && db.path() != ":memory:")
    throw RunDbError("run database " + db.path() + ": " + what + ": the journal mode stayed '" + mode +
                     "' (WAL needs a local file system with shared memory): put the database on a local disk");
}

void create_schema_if_missing(SqliteDb& db) {
  Transaction tx(db);
  // Again under the write lock: another process may have created the schema meanwhile.
  constexpr const char* what = "read the schema version";
  const auto [version, objects] = named(db.path(), what, [&] {
    SqliteStmt st(db, "SELECT (SELECT user_version FROM pragma_user_version), (SELECT count(*) FROM sqlite_schema)");
    step_to_row(st, db.path(), what);
    return std::pair(st.int64(0), st.int64(1));
  });
  refuse_newer_schema(db.path(), version);
  if (version == 0) {
    if (objects > 0)
      throw RunDbError("run database " + db.path() + " already has " + std::to_string(objects) +
                       " tables or indexes but no melgraph schema version: it is not a melgraph run database; "
                       "choose another file");
    exec(db, kSchema, "create the schema (runs, metrics)");
    exec(db, "PRAGMA user_version = " + std::to_string(RunDb::kSchemaVersion), "PRAGMA user_version");
  }
  tx.commit();
}

// A reader of a WAL-mode database needs its shared-memory file (-shm), which a read-only
// connection cannot create in a read-only directory (an archived run, a read-only mount), and
// SQLite then refuses the first read with SQLITE_READONLY_DIRECTORY. With no -wal file there
// no writer can be at work either (it could not create one), and everything is in the main
// file: it is opened as immutable, which reads it without locks or -shm. A -wal file there
// holds commits that only a writable directory can replay (SQLite cannot open it then), and
// the error says so.
std::unique_ptr<SqliteDb> open_for_reading(const std::string& path, int busy_timeout_ms) {
  auto db =
      named(path, "open", [&] { return std::make_unique<SqliteDb>(path, SQLITE_OPEN_READONLY, busy_timeout_ms); });
  constexpr const char* what = "PRAGMA user_version";
  try {
    SqliteStmt probe(*db, what);
    probe.step();
    return db;
  } catch (const SqliteError& e) {
    db.reset();
    const std::filesystem::path wal = path + "-wal";
    std::error_code ec;
    const bool unreplayed = std::filesystem::exists(wal, ec) && std::filesystem::file_size(wal, ec) > 0;
    const std::filesystem::path parent = std::filesystem::path(path).parent_path();
    const bool dir_read_only = ::access(parent.empty() ? "." : parent.c_str(), W_OK) != 0;
    if (unreplayed && dir_read_only)
      throw RunDbError("run database " + path + ": its directory is read-only and " + wal.string() +
                       " holds commits not yet in the database file, which SQLite can only read from a writable "
                       "directory: copy the run directory somewhere writable and read the copy");
    if (e.code() != SQLITE_READONLY_DIRECTORY) throw RunDbError(error_text(path, what, e));
  }
  return named(path, "open (immutable: the directory is read-only)", [&] {
    return std::make_unique<SqliteDb>(
        SqliteDb::with_uri_parameters(path, SQLITE_OPEN_READONLY, "immutable=1", busy_timeout_ms));
  });
}

}  // namespace

const char* to_string(RunStatus s) { return kStatusNames[static_cast<int>(s)]; }

RunStatus parse_run_status(std::string_view s) {
  for (int i = 0; i < 5; ++i)
    if (s == kStatusNames[i]) return static_cast<RunStatus>(i);
  throw RunDbError("unknown run status '" + std::string(s) +
                   "' (expected running, finished, interrupted, failed or diverged)");
}

RunDb::RunDb(const std::string& path, int busy_timeout_ms, Access access) : path_(path) {
  if (access == Access::ReadOnly) {
    db_ = open_for_reading(path_, busy_timeout_ms);
    const int64_t version = read_user_version(*db_);
    refuse_newer_schema(path_, version);
    if (version == 0)
      throw RunDbError("run database " + path_ +
                       " has no melgraph schema: it is empty or not a run database (melgraph train writes runs.sqlite "
                       "into its data.run_dir)");
    return;
  }
  db_ = named(path_, "open", [&] {
    return std::make_unique<SqliteDb>(path_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, busy_timeout_ms);
  });
  // Read the version before writing anything (the journal-mode switch writes the header):
  // a newer file is refused untouched. Also the first read: a file that is not SQLite fails here.
  refuse_newer_schema(path_, read_user_version(*db_));
  switch_to_wal(*db_);
  exec(*db_, "PRAGMA synchronous = FULL", "PRAGMA synchronous = FULL");
  exec(*db_, "PRAGMA foreign_keys = ON", "PRAGMA foreign_keys = ON");
  create_schema_if_missing(*db_);
}

RunDb::~RunDb() {
  try {
    flush();
  } catch (...) {
    // Documented: a destructor cannot report; flush() and end_run() do.
  }
}

// ---- runs ----------------------------------------------------------------------------------

RunStatus RunDb::status_of(int64_t id, const char* what) const {
  const std::optional<std::string> status = named(path_, what, [&]() -> std::optional<std::string> {
    SqliteStmt st(*db_, "SELECT status FROM runs WHERE id = ?");
    st.bind(1, id);
    if (!st.step()) return std::nullopt;
    return st.text(0);
  });
  if (!status) throw RunDbError("run database " + path_ + ": " + what + ": no run with id " + std::to_string(id));
  return parse_run_status(*status);
}

bool RunDb::run_exists(int64_t id, const char* what) const {
  return named(path_, what, [&] {
    SqliteStmt st(*db_, "SELECT 1 FROM runs WHERE id = ?");
    st.bind(1, id);
    return st.step();
  });
}

int64_t RunDb::begin_run(const RunInfo& info) {
  constexpr const char* what = "INSERT INTO runs";
  if (info.seed > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    throw RunDbError("run database " + path_ + ": " + what + ": seed " + std::to_string(info.seed) +
                     " does not fit SQLite's signed 64-bit INTEGER");
  Transaction tx(*db_);
  const int64_t id = named(path_, what, [&] {
    SqliteStmt st(*db_,
                  "INSERT INTO runs (name, config, seed, device, git_commit, started_at, status, message) "
                  "VALUES (?, ?, ?, ?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 'running', '')");
    st.bind(1, info.name).bind(2, info.config).bind(3, static_cast<int64_t>(info.seed)).bind(4, info.device);
    st.bind(5, info.git_commit.empty() ? std::string_view(MELGRAPH_GIT_COMMIT) : std::string_view(info.git_commit));
    st.run();
    return db_->last_insert_rowid();
  });
  tx.commit();
  known_runs_.insert(id);
  // A run's name, device or message may hold a path that is not UTF-8: json_text replaces it.
  mirror_event(json_text(nlohmann::json{{"event", "begin"},
                                        {"run", id},
                                        {"name", info.name},
                                        {"seed", info.seed},
                                        {"device", info.device},
                                        {"time", unix_now()}}));
  return id;
}

RunStatus RunDb::resume_run(int64_t id, int64_t from_step) {
  Transaction tx(*db_);
  const RunStatus before = status_of(id, "resume run");
  named(path_, "DELETE FROM metrics (steps after the checkpoint)", [&] {
    SqliteStmt st(*db_, "DELETE FROM metrics WHERE run = ? AND step > ?");
    st.bind(1, id).bind(2, from_step).run();
  });
  named(path_, "UPDATE runs (resume)", [&] {
    SqliteStmt st(*db_, "UPDATE runs SET status = 'running', ended_at = NULL, message = '' WHERE id = ?");
    st.bind(1, id).run();
  });
  tx.commit();
  known_runs_.insert(id);
  // Buffered rows of the steps being redone would duplicate the new ones.
  std::erase_if(buffer_, [&](const MetricRow& m) { return m.run == id && m.step > from_step; });
  mirror_event(
      json_text(nlohmann::json{{"event", "resume"}, {"run", id}, {"from_step", from_step}, {"time", unix_now()}}));
  return before;
}

void RunDb::end_run(int64_t id, RunStatus status, std::string_view message) {
  if (status == RunStatus::Running)
    throw RunDbError("run database " + path_ + ": end run " + std::to_string(id) +
                     ": the final status cannot be 'running'");
  Transaction tx(*db_);
  const RunStatus now = status_of(id, "end run");
  if (now != RunStatus::Running)
    throw RunDbError("run database " + path_ + ": end run " + std::to_string(id) + " as " + to_string(status) +
                     ": the run is already " + to_string(now) + " (resume_run() reopens it)");
  insert_buffer();
  named(path_, "UPDATE runs (end)", [&] {
    SqliteStmt st(*db_,
                  "UPDATE runs SET status = ?, ended_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), message = ? "
                  "WHERE id = ?");
    st.bind(1, std::string_view(to_string(status))).bind(2, message).bind(3, id).run();
  });
  tx.commit();
  const std::vector<MetricRow> written = std::move(buffer_);
  buffer_.clear();
  mirror(written);
  mirror_event(json_text(nlohmann::json{
      {"event", "end"}, {"run", id}, {"status", to_string(status)}, {"message", message}, {"time", unix_now()}}));
}

// ---- metrics -------------------------------------------------------------------------------

void RunDb::log(int64_t run, int64_t step, std::string_view name, double value) {
  if (name.empty()) throw RunDbError("run database " + path_ + ": log: empty metric name (step " + std::to_string(step) + ")");
  // A row of a missing run could never be written, and kept in the buffer it would fail every
  // later flush: refuse it here. Runs begun, resumed or seen before cost no lookup.
  if (known_runs_.count(run) == 0) {
    if (!run_exists(run, "log: look up the run"))
      throw RunDbError("run database " + path_ + ": log " + std::string(name) + " at step " + std::to_string(step) +
                       ": no run with id " + std::to_string(run) + " (begin_run() or resume_run() it first)");
    known_runs_.insert(run);
  }
  buffer_.push_back(MetricRow{run, step, std::string(name), value, unix_now()});
}

namespace {

std::vector<int64_t> distinct_runs(const std::vector<MetricRow>& rows) {
  std::vector<int64_t> runs;
  for (const MetricRow& m : rows)
    if (std::find(runs.begin(), runs.end(), m.run) == runs.end()) runs.push_back(m.run);
  return runs;
}

// "3 buffered metrics (loss, val/recall@10)": the rows of run `run`, for an error message.
std::string describe_metrics_of(const std::vector<MetricRow>& rows, int64_t run) {
  std::vector<std::string_view> names;
  size_t count = 0;
  for (const MetricRow& m : rows) {
    if (m.run != run) continue;
    ++count;
    if (std::find(names.begin(), names.end(), m.name) == names.end()) names.push_back(m.name);
  }
  std::string out = std::to_string(count);
  out += " buffered metrics (";
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += ", ";
    out += names[i];
  }
  return out + ")";
}

}  // namespace

// Called in the flush's transaction, so that the runs checked cannot vanish before the insert.
void RunDb::drop_metrics_of_missing_runs() {
  std::string report;
  for (const int64_t run : distinct_runs(buffer_)) {
    if (run_exists(run, "INSERT INTO metrics: look up the run")) continue;
    // Deleted by another connection since log() checked it.
    known_runs_.erase(run);
    if (!report.empty()) report += "; ";
    report += std::string("no run with id ") + std::to_string(run) + " (deleted since): dropped its " +
              describe_metrics_of(buffer_, run);
    std::erase_if(buffer_, [&](const MetricRow& m) { return m.run == run; });
  }
  if (!report.empty())
    throw RunDbError("run database " + path_ + ": INSERT INTO metrics: " + report +
                     "; the other metrics stay buffered for the next flush");
}

void RunDb::insert_buffer() {
  if (buffer_.empty()) return;
  drop_metrics_of_missing_runs();
  const MetricRow* row = nullptr;  // the one being inserted, for the error
  try {
    SqliteStmt st(*db_, "INSERT INTO metrics (run, step, name, value, time) VALUES (?, ?, ?, ?, ?)");
    for (const MetricRow& m : buffer_) {
      row = &m;
      st.bind(1, m.run).bind(2, m.step).bind(3, m.name).bind(5, m.time);
      // Bound as NULL explicitly rather than through SQLite's silent conversion of NaN.
      if (std::isnan(m.value))
        st.bind_null(4);
      else
        st.bind(4, m.value);
      st.run();
    }
  } catch (const SqliteError& e) {
    std::string what("INSERT INTO metrics");
    if (row) what += std::string(" (run ") + std::to_string(row->run) + ", step " + std::to_string(row->step) + ", " + row->name + ")";
    throw RunDbError(error_text(path_, what, e));
  }
}

void RunDb::flush() {
  if (buffer_.empty()) return;
  Transaction tx(*db_);
  insert_buffer();
  tx.commit();
  const std::vector<MetricRow> written = std::move(buffer_);
  buffer_.clear();
  mirror(written);
}

// ---- the JSON-lines mirror -----------------------------------------------------------------

void RunDb::mirror_to_jsonl(const std::string& path) {
  try {
    jsonl_ = std::make_unique<LineLog>(path);
  } catch (const LineLogError& e) {
    throw RunDbError(std::string("run database ") + path_ + ": metrics mirror: " + e.what());
  }
}

// Called after the commit: a tailing reader never sees a metric the database does not have.
void RunDb::mirror(const std::vector<MetricRow>& rows) {
  for (const MetricRow& m : rows) {
    nlohmann::json line{{"run", m.run}, {"step", m.step}, {"name", m.name}, {"value", nullptr}, {"time", m.time}};
    if (std::isfinite(m.value)) line["value"] = m.value;
    mirror_event(json_text(line));
  }
}

void RunDb::mirror_event(const std::string& json_line) {
  if (!jsonl_) return;
  try {
    jsonl_->append(json_line);
  } catch (const LineLogError& e) {
    throw RunDbError(std::string("run database ") + path_ + ": metrics mirror: " + e.what() +
                     " (runs.sqlite has the rows)");
  }
}

// ---- readers -------------------------------------------------------------------------------

namespace {

RunRecord read_run(const SqliteStmt& st) {
  RunRecord r;
  r.id = st.int64(0);
  r.info.name = st.text(1);
  r.info.config = st.text(2);
  r.info.seed = static_cast<uint64_t>(st.int64(3));
  r.info.device = st.text(4);
  r.info.git_commit = st.text(5);
  r.started_at = st.text(6);
  r.ended_at = optional_text(st, 7);
  r.status = parse_run_status(st.text(8));
  r.message = st.text(9);
  return r;
}

constexpr const char* kRunColumns =
    "SELECT id, name, config, seed, device, git_commit, started_at, ended_at, status, message FROM runs";

}  // namespace

std::optional<RunRecord> RunDb::run(int64_t id) const {
  return named(path_, "SELECT FROM runs", [&]() -> std::optional<RunRecord> {
    SqliteStmt st(*db_, std::string(kRunColumns) + " WHERE id = ?");
    st.bind(1, id);
    if (!st.step()) return std::nullopt;
    return read_run(st);
  });
}

std::vector<RunRecord> RunDb::runs() const {
  return named(path_, "SELECT FROM runs", [&] {
    SqliteStmt st(*db_, std::string(kRunColumns) + " ORDER BY id");
    std::vector<RunRecord> out;
    while (st.step()) out.push_back(read_run(st));
    return out;
  });
}

std::vector<MetricRow> RunDb::metrics(int64_t run, std::string_view name) const {
  return named(path_, "SELECT FROM metrics", [&] {
    SqliteStmt st(*db_, name.empty() ? "SELECT run, step, name, value, time FROM metrics WHERE run = ? "
                                       "ORDER BY name, step, rowid"
                                     : "SELECT run, step, name, value, time FROM metrics WHERE run = ? AND name = ? "
                                       "ORDER BY name, step, rowid");
    st.bind(1, run);
    if (!name.empty()) st.bind(2, name);
    std::vector<MetricRow> out;
    while (st.step()) out.push_back(MetricRow{st.int64(0), st.int64(1), st.text(2), real_or_nan(st, 3), st.real(4)});
    return out;
  });
}

}  // namespace mg
