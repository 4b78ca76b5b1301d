#include "apps/index/index_eval.h"

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "apps/index/index_query.h"

namespace mg::index {

using Json = nlohmann::json;

int in_degree_bucket(int64_t in_degree) {
  return in_degree <= 0 ? 0 : static_cast<int>(std::bit_width(static_cast<uint64_t>(in_degree)));
}

EvalReport evaluate_index(Backend& be, const Index& index, const graph::PreferenceGraph& g, const EvalOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  if (o.k < 1) throw IndexInputError("-k must be >= 1 (got " + std::to_string(o.k) + ")");
  if (o.hops < 1 || o.hops > 255) throw IndexInputError("--hops must be in 1..255 (got " + std::to_string(o.hops) + ")");
  EvalReport r;
  r.k = o.k;
  r.hops = o.hops;
  r.index_path = index.source;
  r.items = index.size();

  // Rows <-> graph nodes.
  std::vector<int32_t> row_of_node(static_cast<size_t>(g.num_nodes()), -1);
  std::vector<int32_t> queries;  // rows in the graph
  std::vector<int32_t> node_of_query;
  for (int64_t row = 0; row < index.size(); ++row) {
    const auto node = g.find(index.items[static_cast<size_t>(row)].id);
    if (!node) {
      ++r.not_in_graph;
      continue;
    }
    row_of_node[static_cast<size_t>(*node)] = static_cast<int32_t>(row);
    queries.push_back(static_cast<int32_t>(row));
    node_of_query.push_back(*node);
  }
  if (queries.empty())
    throw IndexInputError("none of the " + std::to_string(index.size()) + " items of " + index.source +
                          " is a node of the graph: the edge list and the index name different items");

  int max_bucket = 0;
  for (const int32_t node : node_of_query)
    max_bucket = std::max(max_bucket, in_degree_bucket(g.in_degree()[static_cast<size_t>(node)]));
  RetrievalAccumulator acc(o.k, max_bucket + 1);

  std::vector<int32_t> dist, scratch;
  std::vector<float> qvec, sims;
  std::vector<int32_t> exclude, top, ranked;
  std::vector<std::vector<int32_t>> rel_items;
  std::vector<std::vector<uint8_t>> rel_hops;
  double chance_sum = 0;
  const auto candidates = static_cast<double>(index.size() - 1);
  const int64_t batch = std::max<int64_t>(1, o.query_batch);
  Searcher searcher(be, index);  // the vectors go to the device once
  for (size_t b0 = 0; b0 < queries.size(); b0 += static_cast<size_t>(batch)) {
    const size_t nb = std::min(queries.size() - b0, static_cast<size_t>(batch));
    qvec.resize(nb * static_cast<size_t>(index.dim));
    exclude.resize(nb);
    rel_items.assign(nb, {});
    rel_hops.assign(nb, {});
    for (size_t q = 0; q < nb; ++q) {
      const int32_t row = queries[b0 + q];
      std::copy_n(index.vector(row), index.dim, qvec.data() + q * static_cast<size_t>(index.dim));
      exclude[q] = row;
      g.bfs(node_of_query[b0 + q], /*directed=*/false, o.hops, dist, scratch);
      for (const int32_t v : scratch) {
        const int32_t rv = row_of_node[static_cast<size_t>(v)];
        if (rv < 0 || rv == row) continue;
        rel_items[q].push_back(rv);
        rel_hops[q].push_back(static_cast<uint8_t>(dist[static_cast<size_t>(v)]));
      }
    }
    searcher.search(qvec.data(), static_cast<int64_t>(nb), o.k, exclude, top, sims);
    for (size_t q = 0; q < nb; ++q) {
      ranked.clear();
      for (int j = 0; j < o.k; ++j) {
        const int32_t c = top[q * static_cast<size_t>(o.k) + static_cast<size_t>(j)];
        if (c >= 0) ranked.push_back(c);
      }
      const int bucket = in_degree_bucket(g.in_degree()[static_cast<size_t>(node_of_query[b0 + q])]);
      if (acc.add(ranked, RelevantSet{rel_items[q], rel_hops[q]}, bucket)) {
        // A random ranking of the candidates puts k * |R| / candidates relevant items in the top k.
        const double R = static_cast<double>(rel_items[q].size());
        const double hits = candidates > 0 ? std::min<double>(o.k, candidates) * R / candidates : 0.0;
        chance_sum += hits / std::min<double>(o.k, R);
      }
    }
  }
  r.overall = acc.overall();
  r.chance_recall = r.overall.queries > 0 ? chance_sum / static_cast<double>(r.overall.queries) : 0.0;
  for (int b = 0; b <= max_bucket; ++b) {
    const RetrievalMetrics m = acc.bucket(b);
    if (m.queries + m.skipped == 0) continue;
    EvalBucket e;
    e.lo = b == 0 ? 0 : int64_t{1} << (b - 1);
    e.hi = b == 0 ? 0 : (int64_t{1} << b) - 1;
    e.label = e.lo == e.hi ? std::to_string(e.lo) : std::to_string(e.lo) + "-" + std::to_string(e.hi);
    e.metrics = m;
    r.buckets.push_back(e);
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
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
  std::snprintf(buf, sizeof buf, "chance recall@%d: %.3f (a random ranking); %.2f s\n", r.k, r.chance_recall, r.seconds);
  out += buf;
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
  return Json{{"index", r.index_path},
              {"edges", r.edges_path},
              {"k", r.k},
              {"hops", r.hops},
              {"items", r.items},
              {"not_in_graph", r.not_in_graph},
              {"overall", metrics_json(r.overall)},
              {"chance_recall", r.chance_recall},
              {"buckets", buckets},
              {"seconds", r.seconds}}
      .dump(2);
}

}  // namespace mg::index
