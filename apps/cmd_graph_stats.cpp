// `melgraph graph stats`: an edge list (and optionally a catalog) described: nodes, edges, what
// was dropped, the in-degree distribution, weakly connected components, how the catalog
// covers the graph, and with --top K how the top K would fare as anchors.
#include <cstdio>
#include <optional>
#include <string>

#include "apps/cmd_graph.h"
#include "engine/io/json_text.h"

namespace mg::cli::graph_cmd {

void run_stats(const StatsOptions& o) {
  const InputOptions& in = o.in;
  const graph::GraphInputs l = load_inputs(in);
  std::optional<graph::SelectedTables> top;
  if (o.top > 0) {
    if (!l.has_catalog) throw UsageError("graph stats --top needs --catalog (only items with audio are selected)");
    top = build_tables(l, select_items(l, in, o.top, -1, false), distance_options(o.pos_hops, o.neg_hops, o.directed, 0));
  }
  const graph::InDegreeSummary deg = graph::summarize_in_degree(*l.graph);
  const int32_t comps = l.graph->num_weak_components();

  if (in.json) {
    Json j = edge_stats_json(in, l);
    Json hist = Json::array();
    for (const auto& b : deg.bins) hist.push_back(Json{{"from", b.lo}, {"to", b.hi}, {"count", b.count}});
    j["in_degree"] = Json{{"min", deg.min},
                          {"median", deg.median},
                          {"p90", deg.p90},
                          {"p99", deg.p99},
                          {"max", deg.max},
                          {"histogram", hist}};
    j["weak_components"] = comps;
    if (l.has_catalog) j["catalog"] = catalog_json(l);
    if (top)
      j["top"] = Json{{"k", o.top},
                      {"pos_hops", o.pos_hops},
                      {"neg_hops", o.neg_hops},
                      {"directed", o.directed},
                      {"anchors_with_positive", top->with_pos},
                      {"anchors_without_positive", top->tables.anchors_without_positive()},
                      {"isolated", top->isolated}};
    std::printf("%s\n", json_text(j, 2).c_str());
    return;
  }
  print_edge_stats(in, l);
  std::printf("in-degree: min %d, median %d, p90 %d, p99 %d, max %d\n", deg.min, deg.median, deg.p90, deg.p99,
              deg.max);
  for (const auto& b : deg.bins) {
    const std::string range = b.lo == b.hi ? std::to_string(b.lo) : std::to_string(b.lo) + "-" + std::to_string(b.hi);
    std::printf("  in-degree %-13s %lld nodes\n", range.c_str(), static_cast<long long>(b.count));
  }
  std::printf("weakly connected components: %d\n", comps);
  if (l.has_catalog) print_catalog(l);
  if (top)
    std::printf("top %lld: %d with at least one positive (within %d hop%s), %d without (%d isolated: no selected "
                "item within %d hops)\n",
                static_cast<long long>(o.top), top->with_pos, o.pos_hops, o.pos_hops == 1 ? "" : "s",
                top->tables.anchors_without_positive(), top->isolated, top->tables.max_depth());
}

}  // namespace mg::cli::graph_cmd
