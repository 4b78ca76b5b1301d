#include "engine/index/index_eval.h"

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <unordered_set>

#include "engine/index/index_query.h"
#include "engine/io/json_text.h"
#include "engine/timer.h"

namespace mg::index {

using Json = nlohmann::json;

int in_degree_bucket(int64_t in_degree) {
  return in_degree <= 0 ? 0 : static_cast<int>(std::bit_width(static_cast<uint64_t>(in_degree)));
}

std::vector<std::string> read_id_list(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IndexInputError(path + ": cannot open the list of query ids");
  std::vector<std::string> ids;
  std::string line;
  while (std::getline(in, line)) {
    const size_t b = line.find_first_not_of(" \t\r");
    if (b == std::string::npos || line[b] == '#') continue;
    const size_t e = line.find_last_not_of(" \t\r");
    ids.push_back(line.substr(b, e - b + 1));
  }
  if (in.bad()) throw IndexInputError(path + ": read failed");
  if (ids.empty()) throw IndexInputError(path + ": lists no id (one id per line expected)");
  return ids;
}

namespace {

void check_eval_options(const EvalOptions& o) {
  check_k(o.k);
  if (o.hops < 1 || o.hops > 255) throw IndexInputError("--hops must be in 1..255 (got " + std::to_string(o.hops) + ")");
  if (o.wide_k < 0 || o.wide_k > kMaxTopkCuda)
    throw IndexInputError("--wide-k must be in 0.." + std::to_string(kMaxTopkCuda) + " (got " +
                          std::to_string(o.wide_k) + ")");
}

// The index's rows against the graph's nodes, and the rows that are queries: those in the
// graph, and in the list when one is given. Counts what matched in r.
struct EvalQueries {
  std::vector<int32_t> row_of_node;  // per graph node: its index row, -1 if none
  std::vector<int32_t> rows, nodes;  // per query
};

EvalQueries match_queries(const Index& index, const graph::PreferenceGraph& g, const EvalOptions& o, EvalReport& r) {
  const std::unordered_set<std::string> listed(o.queries.begin(), o.queries.end());
  r.queries_listed = static_cast<int64_t>(listed.size());
  EvalQueries eq;
  eq.row_of_node.assign(static_cast<size_t>(g.num_nodes()), -1);
  int64_t listed_found = 0;
  for (int64_t row = 0; row < index.size(); ++row) {
    const std::string& id = index.items[static_cast<size_t>(row)].id;
    const auto node = g.find(id);
    if (!node) {
      ++r.not_in_graph;
      continue;
    }
    eq.row_of_node[static_cast<size_t>(*node)] = static_cast<int32_t>(row);
    if (!listed.empty() && !listed.count(id)) continue;
    listed_found += listed.empty() ? 0 : 1;
    eq.rows.push_back(static_cast<int32_t>(row));
    eq.nodes.push_back(*node);
  }
  r.queries_not_found = r.queries_listed - listed_found;
  if (eq.rows.empty() && !listed.empty())
    throw IndexInputError("none of the " + std::to_string(listed.size()) + " ids of " +
                          (o.queries_source.empty() ? std::string("the query list") : o.queries_source) +
                          " is both an item of " + index.source +
                          " and a node of the graph: was the index exported from this run's catalog?");
  if (eq.rows.empty())
    throw IndexInputError("none of the " + std::to_string(index.size()) + " items of " + index.source +
                          " is a node of the graph: the edge list and the index name different items");
  return eq;
}

// One batch of queries: their vectors, themselves to exclude, and their relevant rows (graph
// neighbours within `hops`, both edge directions) with the distances.
struct QueryBatch {
  std::vector<float> vectors;  // [n, dim]
  std::vector<int32_t> exclude;
  std::vector<std::vector<int32_t>> rel_items;
  std::vector<std::vector<uint8_t>> rel_hops;
  std::vector<int32_t> dist, scratch;  // BFS scratch
};

void fill_batch(QueryBatch& b, const Index& index, const graph::PreferenceGraph& g, const EvalQueries& eq, size_t b0,
                size_t n, int hops) {
  b.vectors.resize(n * static_cast<size_t>(index.dim));
  b.exclude.resize(n);
  b.rel_items.assign(n, {});
  b.rel_hops.assign(n, {});
  for (size_t q = 0; q < n; ++q) {
    const int32_t row = eq.rows[b0 + q];
    std::copy_n(index.vector(row), index.dim, b.vectors.data() + q * static_cast<size_t>(index.dim));
    b.exclude[q] = row;
    g.bfs(eq.nodes[b0 + q], /*directed=*/false, hops, b.dist, b.scratch);
    for (const int32_t v : b.scratch) {
      const int32_t rv = eq.row_of_node[static_cast<size_t>(v)];
      if (rv < 0 || rv == row) continue;
      b.rel_items[q].push_back(rv);
      b.rel_hops[q].push_back(static_cast<uint8_t>(b.dist[static_cast<size_t>(v)]));
    }
  }
}

// recall@k of a random ranking for a query with R relevant among `candidates`: it puts
// k * R / candidates relevant items in the top k.
double chance_recall(int k, double R, double candidates) {
  const double hits = candidates > 0 ? std::min<double>(k, candidates) * R / candidates : 0.0;
  return hits / std::min<double>(k, R);
}

// The per-in-degree rows of the report: bucket b holds in-degrees [2^(b-1), 2^b - 1], 0 alone.
std::vector<EvalBucket> degree_buckets(const RetrievalAccumulator& acc, int max_bucket) {
  std::vector<EvalBucket> out;
  for (int b = 0; b <= max_bucket; ++b) {
    const RetrievalMetrics m = acc.bucket(b);
    if (m.queries + m.skipped == 0) continue;
    EvalBucket e;
    e.lo = b == 0 ? 0 : int64_t{1} << (b - 1);
    e.hi = b == 0 ? 0 : (int64_t{1} << b) - 1;
    e.label = e.lo == e.hi ? std::to_string(e.lo) : std::to_string(e.lo) + "-" + std::to_string(e.hi);
    e.metrics = m;
    out.push_back(e);
  }
  return out;
}

}  // namespace

EvalReport evaluate_index(Backend& be, const Index& index, const graph::PreferenceGraph& g, const EvalOptions& o) {
  const auto t0 = WallClock::now();
  check_eval_options(o);
  EvalReport r;
  r.k = o.k;
  r.hops = o.hops;
  r.wide_k = o.wide_k;
  r.index_path = index.source;
  r.items = index.size();
  const EvalQueries eq = match_queries(index, g, o, r);

  const auto bucket_of = [&](size_t q) { return in_degree_bucket(g.in_degree()[static_cast<size_t>(eq.nodes[q])]); };
  int max_bucket = 0;
  for (size_t q = 0; q < eq.nodes.size(); ++q) max_bucket = std::max(max_bucket, bucket_of(q));
  RetrievalAccumulator acc(o.k, max_bucket + 1);
  RetrievalAccumulator acc_wide(std::max(o.wide_k, 1));
  // One ranking serves both cut-offs; deeper than the index it is the whole index.
  const int depth = static_cast<int>(std::min<int64_t>(std::max(o.k, o.wide_k), std::max<int64_t>(index.size(), 1)));
  const auto candidates = static_cast<double>(index.size() - 1);
  const auto batch = static_cast<size_t>(std::max<int64_t>(1, o.query_batch));
  double chance_sum = 0;
  QueryBatch qb;
  std::vector<int32_t> top, ranked;
  std::vector<float> sims;
  Searcher searcher(be, index);  // the vectors go to the device once
  for (size_t b0 = 0; b0 < eq.rows.size(); b0 += batch) {
    const size_t nb = std::min(eq.rows.size() - b0, batch);
    fill_batch(qb, index, g, eq, b0, nb, o.hops);
    searcher.search(qb.vectors.data(), static_cast<int64_t>(nb), depth, qb.exclude, top, sims);
    for (size_t q = 0; q < nb; ++q) {
      ranked.clear();
      for (int j = 0; j < depth; ++j) {
        const int32_t c = top[q * static_cast<size_t>(depth) + static_cast<size_t>(j)];
        if (c >= 0) ranked.push_back(c);
      }
      const RelevantSet rel{qb.rel_items[q], qb.rel_hops[q]};
      if (o.wide_k > 0) acc_wide.add(ranked, rel);
      if (acc.add(ranked, rel, bucket_of(b0 + q)))  // reads the first k
        chance_sum += chance_recall(o.k, static_cast<double>(qb.rel_items[q].size()), candidates);
    }
  }
  r.overall = acc.overall();
  if (o.wide_k > 0) r.wide = acc_wide.overall();
  r.spread = similarity_spread(index.vectors.data(), index.size(), index.dim);
  r.chance_recall = r.overall.queries > 0 ? chance_sum / static_cast<double>(r.overall.queries) : 0.0;
  r.buckets = degree_buckets(acc, max_bucket);
  r.seconds = seconds_since(t0);
  return r;
}

namespace {

Json metrics_json(const RetrievalMetrics& m) {
  return Json{{"queries", m.queries}, {"skipped", m.skipped}, {"recall", m.recall},
              {"ndcg", m.ndcg},       {"map", m.map},         {"hit_rate", m.hit_rate}};
}

std::string row(const std::string& label, const RetrievalMetrics& m) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "%-12s %8lld %8lld   %6.3f  %6.3f  %6.3f  %6.3f\n", label.c_str(),
                static_cast<long long>(m.queries), static_cast<long long>(m.skipped), m.recall, m.ndcg, m.map,
                m.hit_rate);
  return buf;
}

}  // namespace

