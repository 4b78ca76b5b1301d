// A thin RAII layer over the SQLite C API, shared by every SQLite user in melgraph (the audio
// cache's index, the run database, the embedding index): one connection, prepared statements,
// and errors that name the database file and what was being done.
#pragma once
#include <sqlite3.h>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace mg {

// what(): "<path>: <what was being done>: <SQLite's message>". code() and reason() keep SQLite's
// result code and message apart, for callers that word their own errors.
class SqliteError : public std::runtime_error {
 public:
  SqliteError(const std::string& message, int code, std::string reason)
      : std::runtime_error(message), code_(code), reason_(std::move(reason)) {}
  int code() const { return code_; }  // extended result code (SQLITE_CONSTRAINT_FOREIGNKEY, ...)
  const std::string& reason() const { return reason_; }

 private:
  int code_;
  std::string reason_;
};

class SqliteDb {
 public:
  // flags: SQLITE_OPEN_* (READWRITE, CREATE, READONLY). Waits up to busy_timeout_ms on a lock
  // held by another connection before reporting "database is locked".
  SqliteDb(const std::string& path, int flags, int busy_timeout_ms = 10000);
  // Opens `path` through a file: URI with the given query parameters (SQLite's URI filenames,
  // e.g. "immutable=1"); path() and the error messages still name the plain path.
  static SqliteDb with_uri_parameters(const std::string& path, int flags, std::string_view query,
                                      int busy_timeout_ms = 10000);
  SqliteDb(SqliteDb&& other) noexcept : db_(std::exchange(other.db_, nullptr)), path_(std::move(other.path_)) {}
  ~SqliteDb();
  SqliteDb(const SqliteDb&) = delete;
  SqliteDb& operator=(const SqliteDb&) = delete;
  SqliteDb& operator=(SqliteDb&&) = delete;

  sqlite3* get() const { return db_; }
  const std::string& path() const { return path_; }
  void exec(const std::string& sql);
  // The rowid of the last successful INSERT on this connection.
  int64_t last_insert_rowid() const { return sqlite3_last_insert_rowid(db_); }
  // "<path>: <what>: <sqlite's message>"
  [[noreturn]] void fail(const std::string& what) const;

 private:
  SqliteDb(const std::string& path, const std::string& open_name, int flags, int busy_timeout_ms);
  sqlite3* db_ = nullptr;
  std::string path_;
};

class SqliteStmt {
 public:
  SqliteStmt(SqliteDb& db, const std::string& sql);
  ~SqliteStmt();
  SqliteStmt(const SqliteStmt&) = delete;
  SqliteStmt& operator=(const SqliteStmt&) = delete;

  // Parameters are 1-based, as in SQLite.
  SqliteStmt& bind(int i, int64_t v);
  SqliteStmt& bind(int i, double v);  // SQLite stores NaN as NULL
  SqliteStmt& bind(int i, std::string_view v);  // copied; an empty view is '' (never NULL)
  SqliteStmt& bind_null(int i);
  SqliteStmt& bind_blob(int i, const void* data, size_t bytes);  // copied (SQLITE_TRANSIENT)
  bool step();  // true: a row is ready; false: done
  void run();   // step() to completion; resets for reuse
  void reset();

  int64_t int64(int col) const;
  double real(int col) const;
  std::string text(int col) const;
  bool is_null(int col) const;
  // The column's bytes, valid until the next step(), reset() or column read of another type.
  const void* blob(int col) const;
  size_t bytes(int col) const;

 private:
  SqliteDb& db_;
  sqlite3_stmt* st_ = nullptr;
  std::string sql_;
};

}  // namespace mg
