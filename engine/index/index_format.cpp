#include "engine/index/index_format.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <unordered_set>

#include "engine/index/sha256.h"
#include "engine/io/atomic_file.h"
#include "engine/io/stop_point.h"
#include "engine/sqlite/sqlite_db.h"

namespace mg::index {

namespace fs = std::filesystem;

// The BLOBs hold the vectors' bytes as they are in memory: the format is little-endian.
static_assert(std::endian::native == std::endian::little, "the index stores little-endian float32: port the "
                                                          "vector copies to a big-endian host first");

namespace {

std::string schema_sql(int dim) {
  // The CHECK pins every vector to dim floats, so a reader can trust the BLOB length.
  return R"sql(
CREATE TABLE items (
  item INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  path TEXT NOT NULL,
  title TEXT,
  artist TEXT,
  in_degree INTEGER,
  extra TEXT NOT NULL DEFAULT '{}',
  content_sha256 TEXT
);
CREATE TABLE embeddings (
  item INTEGER PRIMARY KEY REFERENCES items(item),
  vector BLOB NOT NULL CHECK (length(vector) = )sql" +
         std::to_string(4 * dim) + R"sql(),
  checkpoint_sha256 TEXT NOT NULL
);
CREATE TABLE meta (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE failures (
  id TEXT NOT NULL,
  path TEXT NOT NULL,
  reason TEXT NOT NULL
);
)sql";
}

void fsync_path(const fs::path& p, bool directory) {
  const int fd = ::open(p.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) throw std::runtime_error(p.string() + ": cannot open to sync: " + std::strerror(errno));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) throw std::runtime_error(p.string() + ": fsync failed: " + std::strerror(err));
}

int64_t crash_after() {
  const char* v = std::getenv("MELGRAPH_EXPORT_CRASH_AFTER");
  return v && *v ? std::atoll(v) : -1;
}

// Unit rows are the format's promise (meta normalized = true), checked on write and on read:
// a float32 row normalised in float64 is within a few ulps of 1. *norm: the row's L2 norm.
bool is_unit_row(const float* v, int dim, double* norm) {
  double ss = 0;
  for (int j = 0; j < dim; ++j) ss += static_cast<double>(v[j]) * v[j];
  *norm = std::sqrt(ss);
  return std::isfinite(ss) && std::abs(*norm - 1.0) <= kUnitNormTolerance;
}

void check_contents(const Index& x) {
  if (x.dim < 1) throw std::invalid_argument("write_index: dim must be >= 1 (got " + std::to_string(x.dim) + ")");
  const size_t n = x.items.size();
  if (x.vectors.size() != n * static_cast<size_t>(x.dim))
    throw std::invalid_argument("write_index: " + std::to_string(x.vectors.size()) + " floats for " + std::to_string(n) +
                                " items of dim " + std::to_string(x.dim));
  std::unordered_set<std::string> seen;
  for (size_t i = 0; i < n; ++i) {
    const IndexItem& it = x.items[i];
    if (it.id.empty()) throw std::invalid_argument("write_index: item " + std::to_string(i) + " has an empty id");
    if (!seen.insert(it.id).second) throw std::invalid_argument("write_index: id '" + it.id + "' appears twice");
    const float* v = x.vector(static_cast<int64_t>(i));
    double norm = 0;
    if (!is_unit_row(v, x.dim, &norm))
      throw std::invalid_argument("write_index: the vector of '" + it.id + "' has norm " + std::to_string(norm) +
                                  ", not 1 (vectors must be finite and L2-normalised)");
  }
}

}  // namespace

int64_t Index::find(const std::string& id) const {
  const auto it = row_of_.find(id);
  return it == row_of_.end() ? -1 : it->second;
}

void Index::rebuild_lookup() {
  row_of_.clear();
  for (size_t i = 0; i < items.size(); ++i) row_of_.emplace(items[i].id, static_cast<int64_t>(i));
}

const std::string& Index::meta_value(const std::string& key) const {
  const auto it = meta.find(key);
  if (it == meta.end())
    throw IndexInputError(source + ": the index has no meta '" + key + "' (damaged, or written by another tool); export it again");
  return it->second;
}

