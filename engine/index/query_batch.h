// `melgraph query --queries FILE|-`: many queries against one index in one process. The index,
// the backend and (for audio queries) the model are loaded once; the queries of a batch are
// searched together, one matrix product (FilteredSearch, index_query.h), on the GPU when the
// backend has one.
//
// Input, one query per line:
//   {"item": "ID"} | {"audio": "PATH"} | {"vector": [x, ...]}   JSON lines (a vector of the
//                                                              index's dim, normalised here)
//   ID | PATH                                                  plain text: an id of the index,
//                                                              else an audio file
// Blank lines and lines starting with '#' are skipped.
// Output, one JSON line per query, in input order:
//   {"line": N, "query": ..., "kind": "item"|"audio"|"vector", "k": K, "results": [hit_json ...]}
//   {"line": N, "query": ..., "error": "..."}   a query that cannot be answered (unknown id,
//                                               audio that does not decode, a malformed line);
//                                               the others are still answered
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "engine/index/index_query.h"

namespace mg::index {

struct QueryLine {
  int64_t line = 0;  // 1-based, in the input
  std::string text;
};

enum class QueryKind { Item, Audio, Vector };

struct QueryRequest {
  QueryKind kind = QueryKind::Item;
  std::string text;           // the id or the audio path; empty for a vector
  std::vector<float> vector;  // a vector query's [dim], unit
};

// One input line as a query; nullopt for a blank or '#' line. IndexInputError saying what is
// wrong with the line (the caller adds the file and line).
std::optional<QueryRequest> parse_query_line(const Index& index, const std::string& text);

class BatchQuery {
 public:
  // checkpoint: for audio queries (empty: the one the index records; checked at the first
  // audio query, so a batch of ids needs no checkpoint).
  // ann: the approximate index for unfiltered queries (null: exact).
  BatchQuery(Backend& be, const Index& index, const QueryFilter& filter, int k, std::string checkpoint,
             const AnnSearcher* ann = nullptr);
  ~BatchQuery();
  BatchQuery(const BatchQuery&) = delete;
  BatchQuery& operator=(const BatchQuery&) = delete;

  // One JSON line (no newline) per query line, in order.
  std::vector<std::string> run(const std::vector<QueryLine>& lines);
  int64_t answered() const { return answered_; }
  int64_t failed() const { return failed_; }
  int64_t audio_embedded() const { return audio_embedded_; }

 private:
  Backend& be_;
  const Index& index_;
  int k_;
  std::string checkpoint_;
  QueryFilter filter_;  // exclude_same of an audio query looks up its item (audio_query_row)
  FilteredSearch search_;
  std::unique_ptr<AudioQueryEmbedder> embedder_;  // at the first audio query
  int64_t answered_ = 0, failed_ = 0, audio_embedded_ = 0;
};

// Reads lines from `fd` and hands them on in batches of at most max_batch: a batch goes as soon
// as it is full, at the end of the input, or when no further input is ready (poll), so a
// pipeline that writes one query and waits gets its answer. Returns the lines read.
// std::runtime_error naming `source` when reading fails.
int64_t read_query_batches(int fd, const std::string& source, size_t max_batch,
                           const std::function<void(const std::vector<QueryLine>&)>& on_batch);

}  // namespace mg::index
