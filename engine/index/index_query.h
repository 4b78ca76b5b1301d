// `melgraph query`: the nearest items of an index to one of its items (its stored vector) or to
// an audio file (embedded with the model the index records), by exact top-k cosine similarity
// on a backend (Backend::topk_cosine: BLAS + partial selection on the CPU, cuBLAS + a selection
// kernel on the GPU).
//
// The index is read with read_index (read-only: a query never changes the file). An audio query
// is embedded like the index's items were: the checkpoint in meta "checkpoint" (or the one the
// caller names, which must have the SHA-256 in meta "checkpoint_sha256"), decoded with the
// config's [audio] request, meta "crops" evenly spaced clips, mean, L2-normalised.
#pragma once
#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "engine/index/index_format.h"
#include "engine/backend.h"

namespace mg::index {

class AnnSearcher;

// Exact top-k among a matrix of unit rows (an index's vectors, or a subset of them) on a
// backend. On a device backend the rows are uploaded once, at construction, and stay there for
// every search; beyond kMaxTopkCuda the CPU's topk_cosine answers instead. The rows (or the
// index) must outlive the searcher.
class Searcher {
 public:
  Searcher(Backend& be, const Index& index);
  Searcher(Backend& be, const float* rows, int64_t n, int dim);  // rows [n, dim], host
  ~Searcher();
  Searcher(const Searcher&) = delete;
  Searcher& operator=(const Searcher&) = delete;

  int64_t size() const { return n_; }
  // queries [Q, dim] (host) -> out_items [Q, k] (rows of the matrix, -1 padding) and out_sims
  // [Q, k]. exclude: empty or [Q] rows to leave out (-1 none).
  void search(const float* queries, int64_t Q, int k, const std::vector<int32_t>& exclude,
              std::vector<int32_t>& out_items, std::vector<float>& out_sims);

 private:
  Backend& be_;
  const float* host_;  // [n, dim]
  int64_t n_;
  int dim_;
  float* items_ = nullptr;  // device [n, dim]; null on the CPU backend (the host copy serves)
};

// One search with a temporary Searcher.
void search(Backend& be, const Index& index, const float* queries, int64_t Q, int k, const std::vector<int32_t>& exclude,
            std::vector<int32_t>& out_items, std::vector<float>& out_sims);

// Which items a query may return, by catalog column: `id`, `path`, `title`, `artist`, or any
// other column of the catalog the index was exported from (items.extra). Values compare as
// text, exactly; they are never part of any SQL.
//   where:        every (column, value) pair must hold for an item to be returned;
//   exclude_same: an item query leaves out the items whose value in this column is the query
//                 item's ("similar tracks, not by the same artist"); a query item without a
//                 value, and a query by vector (no catalog row), exclude nothing. A query by
//                 an audio file takes the value of the index item with that file (the same
//                 SHA-256, or for a schema-1 index the same path), itself left out too; a file
//                 that is no item's has no value, and the query is refused (audio_query_row).
struct QueryFilter {
  std::vector<std::pair<std::string, std::string>> where;
  std::string exclude_same;
  bool empty() const { return where.empty() && exclude_same.empty(); }
};

// Parses COLUMN=VALUE (the first '=' splits; the value may be empty or hold '='). IndexInputError
// for text without '=' or with an empty column.
std::pair<std::string, std::string> parse_where(const std::string& text);

// Every row's value in a catalog column (nullopt: the item has none). IndexInputError naming
// the index and the columns it has when no item has the column.
std::vector<std::optional<std::string>> column_values(const Index& index, const std::string& column);

struct QueryHit {
  int64_t row = 0;
  float similarity = 0;
};

// IndexInputError unless 1 <= k <= kMaxK.
void check_k(int k);

struct QueryResult {
  std::string query;        // the item id, or the audio file
  int64_t query_row = -1;   // an item query: its row (never among the hits)
  std::vector<QueryHit> hits;
  double embed_seconds = 0, search_seconds = 0;
};

// Exact filtered top-k over an index: the filter is applied inside the search, so a query
// gets k results whenever k items qualify, however many are filtered out. The `where` subset
// is gathered once (and uploaded once on a device); exclude_same is met by asking the search
// for k plus the number of items that share the query's value (when that is at most
// kOverfetchLimit), else by a search over the subset without that value. The index must
// outlive it. With `ann` (ann.h) an unfiltered search asks the approximate index instead
// (filters always search exactly); it must outlive the search too.
class FilteredSearch {
 public:
  static constexpr int64_t kOverfetchLimit = 256;
  FilteredSearch(Backend& be, const Index& index, const QueryFilter& filter, const AnnSearcher* ann = nullptr);
  ~FilteredSearch();
  FilteredSearch(const FilteredSearch&) = delete;
  FilteredSearch& operator=(const FilteredSearch&) = delete;

