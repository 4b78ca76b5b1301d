// A thin RAII layer over the SQLite C API for the audio cache's index: one connection, prepared
// statements, and errors that name the database file and what was being done.
#pragma once
#include <sqlite3.h>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace mg::audio {

struct SqliteError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class SqliteDb {
 public:
  // flags: SQLITE_OPEN_* (READWRITE, CREATE, READONLY). Waits up to 10 s on a lock held by
  // another connection before reporting "database is locked".
  SqliteDb(const std::string& path, int flags);
  ~SqliteDb();
  SqliteDb(const SqliteDb&) = delete;
  SqliteDb& operator=(const SqliteDb&) = delete;

  sqlite3* get() const { return db_; }
  const std::string& path() const { return path_; }
  void exec(const std::string& sql);
  // "<path>: <what>: <sqlite's message>"
  [[noreturn]] void fail(const std::string& what) const;

 private:
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
  SqliteStmt& bind(int i, double v);
  SqliteStmt& bind(int i, const std::string& v);
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

}  // namespace mg::audio