std::string format_spread(const SimilaritySpread& s) {
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "spread: cosine similarity of %s %lld item pairs: median %.3f, 5th percentile %.3f, 95th %.3f; "
                "mean vector length %.3f",
                s.sampled ? "a random sample of" : "all", static_cast<long long>(s.pairs), s.median, s.p5, s.p95,
                s.mean_norm);
  return buf;
}

Json spread_json(const SimilaritySpread& s) {
  return Json{{"pairs", s.pairs}, {"sampled", s.sampled}, {"median", s.median},
              {"p5", s.p5},       {"p95", s.p95},         {"mean_norm", s.mean_norm}};
}

std::string format_eval(const EvalReport& r) {
  char buf[256];
  std::string out;
  std::snprintf(buf, sizeof buf,
                "%lld items in the index, %lld not in the graph; relevant: graph neighbours within %d hop%s "
                "(undirected)\n",
                static_cast<long long>(r.items), static_cast<long long>(r.not_in_graph), r.hops, r.hops == 1 ? "" : "s");
  out += buf;
  std::snprintf(buf, sizeof buf, "%-12s %8s %8s   %-6s  %-6s  %-6s  %-6s\n", "in-degree", "queries", "skipped",
                ("R@" + std::to_string(r.k)).c_str(), ("nDCG@" + std::to_string(r.k)).c_str(),
                ("mAP@" + std::to_string(r.k)).c_str(), ("hit@" + std::to_string(r.k)).c_str());
  out += buf;
  for (const EvalBucket& b : r.buckets) out += row(b.label, b.metrics);
  out += row("all", r.overall);
  if (r.wide_k > 0) {
    std::snprintf(buf, sizeof buf, "nDCG@%d %.3f, recall@%d %.3f (the same queries, a wider cut-off)\n", r.wide_k,
                  r.wide.ndcg, r.wide_k, r.wide.recall);
    out += buf;
  }
  if (r.queries_listed > 0) {
    std::snprintf(buf, sizeof buf, "queries: %lld listed ids, %lld of them not in the index or not in the graph\n",
                  static_cast<long long>(r.queries_listed), static_cast<long long>(r.queries_not_found));
    out += buf;
  }
  std::snprintf(buf, sizeof buf, "chance recall@%d: %.3f (a random ranking); %.2f s\n", r.k, r.chance_recall, r.seconds);
  out += buf;
  out += format_spread(r.spread) + "\n";
  return out;
}

std::string eval_json(const EvalReport& r) {
  Json buckets = Json::array();
  for (const EvalBucket& b : r.buckets) {
    Json j = metrics_json(b.metrics);
    j["in_degree_min"] = b.lo;
    j["in_degree_max"] = b.hi;
    j["label"] = b.label;
    buckets.push_back(j);
  }
  Json wide = nullptr;
  if (r.wide_k > 0) {
    wide = metrics_json(r.wide);
    wide["k"] = r.wide_k;
  }
  return json_text(Json{{"index", r.index_path},
                        {"edges", r.edges_path},
                        {"k", r.k},
                        {"wide", wide},
                        {"queries_listed", r.queries_listed},
                        {"queries_not_found", r.queries_not_found},
                        {"spread", spread_json(r.spread)},
                        {"hops", r.hops},
                        {"items", r.items},
                        {"not_in_graph", r.not_in_graph},
                        {"overall", metrics_json(r.overall)},
                        {"chance_recall", r.chance_recall},
                        {"buckets", buckets},
                        {"seconds", r.seconds}},
                   2);
}

}  // namespace mg::index
