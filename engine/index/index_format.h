// The embedding index: the one SQLite file that `melgraph export` writes and `melgraph query`
// and `melgraph eval` read. docs/index-format.md is the reference for its schema:
//
//   items(item INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, path TEXT NOT NULL, title TEXT,
//         artist TEXT, in_degree INTEGER, extra TEXT NOT NULL, content_sha256 TEXT)
//                                      item = row of the matrix (0..n-1), extra = the other
//                                      catalog columns as a JSON object, content_sha256 = the
//                                      audio file's SHA-256 when it was embedded
//   embeddings(item INTEGER PRIMARY KEY REFERENCES items(item), vector BLOB NOT NULL,
//              checkpoint_sha256 TEXT NOT NULL)
//                                      little-endian float32 [dim]: sqlite-vec's vec_f32 layout;
//                                      the checkpoint that made it (always meta's)
//   meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)   format, dim, metric, config, checkpoint, ...
//   failures(id TEXT NOT NULL, path TEXT NOT NULL, reason TEXT NOT NULL)   items without audio
//   PRAGMA application_id = kIndexApplicationId ("MGIX"), PRAGMA user_version = kIndexSchemaVersion
//
// Writing (write_index) goes to a temporary file of its own beside the target (<path>.tmp-<pid>-<n>;
// those of killed writers are removed first), all rows in one transaction,
// then fsync, rename over the target and fsync of the directory: a reader, or an export that
// dies half-way, sees the previous index or the new one, never a mix.
// Reading (read_index) opens the file SQLITE_OPEN_READONLY: reading never changes it.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

namespace mg::index {

// 2: items.content_sha256 and embeddings.checkpoint_sha256 (export --update); 1 is still read.
constexpr int kIndexSchemaVersion = 2;
constexpr int32_t kIndexApplicationId = 0x4d474958;  // "MGIX"
constexpr const char* kIndexFormat = "melgraph-index";
// The widest embedding an index may hold; a larger meta dim is a damaged file, not a model.
constexpr int kMaxIndexDim = 1 << 16;
// The largest -k a query or an evaluation takes (a ranking deeper than the index is the
// whole index: the search stops at its size), and the most crops export averages per item.
constexpr int kMaxK = 1000000;
constexpr int kMaxCrops = 256;
// How far from 1 a stored vector's L2 norm may be (write_index and read_index check it): a
// float32 row normalised in float64 is within a few ulps of 1.
constexpr double kUnitNormTolerance = 1e-4;

// A file that is not a usable index (missing, not SQLite, another program's database, a newer
// schema, damaged rows) or a request it cannot answer (unknown id, another model): the input
// is wrong, not the run. The message names the file and what to do.
struct IndexInputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct IndexItem {
  std::string id, path;
  std::optional<std::string> title, artist;  // null when the catalog has no such column
  int64_t in_degree = -1;                    // -1 (NULL in the file): no edge list was given
  std::string extra = "{}";                  // JSON object: the other catalog columns
  std::string content_sha256;                // the audio file's SHA-256 at export; empty: unknown (schema 1)
};

struct IndexFailure {
  std::string id, path, reason;
};

struct Index {
  std::string source;                       // the file it was read from (empty before writing)
  int dim = 0;
  std::vector<IndexItem> items;             // matrix row order
  std::vector<float> vectors;               // [items.size(), dim], unit rows
  std::map<std::string, std::string> meta;  // key -> value
  std::vector<IndexFailure> failures;

  int64_t size() const { return static_cast<int64_t>(items.size()); }
  const float* vector(int64_t row) const { return vectors.data() + row * dim; }
  // The row of an id, or -1. (Built by read_index; rebuild_lookup() after editing items.)
  int64_t find(const std::string& id) const;
  void rebuild_lookup();
  // The value of a meta key; IndexInputError naming the file and the key when it is absent.
  const std::string& meta_value(const std::string& key) const;

 private:
  std::unordered_map<std::string, int64_t> row_of_;
};

// Writes `index` to `path` as described above. The writer adds the meta keys format,
// schema_version, dim, items, metric = cosine, normalized = true, vector_encoding and
// vectors_sha256; the caller's meta holds the rest. Throws std::invalid_argument for inconsistent contents (vector
// count, duplicate or empty ids, a non-finite or non-unit vector) and std::runtime_error naming
// the file when writing fails; the target is untouched then.
//
// Test hook: with the environment variable MELGRAPH_EXPORT_CRASH_AFTER=N, the writer ends the
// process with _exit(137) after inserting N embedding rows, before the commit, as a kill -9
// would mid-write. Not for use outside tests.
// Returns the vectors_sha256 it recorded.
std::string write_index(const std::string& path, const Index& index);

// Before any work: `out` may be written by an export. IndexInputError when it is a directory,
// an existing file that is not a melgraph index (export replaces only an index), or the same
// file as one of `inputs` (the checkpoint, the catalog, the edge list).
void check_index_target(const std::string& out, const std::vector<std::string>& inputs);

// Reads the whole index (vectors too unless with_vectors is false). Throws IndexInputError for
// a missing file, a file that is not an index, an index of a newer schema version, or rows that
// contradict the schema (a vector of the wrong length, rows not numbered 0..n-1, a repeated id).
Index read_index(const std::string& path, bool with_vectors = true);

// SHA-256 (hex) of the index's ids and vectors in row order (each id, a zero byte, its dim
// float32 values little-endian): meta "vectors_sha256", which ties an ANN file (ann.h) to
// the vectors it was built from.
std::string vectors_checksum(const Index& index);

// The time now as ISO 8601 UTC, e.g. 2025-01-31T12:00:00Z (meta created_at).
std::string utc_now_iso8601();

}  // namespace mg::index
