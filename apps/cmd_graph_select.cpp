// `melgraph graph select`: the items to train on (top K by in-degree, or all above a threshold),
// their triplet tables (near sets, graph/triplet_tables.h), optionally saved; with --json the
// selected ids in rank order and their hop-distance matrix. A selection in which no anchor has
// a positive is a run-time failure (exit 1): no triplet can be formed from it.
#include <cstdio>
#include <stdexcept>
#include <string>
#include <utility>

#include "apps/cmd_graph.h"
#include "engine/io/json_text.h"
#include "engine/timer.h"

namespace mg::cli::graph_cmd {

namespace {

// The --json distance matrix is K^2 integers of text: 5000 items is already ~50 MB.
constexpr int64_t kMaxJsonMatrixItems = 5000;

}  // namespace

void run_select(const SelectOptions& o) {
  if (o.in.json && o.top > kMaxJsonMatrixItems)
    throw UsageError("--json prints a K x K distance matrix; --top " + std::to_string(o.top) + " exceeds " +
                     std::to_string(kMaxJsonMatrixItems) +
                     " items: use --out FILE to save the triplet tables instead (or drop --json)");
  const auto t0 = WallClock::now();
  const graph::GraphInputs l = load_inputs(o.in);
  const graph::PreferenceGraph& g = *l.graph;
  const bool weights_present = !l.edges.weight.empty();
  graph::Selection chosen = select_items(l, o.in, o.top, o.min_in_degree, o.weighted);
  if (o.in.json && chosen.size() > kMaxJsonMatrixItems)
    throw UsageError("--json prints a K x K distance matrix; --min-in-degree selected " +
                     std::to_string(chosen.size()) + " items, more than " + std::to_string(kMaxJsonMatrixItems) +
                     ": use --out FILE to save the triplet tables instead, or raise --min-in-degree");
  const graph::SelectedTables r =
      build_tables(l, std::move(chosen), distance_options(o.pos_hops, o.neg_hops, o.directed, o.threads));
  const graph::Selection& sel = r.sel;
  const graph::TripletTables& tables = r.tables;
  const int32_t isolated = r.isolated;
  const int32_t with_pos = r.with_pos;
  const double seconds = seconds_since(t0);

  if (with_pos == 0) {
    std::fprintf(stderr,
                 "melgraph: warning: none of the %d selected items has a positive (another selected item within "
                 "%d hop%s%s)\n",
                 sel.size(), o.pos_hops, o.pos_hops == 1 ? "" : "s", o.directed ? ", following edge direction" : "");
    throw std::runtime_error("no triplet can be formed from this selection; select more items (--top or a lower "
                             "--min-in-degree), raise --pos-hops, or drop --directed");
  }
  if (!o.out.empty()) tables.save(o.out);

  if (o.in.json) {
    Json j;
    j["graph"] = edge_stats_json(o.in, l);
    j["catalog"] = catalog_json(l);
    j["selection"] = o.top > 0 ? Json{{"top", o.top}, {"weighted", o.weighted}}
                               : Json{{"min_in_degree", o.min_in_degree}, {"weighted", o.weighted}};
    Json items = Json::array();
    for (int32_t i = 0; i < sel.size(); ++i) {
      const int32_t v = sel.nodes[static_cast<size_t>(i)];
      Json it{{"id", g.id(v)}, {"in_degree", g.in_degree()[static_cast<size_t>(v)]}};
      if (o.weighted) it["weighted_in_degree"] = g.weighted_in_degree()[static_cast<size_t>(v)];
      items.push_back(std::move(it));
    }
    j["selected"] = std::move(items);
    j["anchors_with_positive"] = with_pos;
    j["anchors_without_positive"] = tables.anchors_without_positive();
    j["isolated"] = isolated;
    j["directed"] = o.directed;
    j["max_depth"] = o.max_depth;
    // Exact hops (not the tables' values capped at neg_hops), -1 beyond max_depth or unreachable.
    Json matrix = Json::array();
    for (const auto& row : graph::selection_hops(g, sel, o.directed, o.max_depth)) matrix.push_back(row);
    j["distances"] = std::move(matrix);
    if (!o.out.empty()) j["tables_file"] = o.out;
    std::printf("%s\n", json_text(j).c_str());
    return;
  }

  print_edge_stats(o.in, l);
  print_catalog(l);
  if (o.weighted && !weights_present)
    std::printf("note: --weighted, but the edge list has no weight column: every edge weighs 1\n");
  const double best = sel.score.front(), worst = sel.score.back();
  std::printf("selected: %d items (%s, %s in-degree %g..%g; ties broken by id)\n", sel.size(),
              o.top > 0 ? ("top " + std::to_string(o.top)).c_str()
                        : ("in-degree >= " + std::to_string(o.min_in_degree)).c_str(),
              o.weighted ? "weighted" : "plain", worst, best);
  std::printf("distances: %s BFS through all %d nodes; positives at 1..%d hops, negatives at >= %d hops or "
              "unreachable\n",
              o.directed ? "directed" : "undirected", g.num_nodes(), o.pos_hops, o.neg_hops);
  std::printf("anchors: %d with at least one positive, %d without (%d isolated: no selected item within %d hops)\n",
              with_pos, tables.anchors_without_positive(), isolated, tables.max_depth());
  std::printf("near sets: %lld entries, %zu bytes\n", static_cast<long long>(tables.total_near()),
              tables.memory_bytes());
  if (!o.out.empty()) std::printf("tables: %s\n", o.out.c_str());
  std::printf("time: %.2f s\n", seconds);
}

}  // namespace mg::cli::graph_cmd
