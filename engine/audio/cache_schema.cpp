#include "engine/audio/cache_schema.h"

#include <cstdio>

namespace mg::audio {

CacheSettings cache_settings(const AudioConfig& audio) {
  CacheSettings s;
  s.sample_rate = audio.sample_rate;
  s.dtype = audio.cache_dtype;
  s.excerpt = audio.excerpt;
  s.excerpt_seconds = audio.excerpt_seconds;
  return s;
}

size_t bytes_per_sample(CacheDtype dtype) {
  return dtype == CacheDtype::Int16 ? sizeof(int16_t) : sizeof(uint16_t);  // float16: IEEE half bits
}
const char* dtype_name(CacheDtype dtype) { return dtype == CacheDtype::Int16 ? "int16" : "float16"; }
const char* excerpt_name(Excerpt excerpt) { return excerpt == Excerpt::Middle ? "middle" : "start"; }

namespace schema {

namespace {

std::string exact(double v) {  // %.17g round-trips a double through text
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

}  // namespace

void create(SqliteDb& db, const CacheSettings& s) {
  db.exec("BEGIN IMMEDIATE");
  // "offset" is quoted everywhere: it is an SQL keyword.
  db.exec(
      "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
      "CREATE TABLE items (id TEXT PRIMARY KEY, path TEXT NOT NULL, \"offset\" INTEGER NOT NULL,"
      " length INTEGER NOT NULL, source_size INTEGER NOT NULL, source_mtime_ns INTEGER NOT NULL,"
      " checksum INTEGER NOT NULL, source_seconds REAL NOT NULL, offset_seconds REAL NOT NULL,"
      " codec TEXT NOT NULL, warning TEXT NOT NULL, decoder INTEGER NOT NULL DEFAULT 1);"
      "CREATE TABLE failures (id TEXT PRIMARY KEY, path TEXT NOT NULL, source_size INTEGER NOT NULL,"
      " source_mtime_ns INTEGER NOT NULL, reason TEXT NOT NULL);"
      "PRAGMA user_version = " + std::to_string(kVersion) + ";");
  set_meta(db, "format", kFormat);
  set_meta(db, "format_version", std::to_string(kVersion));
  set_meta(db, "sample_rate", std::to_string(s.sample_rate));
  set_meta(db, "dtype", dtype_name(s.dtype));
  set_meta(db, "excerpt", excerpt_name(s.excerpt));
  set_meta(db, "excerpt_seconds", exact(s.excerpt_seconds));
  set_meta(db, "pcm_bytes", "0");
  db.exec("COMMIT");
}

int decoder_revision_needed(const std::string& codec) {
  return codec == "vorbis" || codec == "mp3" ? 2 : 1;
}

namespace {

int64_t user_version(SqliteDb& db) {
  SqliteStmt v(db, "PRAGMA user_version");
  v.step();
  return v.int64(0);
}

}  // namespace

void migrate(SqliteDb& db) {
  if (user_version(db) != 1) return;
  db.exec("BEGIN IMMEDIATE");
  db.exec("ALTER TABLE items ADD COLUMN decoder INTEGER NOT NULL DEFAULT 1;"
          "PRAGMA user_version = " + std::to_string(kVersion) + ";");
  set_meta(db, "format_version", std::to_string(kVersion));
  db.exec("COMMIT");
}

bool is_empty(SqliteDb& db) {
  SqliteStmt st(db, "SELECT count(*) FROM sqlite_master");
  st.step();
  return st.int64(0) == 0;
}

CacheSettings read_settings(SqliteDb& db, const std::string& dir) {
  const int64_t version = user_version(db);
  bool has_meta = false;
  {
    SqliteStmt t(db, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'");
    t.step();
    has_meta = t.int64(0) == 1;
  }
  if (!has_meta || get_meta(db, "format", "") != kFormat)
    throw CacheMismatchError(db.path() + ": not a melgraph audio cache index; give another --out (or --rebuild to "
                     "replace the cache files in " + dir + ")");
  if (version < 1 || version > kVersion)
    throw CacheMismatchError(dir + ": the cache has schema version " + std::to_string(version) + ", this melgraph reads " +
                     "1 to " + std::to_string(kVersion) + ": use another --out or --rebuild");
  CacheSettings s;
  const std::string rate = get_meta(db, "sample_rate", ""), dtype = get_meta(db, "dtype", ""),
                    excerpt = get_meta(db, "excerpt", ""), seconds = get_meta(db, "excerpt_seconds", "");
  try {
    s.sample_rate = std::stoi(rate);
    s.excerpt_seconds = std::stod(seconds);
  } catch (const std::exception&) {
    throw CacheError(db.path() + ": damaged meta table (sample_rate '" + rate + "', excerpt_seconds '" + seconds +
                     "'): --rebuild the cache");
  }
  if (dtype != "int16" && dtype != "float16")
    throw CacheError(db.path() + ": damaged meta table (dtype '" + dtype + "'): --rebuild the cache");
  if (excerpt != "middle" && excerpt != "start")
    throw CacheError(db.path() + ": damaged meta table (excerpt '" + excerpt + "'): --rebuild the cache");
  s.dtype = dtype == "int16" ? CacheDtype::Int16 : CacheDtype::Float16;
  s.excerpt = excerpt == "middle" ? Excerpt::Middle : Excerpt::Start;
  return s;
}

void check_same(const CacheSettings& cache, const CacheSettings& wanted, const std::string& dir) {
  std::string field, have, want;
  if (cache.sample_rate != wanted.sample_rate) {
    field = "audio.sample_rate", have = std::to_string(cache.sample_rate), want = std::to_string(wanted.sample_rate);
  } else if (cache.dtype != wanted.dtype) {
    field = "audio.cache_dtype", have = dtype_name(cache.dtype), want = dtype_name(wanted.dtype);
  } else if (cache.excerpt != wanted.excerpt) {
    field = "audio.excerpt", have = excerpt_name(cache.excerpt), want = excerpt_name(wanted.excerpt);
  } else if (cache.excerpt_seconds != wanted.excerpt_seconds) {
    field = "audio.excerpt_seconds", have = exact(cache.excerpt_seconds), want = exact(wanted.excerpt_seconds);
  } else {
    return;
  }
  throw CacheMismatchError("cache " + dir + " was made with " + field + " = " + have + ", the config has " + want +
                   ": use another --out or --rebuild");
}

std::string get_meta(SqliteDb& db, const std::string& key, const std::string& fallback) {
  SqliteStmt st(db, "SELECT value FROM meta WHERE key = ?");
  st.bind(1, key);
  return st.step() ? st.text(0) : fallback;
}

void set_meta(SqliteDb& db, const std::string& key, const std::string& value) {
  SqliteStmt st(db, "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)");
  st.bind(1, key).bind(2, value).run();
}

void delete_meta(SqliteDb& db, const std::string& key) {
  SqliteStmt st(db, "DELETE FROM meta WHERE key = ?");
  st.bind(1, key).run();
}

int64_t committed_pcm_bytes(SqliteDb& db) {
  const std::string v = get_meta(db, "pcm_bytes", "");
  try {
    size_t used = 0;
    const int64_t n = std::stoll(v, &used);
    if (used == v.size() && n >= 0) return n;
  } catch (const std::exception&) {
  }
  throw CacheError(db.path() + ": damaged meta table (pcm_bytes '" + v + "'): --rebuild the cache");
}

std::vector<CacheEntry> load_items(SqliteDb& db) {
  // A version-1 cache (read-only, not migrated yet) has no decoder column: its rows are decoder 1.
  const std::string decoder = user_version(db) >= 2 ? "decoder" : "1";
  SqliteStmt st(db,
                "SELECT id, path, \"offset\", length, source_size, source_mtime_ns, checksum, source_seconds,"
                " offset_seconds, codec, warning, " + decoder + " FROM items ORDER BY \"offset\"");
  std::vector<CacheEntry> items;
  while (st.step()) {
    CacheEntry e;
    e.id = st.text(0);
    e.path = st.text(1);
    e.offset = st.int64(2);
    e.length = st.int64(3);
    e.source_size = st.int64(4);
    e.source_mtime_ns = st.int64(5);
    e.checksum = static_cast<uint32_t>(st.int64(6));
    e.source_seconds = st.real(7);
    e.offset_seconds = st.real(8);
    e.codec = st.text(9);
    e.warning = st.text(10);
    e.decoder = static_cast<int>(st.int64(11));
    items.push_back(std::move(e));
  }
  return items;
}

std::vector<CacheFailure> load_failures(SqliteDb& db) {
  SqliteStmt st(db, "SELECT id, path, source_size, source_mtime_ns, reason FROM failures ORDER BY id");
  std::vector<CacheFailure> out;
  while (st.step()) {
    CacheFailure f;
    f.id = st.text(0);
    f.path = st.text(1);
    f.source_size = st.int64(2);
    f.source_mtime_ns = st.int64(3);
    f.reason = st.text(4);
    out.push_back(std::move(f));
  }
  return out;
}

}  // namespace schema
}  // namespace mg::audio
