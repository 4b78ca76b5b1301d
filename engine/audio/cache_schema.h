// The audio cache's on-disk layout (see audio_cache.h): file names, the SQLite schema and
// its meta rows, shared by the reader (AudioCache) and the writer (CacheWriter).
#pragma once
#include <string>
#include <vector>

#include "engine/audio/audio_cache.h"
#include "engine/sqlite_db.h"

namespace mg::audio::schema {

// Bump when the tables or the meaning of a column change; a cache of another version is
// refused (user_version), never guessed at.
constexpr int kVersion = 1;
inline const std::string kFormat = "melgraph-audio-cache";
inline const std::string kPcmFile = "pcm.bin";
inline const std::string kIndexFile = "index.sqlite";
// A compaction writes the live items here, then renames it over pcm.bin (cache_writer.cpp).
inline const std::string kCompactFile = "pcm.bin.compact";

// Creates the tables and meta rows of an empty cache, in one transaction.
void create(SqliteDb& db, const CacheSettings& s);
// Whether the database has no tables yet (a file SQLite just created).
bool is_empty(SqliteDb& db);
// Checks that `db` is a melgraph cache of this schema version and returns its settings.
CacheSettings read_settings(SqliteDb& db, const std::string& dir);
// Throws CacheError naming the first setting that differs and what to do about it.
void check_same(const CacheSettings& cache, const CacheSettings& wanted, const std::string& dir);

std::string get_meta(SqliteDb& db, const std::string& key, const std::string& fallback);
void set_meta(SqliteDb& db, const std::string& key, const std::string& value);
void delete_meta(SqliteDb& db, const std::string& key);
int64_t committed_pcm_bytes(SqliteDb& db);  // meta pcm_bytes

std::vector<CacheEntry> load_items(SqliteDb& db);  // in pcm.bin order
std::vector<CacheFailure> load_failures(SqliteDb& db);

}  // namespace mg::audio::schema