std::string vectors_checksum(const Index& x) {
  Sha256 h;
  const char zero = 0;
  for (int64_t i = 0; i < x.size(); ++i) {
    const std::string& id = x.items[static_cast<size_t>(i)].id;
    h.update(id.data(), id.size());
    h.update(&zero, 1);
    h.update(x.vector(i), static_cast<size_t>(x.dim) * sizeof(float));
  }
  return to_hex(h.finish());
}

std::string utc_now_iso8601() {
  const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// ---- writing ---------------------------------------------------------------------------------

std::string write_index(const std::string& path, const Index& x) {
  check_contents(x);
  const fs::path target = fs::absolute(path);
  fs::create_directories(target.parent_path());
  // Killed exports leave their temporary files behind; concurrent ones each have their own.
  remove_stale_temps(target.string());
  fs::remove(target.string() + ".tmp");  // the name exports used before temp_path_for
  const fs::path tmp = temp_path_for(target.string());

  std::map<std::string, std::string> meta = x.meta;
  meta["format"] = kIndexFormat;
  meta["schema_version"] = std::to_string(kIndexSchemaVersion);
  meta["dim"] = std::to_string(x.dim);
  meta["items"] = std::to_string(x.items.size());
  meta["metric"] = "cosine";
  meta["normalized"] = "true";
  meta["vector_encoding"] = "float32 little-endian";
  meta["vectors_sha256"] = vectors_checksum(x);

  const int64_t crash = crash_after();
  try {
    SqliteDb db(tmp.string(), SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    // The temporary file is thrown away on any failure, so it needs no rollback journal; the
    // durability comes from the fsync before the rename.
    db.exec("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;");
    db.exec("PRAGMA application_id = " + std::to_string(kIndexApplicationId) + ";");
    db.exec("PRAGMA user_version = " + std::to_string(kIndexSchemaVersion) + ";");
    db.exec("BEGIN;");
    db.exec(schema_sql(x.dim));
    {
      SqliteStmt st(db, "INSERT INTO meta (key, value) VALUES (?1, ?2)");
      for (const auto& [k, v] : meta) st.bind(1, k).bind(2, v).run();
    }
    {
      SqliteStmt st(db,
                    "INSERT INTO items (item, id, path, title, artist, in_degree, extra, content_sha256) "
                    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
      for (size_t i = 0; i < x.items.size(); ++i) {
        const IndexItem& it = x.items[i];
        st.bind(1, static_cast<int64_t>(i)).bind(2, it.id).bind(3, it.path);
        if (it.title)
          st.bind(4, *it.title);
        else
          st.bind_null(4);
        if (it.artist)
          st.bind(5, *it.artist);
        else
          st.bind_null(5);
        if (it.in_degree >= 0)
          st.bind(6, it.in_degree);
        else
          st.bind_null(6);
        st.bind(7, it.extra);
        if (it.content_sha256.empty())
          st.bind_null(8);
        else
          st.bind(8, it.content_sha256);
        st.run();
      }
    }
    {
      // Every vector is the one checkpoint's (meta checkpoint_sha256): an index never mixes models.
      SqliteStmt st(db, "INSERT INTO embeddings (item, vector, checkpoint_sha256) VALUES (?1, ?2, ?3)");
      const std::string checkpoint = x.meta.count("checkpoint_sha256") ? x.meta.at("checkpoint_sha256") : "";
      const size_t row_bytes = static_cast<size_t>(x.dim) * sizeof(float);
      for (size_t i = 0; i < x.items.size(); ++i) {
        if (crash >= 0 && static_cast<int64_t>(i) == crash) _exit(137);
        stop_point("index.row");  // kill tests: mid-transaction, the temp file half written
        st.bind(1, static_cast<int64_t>(i))
            .bind_blob(2, x.vector(static_cast<int64_t>(i)), row_bytes)
            .bind(3, checkpoint);
        st.run();
      }
    }
    {
      SqliteStmt st(db, "INSERT INTO failures (id, path, reason) VALUES (?1, ?2, ?3)");
      for (const IndexFailure& f : x.failures) st.bind(1, f.id).bind(2, f.path).bind(3, f.reason).run();
    }
    db.exec("COMMIT;");
  } catch (...) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw;
  }
  fsync_path(tmp, false);
  stop_point("rename:" + target.filename().string());  // kill tests: the temp file complete
  fs::rename(tmp, target);
  fsync_path(target.parent_path(), true);
  return meta["vectors_sha256"];
}

// ---- reading ---------------------------------------------------------------------------------

namespace {

// The file is a melgraph index of a schema this melgraph reads (application_id, user_version);
// returns the schema version.
int check_index_identity(SqliteDb& db, const std::string& path) {
  const std::string not_index = path + ": not a melgraph index";
  int64_t app_id = 0, version = 0;
  try {
    SqliteStmt a(db, "PRAGMA application_id");
    if (a.step()) app_id = a.int64(0);
    SqliteStmt v(db, "PRAGMA user_version");
    if (v.step()) version = v.int64(0);
  } catch (const SqliteError&) {
    throw IndexInputError(not_index + " (not an SQLite database)");
  }
  if (app_id != kIndexApplicationId)
    throw IndexInputError(not_index +
                          " (an SQLite file without melgraph's application_id; make an index with `melgraph export`)");
  if (version > kIndexSchemaVersion)
    throw IndexInputError(path + ": written by a newer melgraph (index schema version " + std::to_string(version) +
                          ", this melgraph reads up to " + std::to_string(kIndexSchemaVersion) +
                          "): update melgraph, or export the index again with this one");
  if (version < 1) throw IndexInputError(not_index + " (schema version " + std::to_string(version) + ")");
  return static_cast<int>(version);
}

// x.meta, and x.dim from it.
void read_meta(SqliteDb& db, const std::string& path, Index& x) {
  SqliteStmt st(db, "SELECT key, value FROM meta");
  while (st.step()) x.meta[st.text(0)] = st.text(1);
  if (x.meta.count("format") == 0 || x.meta["format"] != kIndexFormat)
    throw IndexInputError(path + ": not a melgraph index (meta format is not '" + kIndexFormat + "')");
  // The whole value, digits only: "64abc" or "2e9" is damage, not 64 or 2.
  const std::string dim = x.meta_value("dim");
  const auto [end, ec] = std::from_chars(dim.data(), dim.data() + dim.size(), x.dim);
  if (ec != std::errc() || end != dim.data() + dim.size() || x.dim < 1 || x.dim > kMaxIndexDim)
    throw IndexInputError(path + ": meta dim '" + dim + "' is not a whole number in [1, " +
                          std::to_string(kMaxIndexDim) + "]; the file is damaged: export the index again");
}

// Version 1 has no content hashes (content_sha256 stays empty).
void read_items(SqliteDb& db, const std::string& path, int version, Index& x) {
  SqliteStmt st(db,
                version >= 2
                    ? "SELECT item, id, path, title, artist, in_degree, extra, content_sha256 FROM items ORDER BY item"
                    : "SELECT item, id, path, title, artist, in_degree, extra FROM items ORDER BY item");
  while (st.step()) {
    if (st.int64(0) != static_cast<int64_t>(x.items.size()))
      throw IndexInputError(path + ": items are not numbered 0..n-1 (item " + std::to_string(st.int64(0)) + " at row " +
                            std::to_string(x.items.size()) + "); export the index again");
    IndexItem it;
    it.id = st.text(1);
    it.path = st.text(2);
    if (!st.is_null(3)) it.title = st.text(3);
    if (!st.is_null(4)) it.artist = st.text(4);
    it.in_degree = st.is_null(5) ? -1 : st.int64(5);
    it.extra = st.text(6);
    if (version >= 2 && !st.is_null(7)) it.content_sha256 = st.text(7);
    x.items.push_back(std::move(it));
  }
}

// One vector of x.dim floats per item, in item order, each (version 2) made by the checkpoint
// of meta checkpoint_sha256; anything else is a damaged index.
void read_vectors(SqliteDb& db, const std::string& path, int version, Index& x) {
  const size_t n = x.items.size(), row_bytes = static_cast<size_t>(x.dim) * sizeof(float);
  x.vectors.resize(n * static_cast<size_t>(x.dim));
  SqliteStmt st(db, version >= 2 ? "SELECT item, vector, checkpoint_sha256 FROM embeddings ORDER BY item"
                                 : "SELECT item, vector FROM embeddings ORDER BY item");
  const auto meta_checkpoint = x.meta.find("checkpoint_sha256");
  const std::string recorded = meta_checkpoint == x.meta.end() ? "" : meta_checkpoint->second;
  size_t row = 0;
  while (st.step()) {
    if (row >= n || st.int64(0) != static_cast<int64_t>(row))
      throw IndexInputError(path + ": embedding rows do not match the items (item " + std::to_string(st.int64(0)) +
                            " at row " + std::to_string(row) + "); export the index again");
    const void* p = st.blob(1);
    if (st.bytes(1) != row_bytes || !p)
      throw IndexInputError(path + ": the vector of item " + std::to_string(row) + " has " +
                            std::to_string(st.bytes(1)) + " bytes, expected " + std::to_string(row_bytes) + " (dim " +
                            std::to_string(x.dim) + ")");
    if (version >= 2 && st.text(2) != recorded)
      throw IndexInputError(path + ": the vector of item " + std::to_string(row) + " ('" + x.items[row].id +
                            "') was made by checkpoint " + st.text(2).substr(0, 16) +
                            "..., not the index's (meta checkpoint_sha256): an index holds one model's vectors; "
                            "export the index again");
    float* v = x.vectors.data() + row * static_cast<size_t>(x.dim);
    std::memcpy(v, p, row_bytes);
    // A NaN or a scaled row would rank silently wrong.
    double norm = 0;
    if (!is_unit_row(v, x.dim, &norm))
      throw IndexInputError(
          path + ": the vector of item " + std::to_string(row) + " ('" + x.items[row].id + "') has norm " +
          std::to_string(norm) +
          ", not 1 (vectors are finite and L2-normalised); the file is damaged: export the index again");
    ++row;
  }
  if (row != n)
    throw IndexInputError(path + ": " + std::to_string(n) + " items but " + std::to_string(row) +
                          " embeddings; export the index again");
}

}  // namespace

void check_index_target(const std::string& out, const std::vector<std::string>& inputs) {
  std::error_code ec;
  if (fs::is_directory(out, ec))
    throw IndexInputError("--out " + out + " is a directory; --out names the index file to write (e.g. " +
                          (fs::path(out) / "index.sqlite").string() + ")");
  for (const std::string& in : inputs) {
    if (in.empty() || !fs::exists(out, ec) || !fs::equivalent(out, in, ec)) continue;
    std::string msg = "--out " + out;
    msg += " is the input file " + in + "; choose another --out";
    throw IndexInputError(msg);
  }
  if (!fs::exists(out, ec)) return;
  try {
    SqliteDb db(out, SQLITE_OPEN_READONLY);
    check_index_identity(db, out);
  } catch (const std::exception&) {
    throw IndexInputError("--out " + out +
                          " exists and is not a melgraph index; export replaces only an index it "
                          "wrote: remove the file or choose another --out");
  }
}

Index read_index(const std::string& path, bool with_vectors) {
  std::error_code ec;
  if (!fs::exists(path, ec))
    throw IndexInputError(path + ": no such index file (make one with `melgraph export`)");
  if (fs::is_directory(path, ec)) throw IndexInputError(path + ": is a directory, not a melgraph index file");
  Index x;
  x.source = path;
  try {
    SqliteDb db(path, SQLITE_OPEN_READONLY);
    const int version = check_index_identity(db, path);
    read_meta(db, path, x);
    read_items(db, path, version, x);
    SqliteStmt st(db, "SELECT id, path, reason FROM failures ORDER BY rowid");
    while (st.step()) x.failures.push_back({st.text(0), st.text(1), st.text(2)});
    if (with_vectors) read_vectors(db, path, version, x);
  } catch (const SqliteError& e) {  // unreadable, or tables missing or malformed
    throw IndexInputError(path + ": cannot be read as a melgraph index (damaged, or not readable?): " + e.what());
  }
  x.rebuild_lookup();
  // The schema's UNIQUE makes ids unique, but a damaged file (a broken unique index, a table
  // rebuilt by hand) can repeat one: find() would then answer for one of the rows only.
  for (size_t row = 0; row < x.items.size(); ++row)
    if (const int64_t first = x.find(x.items[row].id); first != static_cast<int64_t>(row))
      throw IndexInputError(path + ": item id '" + x.items[row].id + "' appears twice (items " + std::to_string(first) +
                            " and " + std::to_string(row) + "); the file is damaged: export the index again");
  return x;
}

}  // namespace mg::index