  // The number of items the `where` pairs admit.
  int64_t admitted() const { return static_cast<int64_t>(rows_.size()); }
  // queries [Q, dim] (host, unit rows); query_rows [Q]: the query's row in the index (left out
  // of its results and the source of exclude_same's value) or -1. Hits per query, best first
  // (ties: the lower row), at most k (IndexInputError unless 1 <= k <= kMaxK).
  std::vector<std::vector<QueryHit>> search(const float* queries, const std::vector<int64_t>& query_rows, int k);

 private:
  Backend& be_;
  const Index& index_;
  std::vector<int64_t> rows_;                            // admitted rows, ascending
  std::vector<float> vectors_;                           // [rows_.size(), dim]: empty when every row is admitted
  std::vector<std::optional<std::string>> same_;         // exclude_same's column, [index rows]; empty without it
  std::unordered_map<std::string, int64_t> same_count_;  // admitted items per value of that column
  std::unique_ptr<Searcher> searcher_;                   // over the admitted rows
  const AnnSearcher* ann_ = nullptr;                     // unfiltered searches only
  std::vector<std::vector<QueryHit>> search_excluding(const float* queries, const std::vector<size_t>& which,
                                                      const std::string& value, int k);
};

// The item's nearest neighbours, itself excluded. IndexInputError for an id the index lacks,
// naming close ids when there are some.
QueryResult query_item(Backend& be, const Index& index, const std::string& id, int k, const QueryFilter& filter = {},
                       const AnnSearcher* ann = nullptr);

// The row of an id; IndexInputError naming close ids when the index lacks it.
int64_t require_item(const Index& index, const std::string& id);

// Verifies the checkpoint the index was made with: `checkpoint` (empty: meta "checkpoint") must
// exist and have the SHA-256 of meta "checkpoint_sha256", and its embedding width must be the
// index's dim. Returns the path to use. IndexInputError otherwise, saying what to pass.
std::string check_index_checkpoint(const Index& index, const std::string& checkpoint);

// Audio files embedded as the index's items were (see above): the checkpoint checked and the
// model built once, for any number of files.
class AudioQueryEmbedder {
 public:
  AudioQueryEmbedder(Backend& be, const Index& index, const std::string& checkpoint);
  ~AudioQueryEmbedder();
  // [dim], unit. Throws audio::AudioError ("<file>: <reason>") for a file that gives no audio.
  std::vector<float> embed(const std::string& audio_path);

 private:
  struct State;
  std::unique_ptr<State> s_;
};

// The embedding of one audio file (an AudioQueryEmbedder for one file).
std::vector<float> embed_audio_query(Backend& be, const Index& index, const std::string& audio_path,
                                     const std::string& checkpoint);

// The row exclude_same takes its value from for a query by `audio_path`: -1 without
// exclude_same; with it, the item whose file has the same SHA-256 (the same absolute path for a
// schema-1 index, which has no hashes). IndexInputError naming the file and the column when
// no item has that file: nothing to exclude by, and silence would return the same album.
int64_t audio_query_row(const Index& index, const std::string& audio_path, const QueryFilter& filter);

// Embeds the file (check_index_checkpoint first) and searches.
QueryResult query_audio(Backend& be, const Index& index, const std::string& audio_path, int k,
                        const std::string& checkpoint, const QueryFilter& filter = {},
                        const AnnSearcher* ann = nullptr);

// Up to `max` ids of the index close to `id` (edit distance, then prefix/substring matches);
// empty for indexes too large to scan cheaply.
std::vector<std::string> similar_ids(const Index& index, const std::string& id, size_t max = 3);

// rank, id, title, artist, similarity: a table, or one JSON object
// {"query": ..., "k": ..., "results": [{"rank", "id", "title", "artist", "similarity", "path"}]}.
std::string format_hits(const Index& index, const QueryResult& r);
std::string hits_json(const Index& index, const QueryResult& r, int k);
// A hit as JSON: {"rank", "id", "title", "artist", "similarity", "path"} (rank from 1).
nlohmann::ordered_json hit_json(const Index& index, const QueryHit& hit, size_t rank);

}  // namespace mg::index
