// The audio cache's on-disk layout (see audio_cache.h): file names, the SQLite schema and
// its meta rows, shared by the reader (AudioCache) and the writer (CacheWriter).
#pragma once
#include <string>
#include <vector>

#include "engine/audio/audio_cache.h"
#include "engine/sqlite/sqlite_db.h"

namespace mg::audio::schema {

// Bump when the tables or the meaning of a column change; a cache of another version is
// refused (user_version), never guessed at, except those migrate() knows. Version 2 added
// items.decoder (version-1 caches read as decoder 1 and are migrated by the next writer).
constexpr int kVersion = 2;

// What decoded an item, so that a cache re-decodes what a better decoder now decodes
// differently (its sample count or samples), and only that. Each revision says what changed:
//   1  FFmpeg for every format
//   2  Ogg Vorbis trimmed as libvorbis trims it (vorbis_trim.h); MP3 through libmpg123
constexpr int kDecoderRevision = 2;
// The revision an item of `codec` (libavcodec's codec name, CacheEntry::codec) needs: a row
// decoded before it is stale.
int decoder_revision_needed(const std::string& codec);
inline const std::string kFormat = "melgraph-audio-cache";
inline const std::string kPcmFile = "pcm.bin";
inline const std::string kIndexFile = "index.sqlite";
// A compaction writes the live items here, then renames it over pcm.bin (cache_writer.cpp).
inline const std::string kCompactFile = "pcm.bin.compact";
// flock'ed: exclusively by the writer, shared by a reader while it opens (file_lock.h). Not one
// of the cache's data files: --rebuild keeps it, as another process may hold it.
inline const std::string kLockFile = "cache.lock";

// Creates the tables and meta rows of an empty cache, in one transaction.
void create(SqliteDb& db, const CacheSettings& s);
// Whether the database has no tables yet (a file SQLite just created).
bool is_empty(SqliteDb& db);
// A version-1 cache's items table gains its decoder column (every row decoder 1), in one
// transaction; a no-op on a version-2 cache. The writer calls it, holding the cache's lock.
void migrate(SqliteDb& db);
// Checks that `db` is a melgraph cache of this schema version (or one migrate() knows) and
// returns its settings.
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
