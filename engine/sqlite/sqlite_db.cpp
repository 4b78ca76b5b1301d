#include "engine/sqlite/sqlite_db.h"

#include <cctype>
#include <filesystem>

namespace mg {

SqliteDb::SqliteDb(const std::string& path, int flags, int busy_timeout_ms)
    : SqliteDb(path, path, flags, busy_timeout_ms) {}

SqliteDb::SqliteDb(const std::string& path, const std::string& open_name, int flags, int busy_timeout_ms)
    : path_(path) {
  const int rc = sqlite3_open_v2(open_name.c_str(), &db_, flags, nullptr);
  if (rc != SQLITE_OK) {
    const std::string msg = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
    sqlite3_close(db_);
    db_ = nullptr;
    throw SqliteError(path + ": cannot open the SQLite database: " + msg, rc, msg);
  }
  sqlite3_extended_result_codes(db_, 1);
  sqlite3_busy_timeout(db_, busy_timeout_ms);
}

namespace {

// "file:///abs/path" with every byte outside the URI's unreserved set and '/' written as %HH,
// so that '?', '#' and '%' in a file name stay part of the name (SQLite's URI filenames).
std::string file_uri(const std::string& path) {
  const std::string abs = std::filesystem::absolute(path).string();
  std::string uri = "file://";
  for (const char ch : abs) {
    const auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) || c == '/' || c == '-' || c == '.' || c == '_' || c == '~') {
      uri += ch;
    } else {
      static constexpr char kHex[] = "0123456789ABCDEF";
      uri += '%';
      uri += kHex[c >> 4];
      uri += kHex[c & 15];
    }
  }
  return uri;
}

}  // namespace

SqliteDb SqliteDb::with_uri_parameters(const std::string& path, int flags, std::string_view query,
                                       int busy_timeout_ms) {
  return SqliteDb(path, file_uri(path) + "?" + std::string(query), flags | SQLITE_OPEN_URI, busy_timeout_ms);
}

SqliteDb::~SqliteDb() { sqlite3_close(db_); }

void SqliteDb::fail(const std::string& what) const {
  const std::string msg = sqlite3_errmsg(db_);
  throw SqliteError(path_ + ": " + what + ": " + msg, sqlite3_extended_errcode(db_), msg);
}

void SqliteDb::exec(const std::string& sql) {
  char* err = nullptr;
  const int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    const std::string msg = err ? err : sqlite3_errmsg(db_);
    sqlite3_free(err);
    throw SqliteError(path_ + ": " + sql + ": " + msg, rc, msg);
  }
}

SqliteStmt::SqliteStmt(SqliteDb& db, const std::string& sql) : db_(db), sql_(sql) {
  if (sqlite3_prepare_v2(db.get(), sql.c_str(), static_cast<int>(sql.size()), &st_, nullptr) != SQLITE_OK)
    db.fail("cannot prepare '" + sql + "'");
}

SqliteStmt::~SqliteStmt() { sqlite3_finalize(st_); }

SqliteStmt& SqliteStmt::bind(int i, int64_t v) {
  if (sqlite3_bind_int64(st_, i, v) != SQLITE_OK) db_.fail("bind " + std::to_string(i) + " of '" + sql_ + "'");
  return *this;
}

SqliteStmt& SqliteStmt::bind(int i, double v) {
  if (sqlite3_bind_double(st_, i, v) != SQLITE_OK) db_.fail("bind " + std::to_string(i) + " of '" + sql_ + "'");
  return *this;
}

SqliteStmt& SqliteStmt::bind(int i, std::string_view v) {
  // A default string_view has a null data(), which SQLite would bind as NULL.
  const char* text = v.data() ? v.data() : "";
  if (sqlite3_bind_text(st_, i, text, static_cast<int>(v.size()), SQLITE_TRANSIENT) != SQLITE_OK)
    db_.fail("bind " + std::to_string(i) + " of '" + sql_ + "'");
  return *this;
}

SqliteStmt& SqliteStmt::bind_null(int i) {
  if (sqlite3_bind_null(st_, i) != SQLITE_OK) db_.fail("bind " + std::to_string(i) + " of '" + sql_ + "'");
  return *this;
}

SqliteStmt& SqliteStmt::bind_blob(int i, const void* data, size_t bytes) {
  if (sqlite3_bind_blob64(st_, i, data, bytes, SQLITE_TRANSIENT) != SQLITE_OK)
    db_.fail("bind " + std::to_string(i) + " of '" + sql_ + "'");
  return *this;
}

bool SqliteStmt::step() {
  const int rc = sqlite3_step(st_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  db_.fail("'" + sql_ + "' failed");
}

void SqliteStmt::run() {
  while (step()) {
  }
  reset();
}

void SqliteStmt::reset() {
  sqlite3_reset(st_);
  sqlite3_clear_bindings(st_);
}

int64_t SqliteStmt::int64(int col) const { return sqlite3_column_int64(st_, col); }
double SqliteStmt::real(int col) const { return sqlite3_column_double(st_, col); }
std::string SqliteStmt::text(int col) const {
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(st_, col));
  return p ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(st_, col))) : std::string();
}

bool SqliteStmt::is_null(int col) const { return sqlite3_column_type(st_, col) == SQLITE_NULL; }
const void* SqliteStmt::blob(int col) const { return sqlite3_column_blob(st_, col); }
size_t SqliteStmt::bytes(int col) const { return static_cast<size_t>(sqlite3_column_bytes(st_, col)); }

}  // namespace mg
