// What `melgraph graph stats` and `graph select` both print about the edges and the catalog,
// as text and as JSON.
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "apps/cmd_graph.h"

namespace mg::cli::graph_cmd {

namespace {

int64_t count_true(const std::vector<bool>& v) { return std::count(v.begin(), v.end(), true); }

}  // namespace

Json edge_stats_json(const InputOptions& in, const graph::GraphInputs& l) {
  const auto& s = l.edges.stats;
  Json j;
  j["edges_file"] = in.edges;
  j["nodes"] = l.graph->num_nodes();
  j["edges"] = l.graph->num_edges();
  j["lines"] = s.lines;
  j["edge_lines"] = s.edges_read;
  j["comments"] = s.comments;
  j["blank"] = s.blank;
  j["header"] = s.header;
  j["delimiter"] = s.delimiter == '\t' ? std::string("tab") : std::string(1, s.delimiter);
  j["gzip"] = s.gzip;
  j["weighted"] = !l.edges.weight.empty();
  j["dropped"] = Json{{"self_loops", s.self_loops}, {"duplicates", s.duplicates}, {"bad_lines", s.bad_lines}};
  return j;
}

Json catalog_json(const graph::GraphInputs& l) {
  return Json{{"catalog_file", l.catalog.source},
              {"items", static_cast<int64_t>(l.catalog.items.size())},
              {"graph_nodes_with_audio", count_true(l.coverage.has_audio)},
              {"graph_nodes_without_audio", l.coverage.nodes_without_audio},
              {"catalog_items_not_in_graph", l.coverage.items_not_in_graph},
              {"bad_lines", l.catalog.bad_lines},
              {"duplicate_ids", l.catalog.duplicates}};
}

void print_edge_stats(const InputOptions& in, const graph::GraphInputs& l) {
  const auto& s = l.edges.stats;
  std::printf("edges file: %s (%s-delimited%s%s)\n", in.edges.c_str(), graph::delimiter_name(s.delimiter).c_str(),
              s.header ? ", header" : "", s.gzip ? ", gzip" : "");
  std::printf("nodes: %d\nedges: %lld\n", l.graph->num_nodes(), static_cast<long long>(l.graph->num_edges()));
  std::printf("lines: %lld (%lld edge lines, %lld comments, %lld blank)\n", static_cast<long long>(s.lines),
              static_cast<long long>(s.edges_read), static_cast<long long>(s.comments),
              static_cast<long long>(s.blank));
  std::printf("dropped: %lld self-loops, %lld duplicates, %lld bad lines\n", static_cast<long long>(s.self_loops),
              static_cast<long long>(s.duplicates), static_cast<long long>(s.bad_lines));
}

void print_catalog(const graph::GraphInputs& l) {
  std::printf("catalog: %s (%zu items", l.catalog.source.c_str(), l.catalog.items.size());
  if (l.catalog.bad_lines || l.catalog.duplicates)
    std::printf("; skipped %lld bad lines, %lld duplicate ids", static_cast<long long>(l.catalog.bad_lines),
                static_cast<long long>(l.catalog.duplicates));
  std::printf(")\n");
  std::printf("items with audio: %lld\ngraph nodes without audio: %lld\ncatalog items not in graph: %lld\n",
              static_cast<long long>(count_true(l.coverage.has_audio)),
              static_cast<long long>(l.coverage.nodes_without_audio),
              static_cast<long long>(l.coverage.items_not_in_graph));
}

}  // namespace mg::cli::graph_cmd
