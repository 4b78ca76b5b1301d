#include "engine/run_db.h"

#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <utility>

#include "build_info.h"

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

// One prepared statement. The caller checks return codes and reports through RunDb::fail.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) { rc_ = sqlite3_prepare_v2(db, sql, -1, &s_, nullptr); }
  ~Stmt() { sqlite3_finalize(s_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  int prepare_rc() const { return rc_; }

  int bind(int i, int64_t v) { return sqlite3_bind_int64(s_, i, v); }
  // SQLite has no NaN: bind NULL explicitly rather than rely on its silent conversion.
  int bind(int i, double v) { return std::isnan(v) ? sqlite3_bind_null(s_, i) : sqlite3_bind_double(s_, i, v); }
  // A default string_view has a null data(), which SQLite would bind as NULL: bind "" instead.
  int bind(int i, std::string_view v) {
    return sqlite3_bind_text(s_, i, v.data() ? v.data() : "", static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }
  int step() { return sqlite3_step(s_); }
  int reset() { return sqlite3_reset(s_); }

  int64_t int_col(int i) { return sqlite3_column_int64(s_, i); }
  double real_col(int i) {
    return sqlite3_column_type(s_, i) == SQLITE_NULL ? std::numeric_limits<double>::quiet_NaN()
                                                     : sqlite3_column_double(s_, i);
  }
  std::optional<std::string> text_col(int i) {
    if (sqlite3_column_type(s_, i) == SQLITE_NULL) return std::nullopt;
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s_, i));
    return std::string(p, static_cast<size_t>(sqlite3_column_bytes(s_, i)));
  }

 private:
  sqlite3_stmt* s_ = nullptr;
  int rc_ = SQLITE_OK;
};

}  // namespace

const char* to_string(RunStatus s) { return kStatusNames[static_cast<int>(s)]; }

RunStatus parse_run_status(std::string_view s) {
  for (int i = 0; i < 5; ++i)
    if (s == kStatusNames[i]) return static_cast<RunStatus>(i);
  throw RunDbError("unknown run status '" + std::string(s) +
                   "' (expected running, finished, interrupted, failed or diverged)");
}

