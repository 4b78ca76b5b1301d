#include "graph/graph_report.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <utility>

namespace mg::graph {

namespace {

// Nearest-rank percentile of sorted values: the smallest value with at least p of them <= it.
int32_t percentile(const std::vector<int32_t>& sorted, double p) {
  const auto n = static_cast<double>(sorted.size());
  auto rank = static_cast<int64_t>(std::ceil(p * n));
  rank = std::clamp<int64_t>(rank, 1, static_cast<int64_t>(sorted.size()));
  return sorted[static_cast<size_t>(rank - 1)];
}

}  // namespace

GraphInputs load_graph_inputs(const std::string& edges, const EdgeLoadOptions& options, const std::string& catalog,
                              bool skip_bad_lines) {
  GraphInputs in;
  in.edges = load_edge_list(edges, options);
  if (in.edges.num_edges() == 0) {
    const auto& s = in.edges.stats;
    throw GraphInputError("edge list " + edges + ": no edges (" + std::to_string(s.lines) + " lines: " +
                          std::to_string(s.edges_read) + " edge lines, " + std::to_string(s.self_loops) +
                          " self-loops, " + std::to_string(s.bad_lines) + " bad lines skipped, " +
                          std::to_string(s.comments) + " comments); give a file with src,dst lines");
  }
  in.graph = std::make_unique<PreferenceGraph>(in.edges);
  if (!catalog.empty()) {
    in.has_catalog = true;
    in.catalog = load_catalog(catalog, skip_bad_lines);
    in.coverage = audio_coverage(in.edges, in.catalog);
  }
  return in;
}

std::string delimiter_name(char delimiter) {
  switch (delimiter) {
    case '\t': return "tab";
    case ',': return "comma";
    case ';': return "semicolon";
    case '|': return "pipe";
    default: return std::string("'") + delimiter + "'";
  }
}

InDegreeSummary summarize_in_degree(const PreferenceGraph& g) {
  std::vector<int32_t> deg = g.in_degree();
  std::sort(deg.begin(), deg.end());
  InDegreeSummary s;
  if (deg.empty()) return s;
  s.min = deg.front();
  s.median = percentile(deg, 0.5);
  s.p90 = percentile(deg, 0.9);
  s.p99 = percentile(deg, 0.99);
  s.max = deg.back();
  s.bins.push_back({0, 0, 0});
  for (int64_t lo = 1; lo <= s.max; lo *= 2)
    s.bins.push_back({static_cast<int32_t>(lo), static_cast<int32_t>(std::min<int64_t>(2 * lo - 1, INT32_MAX)), 0});
  for (const int32_t d : deg) {
    size_t b = 0;
    while (b + 1 < s.bins.size() && d > s.bins[b].hi) ++b;
    ++s.bins[b].count;
  }
  return s;
}

SelectedTables build_selected_tables(const PreferenceGraph& g, Selection sel, const DistanceOptions& options) {
  SelectedTables r;
  r.sel = std::move(sel);
  r.tables = TripletTables::build(g, r.sel, options);
  for (int32_t a = 0; a < r.tables.n_items(); ++a) r.isolated += r.tables.near(a).empty() ? 1 : 0;
  r.with_pos = r.tables.anchors_with_positive();
  return r;
}

std::vector<std::vector<int32_t>> selection_hops(const PreferenceGraph& g, const Selection& sel, bool directed,
                                                 int max_depth) {
  std::vector<std::vector<int32_t>> hops(static_cast<size_t>(sel.size()));
  std::vector<int32_t> dist, scratch;
  for (int32_t a = 0; a < sel.size(); ++a) {
    g.bfs(sel.nodes[static_cast<size_t>(a)], directed, max_depth, dist, scratch);
    for (int32_t b = 0; b < sel.size(); ++b)
      hops[static_cast<size_t>(a)].push_back(dist[static_cast<size_t>(sel.nodes[static_cast<size_t>(b)])]);
  }
  return hops;
}

}  // namespace mg::graph
