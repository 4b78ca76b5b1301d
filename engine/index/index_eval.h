// `melgraph eval`: how well an index's nearest neighbours agree with a preference graph.
//
// Queries: every index item that is a node of the graph, or only the ids the caller lists (the
// held-out items of a training run: <run_dir>/held_out_items.txt). Its relevant items are the other
// index items within `hops` hops of it in the graph, edges walked both ways (undirected), each
// with its hop distance (PreferenceGraph::bfs). Candidates: every index item but the query.
// Ranking: exact top-k by cosine (Searcher, index_query.h). Scores: engine/retrieval_metrics.h
// (recall@k capped at min(k, |R|), hit@k, mAP@k, nDCG@k with gain 1/hops). A query without
// an indexed item within `hops` is skipped and counted; index items outside the graph are
// counted apart and never queried.
//
// In-degree buckets (the graph's in-degree of the query, the number of items recommending it):
// bucket 0 = in-degree 0, bucket b >= 1 = [2^(b-1), 2^b - 1] (1, 2-3, 4-7, ...): log2 buckets,
// so hubs and the long tail of rarely recommended items are scored apart.
//
// Beside the cut-off k, a wide cut-off (OLGA's nDCG@200: how far down the whole neighbourhood
// sits) from the same ranking, and the spread of the index's vectors (similarity_spread).
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/index/index_format.h"
#include "engine/backend.h"
#include "engine/retrieval_metrics.h"
#include "graph/preference_graph.h"

namespace mg::index {

struct EvalOptions {
  int k = 10;     // >= 1
  int hops = 1;   // 1..255
  int64_t query_batch = 1024;  // queries per top-k call
  int wide_k = 200;            // second cut-off (0: none), at most kMaxTopkCuda
  std::vector<std::string> queries;  // ids to query; empty: every index item in the graph
  std::string queries_source;        // where the ids came from (for messages)
};

// Ids, one per line ('#' comments and blank lines skipped, surrounding spaces trimmed), as
// the trainer writes held_out_items.txt. IndexInputError naming the file when it cannot be
// read or lists no id.
std::vector<std::string> read_id_list(const std::string& path);

struct EvalBucket {
  int64_t lo = 0, hi = 0;  // in-degree range, inclusive
  std::string label;       // "0", "1", "2-3", ...
  RetrievalMetrics metrics;
};

struct EvalReport {
  int k = 10, hops = 1;
  std::string index_path, edges_path;
  int64_t items = 0;          // in the index
  int64_t not_in_graph = 0;   // index items that are no graph node
  RetrievalMetrics overall;   // queries scored, skipped (no indexed neighbour within hops)
  int wide_k = 0;             // 0: no wide cut-off
  RetrievalMetrics wide;      // the same queries at wide_k
  int64_t queries_listed = 0;       // with EvalOptions::queries: ids listed
  int64_t queries_not_found = 0;    // of those, ids not in the index or not in the graph
  SimilaritySpread spread;    // cosine similarity of random pairs of the index's vectors
  double chance_recall = 0;   // mean over scored queries of a random ranking's expected recall@k
  std::vector<EvalBucket> buckets;  // non-empty buckets, ascending in-degree
  double seconds = 0;
};

// Bucket of an in-degree: 0 for 0, else floor(log2(d)) + 1.
int in_degree_bucket(int64_t in_degree);

// Throws IndexInputError for k < 1, hops outside 1..255, wide_k outside 0..kMaxTopkCuda, or when
// no index item (or no listed id) is in the graph.
EvalReport evaluate_index(Backend& be, const Index& index, const graph::PreferenceGraph& graph, const EvalOptions& o);

std::string format_eval(const EvalReport& r);
// One line: pairs, median, 5th and 95th percentile, mean vector length.
std::string format_spread(const SimilaritySpread& s);
// The same as JSON: pairs, sampled, median, p5, p95, mean_norm (eval --json, quality.json).
nlohmann::json spread_json(const SimilaritySpread& s);
std::string eval_json(const EvalReport& r);

}  // namespace mg::index