// BEGIN IMMEDIATE takes the write lock up front (waiting up to the busy timeout), so a
// transaction never fails half-way on lock upgrade; leaving scope without commit() (an
// exception) rolls back.
class RunDb::Transaction {
 public:
  explicit Transaction(const RunDb& db) : db_(db) { db_.exec("BEGIN IMMEDIATE", "BEGIN IMMEDIATE (write lock)"); }
  ~Transaction() {
    if (!done_) sqlite3_exec(db_.db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  void commit() {
    db_.exec("COMMIT", "COMMIT");
    done_ = true;
  }

 private:
  const RunDb& db_;
  bool done_ = false;
};

void RunDb::fail(const std::string& what, int rc) const {
  const std::string detail = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
  throw RunDbError("run database " + path_ + ": " + what + ": " + detail + " (SQLite error " + std::to_string(rc) + ")");
}

void RunDb::exec(const char* sql, const char* what) const {
  const int rc = sqlite3_exec(db_, sql, nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) fail(what, rc);
}

// ---- open ----------------------------------------------------------------------------------

RunDb::RunDb(const std::string& path, int busy_timeout_ms) : path_(path) {
  const int rc = sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  if (rc != SQLITE_OK) {
    const std::string msg = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
    sqlite3_close(db_);
    db_ = nullptr;
    throw RunDbError("run database " + path_ + ": open: " + msg + " (SQLite error " + std::to_string(rc) + ")");
  }
  try {
    sqlite3_busy_timeout(db_, busy_timeout_ms);
    // Read the version before writing anything (the journal-mode switch writes the header):
    // a newer file is refused untouched. Also the first read: a file that is not SQLite fails here.
    int64_t version = 0, objects = 0;
    {
      Stmt st(db_, "PRAGMA user_version");
      if (st.prepare_rc() != SQLITE_OK) fail("PRAGMA user_version", st.prepare_rc());
      const int r = st.step();
      if (r != SQLITE_ROW) fail("PRAGMA user_version", r);
      version = st.int_col(0);
    }
    if (version > kSchemaVersion)
      throw RunDbError("run database " + path_ + " has schema version " + std::to_string(version) +
                       ", written by a newer melgraph; this build reads versions up to " +
                       std::to_string(kSchemaVersion) + ": use a newer melgraph or another database file");
    {
      Stmt st(db_, "PRAGMA journal_mode = WAL");
      if (st.prepare_rc() != SQLITE_OK) fail("PRAGMA journal_mode = WAL", st.prepare_rc());
      const int r = st.step();
      if (r != SQLITE_ROW) fail("PRAGMA journal_mode = WAL", r);
      const std::string mode = st.text_col(0).value_or("");
      if (mode != "wal" && path_ != ":memory:")
        throw RunDbError("run database " + path_ + ": PRAGMA journal_mode = WAL: the journal mode stayed '" + mode +
                         "' (WAL needs a local file system with shared memory): put the database on a local disk");
    }
    exec("PRAGMA synchronous = FULL", "PRAGMA synchronous = FULL");
    exec("PRAGMA foreign_keys = ON", "PRAGMA foreign_keys = ON");

    Transaction tx(*this);
    {
      // Again under the write lock: another process may have created the schema meanwhile.
      Stmt st(db_, "SELECT (SELECT user_version FROM pragma_user_version), (SELECT count(*) FROM sqlite_schema)");
      if (st.prepare_rc() != SQLITE_OK) fail("read the schema version", st.prepare_rc());
      const int r = st.step();
      if (r != SQLITE_ROW) fail("read the schema version", r);
      version = st.int_col(0);
      objects = st.int_col(1);
    }
    if (version == 0) {
      if (objects > 0)
        throw RunDbError("run database " + path_ + " already has " + std::to_string(objects) +
                         " tables or indexes but no melgraph schema version: it is not a melgraph run database; "
                         "choose another file");
      exec(kSchema, "create the schema (runs, metrics)");
      exec(("PRAGMA user_version = " + std::to_string(kSchemaVersion)).c_str(), "PRAGMA user_version");
    } else if (version > kSchemaVersion) {
      throw RunDbError("run database " + path_ + " has schema version " + std::to_string(version) +
                       ", written by a newer melgraph; this build reads versions up to " +
                       std::to_string(kSchemaVersion) + ": use a newer melgraph or another database file");
    }
    tx.commit();
  } catch (...) {
    sqlite3_close(db_);
    db_ = nullptr;
    throw;
  }
}

RunDb::~RunDb() {
  if (!db_) return;
  try {
    flush();
  } catch (...) {
    // Documented: a destructor cannot report; flush() and end_run() do.
  }
  sqlite3_close(db_);
}

// ---- runs ----------------------------------------------------------------------------------

RunStatus RunDb::status_of(int64_t id, const char* what) const {
  Stmt st(db_, "SELECT status FROM runs WHERE id = ?");
  if (st.prepare_rc() != SQLITE_OK) fail(what, st.prepare_rc());
  st.bind(1, id);
  const int r = st.step();
  if (r == SQLITE_DONE) throw RunDbError("run database " + path_ + ": " + what + ": no run with id " + std::to_string(id));
  if (r != SQLITE_ROW) fail(what, r);
  return parse_run_status(st.text_col(0).value_or(""));
}

int64_t RunDb::begin_run(const RunInfo& info) {
  constexpr const char* what = "INSERT INTO runs";
  if (info.seed > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    throw RunDbError("run database " + path_ + ": " + what + ": seed " + std::to_string(info.seed) +
                     " does not fit SQLite's signed 64-bit INTEGER");
  Transaction tx(*this);
  Stmt st(db_,
          "INSERT INTO runs (name, config, seed, device, git_commit, started_at, status, message) "
          "VALUES (?, ?, ?, ?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 'running', '')");
  if (st.prepare_rc() != SQLITE_OK) fail(what, st.prepare_rc());
  st.bind(1, std::string_view(info.name));
  st.bind(2, std::string_view(info.config));
  st.bind(3, static_cast<int64_t>(info.seed));
  st.bind(4, std::string_view(info.device));
  st.bind(5, std::string_view(info.git_commit.empty() ? MELGRAPH_GIT_COMMIT : info.git_commit));
  const int r = st.step();
  if (r != SQLITE_DONE) fail(what, r);
  const int64_t id = sqlite3_last_insert_rowid(db_);
  tx.commit();
  return id;
}

RunStatus RunDb::resume_run(int64_t id, int64_t from_step) {
  Transaction tx(*this);
  const RunStatus before = status_of(id, "resume run");
  {
    Stmt st(db_, "DELETE FROM metrics WHERE run = ? AND step > ?");
    if (st.prepare_rc() != SQLITE_OK) fail("DELETE FROM metrics (steps after the checkpoint)", st.prepare_rc());
    st.bind(1, id);
    st.bind(2, from_step);
    const int r = st.step();
    if (r != SQLITE_DONE) fail("DELETE FROM metrics (steps after the checkpoint)", r);
  }
  {
    Stmt st(db_, "UPDATE runs SET status = 'running', ended_at = NULL, message = '' WHERE id = ?");
    if (st.prepare_rc() != SQLITE_OK) fail("UPDATE runs (resume)", st.prepare_rc());
    st.bind(1, id);
    const int r = st.step();
    if (r != SQLITE_DONE) fail("UPDATE runs (resume)", r);
  }
  tx.commit();
  // Buffered rows of the steps being redone would duplicate the new ones.
  std::erase_if(buffer_, [&](const MetricRow& m) { return m.run == id && m.step > from_step; });
  return before;
}

void RunDb::end_run(int64_t id, RunStatus status, std::string_view message) {
  if (status == RunStatus::Running)
    throw RunDbError("run database " + path_ + ": end run " + std::to_string(id) +
                     ": the final status cannot be 'running'");
  Transaction tx(*this);
  const RunStatus now = status_of(id, "end run");
  if (now != RunStatus::Running)
    throw RunDbError("run database " + path_ + ": end run " + std::to_string(id) + " as " + to_string(status) +
                     ": the run is already " + to_string(now) + " (resume_run() reopens it)");
  insert_buffer();
  Stmt st(db_, "UPDATE runs SET status = ?, ended_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), message = ? WHERE id = ?");
  if (st.prepare_rc() != SQLITE_OK) fail("UPDATE runs (end)", st.prepare_rc());
  st.bind(1, std::string_view(to_string(status)));
  st.bind(2, message);
  st.bind(3, id);
  const int r = st.step();
  if (r != SQLITE_DONE) fail("UPDATE runs (end)", r);
  tx.commit();
  buffer_.clear();
}

// ---- metrics -------------------------------------------------------------------------------

void RunDb::log(int64_t run, int64_t step, std::string_view name, double value) {
  if (name.empty()) throw RunDbError("run database " + path_ + ": log: empty metric name (step " + std::to_string(step) + ")");
  buffer_.push_back(MetricRow{run, step, std::string(name), value, unix_now()});
}

void RunDb::insert_buffer() {
  if (buffer_.empty()) return;
  constexpr const char* what = "INSERT INTO metrics";
  Stmt st(db_, "INSERT INTO metrics (run, step, name, value, time) VALUES (?, ?, ?, ?, ?)");
  if (st.prepare_rc() != SQLITE_OK) fail(what, st.prepare_rc());
  for (const MetricRow& m : buffer_) {
    st.bind(1, m.run);
    st.bind(2, m.step);
    st.bind(3, std::string_view(m.name));
    st.bind(4, m.value);
    st.bind(5, m.time);
    const int r = st.step();
    if (r != SQLITE_DONE)
      fail(std::string(what) + " (run " + std::to_string(m.run) + ", step " + std::to_string(m.step) + ", " + m.name + ")", r);
    st.reset();
  }
}

void RunDb::flush() {
  if (buffer_.empty()) return;
  Transaction tx(*this);
  insert_buffer();
  tx.commit();
  buffer_.clear();
}

// ---- readers -------------------------------------------------------------------------------

namespace {

RunRecord read_run(Stmt& st) {
  RunRecord r;
  r.id = st.int_col(0);
  r.info.name = st.text_col(1).value_or("");
  r.info.config = st.text_col(2).value_or("");
  r.info.seed = static_cast<uint64_t>(st.int_col(3));
  r.info.device = st.text_col(4).value_or("");
  r.info.git_commit = st.text_col(5).value_or("");
  r.started_at = st.text_col(6).value_or("");
  r.ended_at = st.text_col(7);
  r.status = parse_run_status(st.text_col(8).value_or(""));
  r.message = st.text_col(9).value_or("");
  return r;
}

constexpr const char* kRunColumns =
    "SELECT id, name, config, seed, device, git_commit, started_at, ended_at, status, message FROM runs";

}  // namespace

std::optional<RunRecord> RunDb::run(int64_t id) const {
  Stmt st(db_, (std::string(kRunColumns) + " WHERE id = ?").c_str());
  if (st.prepare_rc() != SQLITE_OK) fail("SELECT FROM runs", st.prepare_rc());
  st.bind(1, id);
  const int r = st.step();
  if (r == SQLITE_DONE) return std::nullopt;
  if (r != SQLITE_ROW) fail("SELECT FROM runs", r);
  return read_run(st);
}

std::vector<RunRecord> RunDb::runs() const {
  Stmt st(db_, (std::string(kRunColumns) + " ORDER BY id").c_str());
  if (st.prepare_rc() != SQLITE_OK) fail("SELECT FROM runs", st.prepare_rc());
  std::vector<RunRecord> out;
  int r;
  while ((r = st.step()) == SQLITE_ROW) out.push_back(read_run(st));
  if (r != SQLITE_DONE) fail("SELECT FROM runs", r);
  return out;
}

std::vector<MetricRow> RunDb::metrics(int64_t run, std::string_view name) const {
  Stmt st(db_, name.empty() ? "SELECT run, step, name, value, time FROM metrics WHERE run = ? ORDER BY name, step, rowid"
                            : "SELECT run, step, name, value, time FROM metrics WHERE run = ? AND name = ? "
                              "ORDER BY name, step, rowid");
  if (st.prepare_rc() != SQLITE_OK) fail("SELECT FROM metrics", st.prepare_rc());
  st.bind(1, run);
  if (!name.empty()) st.bind(2, name);
  std::vector<MetricRow> out;
  int r;
  while ((r = st.step()) == SQLITE_ROW)
    out.push_back(MetricRow{st.int_col(0), st.int_col(1), st.text_col(2).value_or(""), st.real_col(3), st.real_col(4)});
  if (r != SQLITE_DONE) fail("SELECT FROM metrics", r);
  return out;
}

}  // namespace mg
