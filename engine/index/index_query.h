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
#include <string>
#include <vector>

#include "engine/index/index_format.h"
#include "engine/backend.h"

namespace mg::index {

// Exact top-k among an index's vectors on a backend. On a device backend the vectors are
// uploaded once, at construction, and stay there for every search; beyond kMaxTopkCuda the
// CPU's topk_cosine answers instead. The index must outlive the searcher.
class Searcher {
 public:
  Searcher(Backend& be, const Index& index);
  ~Searcher();
  Searcher(const Searcher&) = delete;
  Searcher& operator=(const Searcher&) = delete;

  // queries [Q, dim] (host) -> out_items [Q, k] (rows of the index, -1 padding) and out_sims
  // [Q, k]. exclude: empty or [Q] rows to leave out (-1 none).
  void search(const float* queries, int64_t Q, int k, const std::vector<int32_t>& exclude,
              std::vector<int32_t>& out_items, std::vector<float>& out_sims);

 private:
  Backend& be_;
  const Index& index_;
  float* items_ = nullptr;  // device [n, dim]; null on the CPU backend (the host copy serves)
};

// One search with a temporary Searcher.
void search(Backend& be, const Index& index, const float* queries, int64_t Q, int k, const std::vector<int32_t>& exclude,
            std::vector<int32_t>& out_items, std::vector<float>& out_sims);

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

// The item's nearest neighbours, itself excluded. IndexInputError for an id the index lacks,
// naming close ids when there are some.
QueryResult query_item(Backend& be, const Index& index, const std::string& id, int k);

// Verifies the checkpoint the index was made with: `checkpoint` (empty: meta "checkpoint") must
// exist and have the SHA-256 of meta "checkpoint_sha256", and its embedding width must be the
// index's dim. Returns the path to use. IndexInputError otherwise, saying what to pass.
std::string check_index_checkpoint(const Index& index, const std::string& checkpoint);

// The embedding of an audio file as the index's items were embedded (see above), [dim] unit.
// Throws audio::AudioError ("<file>: <reason>") for a file that gives no audio.
std::vector<float> embed_audio_query(Backend& be, const Index& index, const std::string& audio_path,
                                     const std::string& checkpoint);

// Embeds the file (check_index_checkpoint first) and searches.
QueryResult query_audio(Backend& be, const Index& index, const std::string& audio_path, int k,
                        const std::string& checkpoint);

// Up to `max` ids of the index close to `id` (edit distance, then prefix/substring matches);
// empty for indexes too large to scan cheaply.
std::vector<std::string> similar_ids(const Index& index, const std::string& id, size_t max = 3);

// rank, id, title, artist, similarity: a table, or one JSON object
// {"query": ..., "k": ..., "results": [{"rank", "id", "title", "artist", "similarity", "path"}]}.
std::string format_hits(const Index& index, const QueryResult& r);
std::string hits_json(const Index& index, const QueryResult& r, int k);

}  // namespace mg::index
