// `melgraph graph stats` and `melgraph graph select`: the preference graph from the command line.
//
//   stats   loads an edge list (and optionally a catalog) and describes it: nodes, edges, what
//           was dropped, the in-degree distribution, weakly connected components, and how the
//           catalog covers the graph.
//   select  picks the items to train on (top K by in-degree, or all above a threshold), builds
//           the triplet tables (near sets, graph/triplet_tables.h) and optionally saves them.
//           With --json it prints the selected ids in rank order and their hop-distance matrix.
//
// Bad input throws mg::graph::GraphInputError (file:line in the message; main.cpp maps it to
// exit code 2) or UsageError; a selection in which no anchor has a positive is a run-time
// failure (exit 1): no triplet can be formed from it.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "apps/commands.h"
#include "graph/catalog.h"
#include "graph/edge_list_io.h"
#include "graph/preference_graph.h"
#include "graph/triplet_tables.h"
#include "engine/timer.h"

namespace mg::cli {

namespace {

using Json = nlohmann::ordered_json;
using graph::Catalog;
using graph::EdgeList;
using graph::PreferenceGraph;

// The --json distance matrix is K^2 integers of text: 5000 items is already ~50 MB.
constexpr int64_t kMaxJsonMatrixItems = 5000;

struct InputOptions {
  std::string edges, catalog;
  std::string delimiter = "auto";
  std::string header = "auto";
  bool skip_bad_lines = false;
  bool json = false;
};

// Stats with --top K also report how the top K would fare as anchors (the select step's counts).
struct StatsOptions {
  InputOptions in;
  int64_t top = 0;
  int pos_hops = 1, neg_hops = 3;
  bool directed = false;
};

struct SelectOptions {
  InputOptions in;
  int64_t top = 0;
  double min_in_degree = -1;
  bool weighted = false;
  int pos_hops = 1, neg_hops = 3;
  bool directed = false;
  int threads = 0;
  int max_depth = 8;
  std::string out;
};

char parse_delimiter(const std::string& d) {
  if (d == "auto") return 0;
  if (d == "tab" || d == "\\t" || d == "\t") return '\t';
  if (d == "comma") return ',';
  if (d == "semicolon") return ';';
  if (d == "pipe") return '|';
  if (d.size() == 1 && d != "\"" && d != "#" && d != "\n" && d != "\r") return d[0];
  throw UsageError("--delimiter: expected auto, comma, tab, semicolon, pipe or a single character, got '" + d + "'");
}

graph::HeaderMode parse_header(const std::string& h) {
  if (h == "yes") return graph::HeaderMode::Yes;
  if (h == "no") return graph::HeaderMode::No;
  return graph::HeaderMode::Auto;
}

void add_input_options(CLI::App* cmd, InputOptions& in, bool catalog_required) {
  cmd->add_option("--edges", in.edges, "Edge list: src,dst[,weight] per line (\"src recommends dst\"); "
                                       "CSV or TSV, optionally gzip-compressed")
      ->required();
  auto* cat = cmd->add_option("--catalog", in.catalog, "Catalog CSV with columns id,path[,...]: the items with audio");
  if (catalog_required) cat->required();
  cmd->add_option("--delimiter", in.delimiter, "Edge-list delimiter: auto (the first of tab, semicolon, pipe and "
                                               "comma that splits the first line into src, dst[, weight]), comma, "
                                               "tab, semicolon, pipe, or one character")
      ->capture_default_str();
  cmd->add_option("--header", in.header, "Edge-list header line: auto (detected), yes or no")
      ->capture_default_str()->check(CLI::IsMember({"auto", "yes", "no"}));
  cmd->add_flag("--skip-bad-lines", in.skip_bad_lines, "Skip and count malformed lines instead of stopping at the first");
  cmd->add_flag("--json", in.json, "Print machine-readable JSON on stdout");
}

struct Loaded {
  EdgeList edges;
  std::unique_ptr<PreferenceGraph> graph;
  bool has_catalog = false;
  Catalog catalog;
  graph::AudioCoverage coverage;
};

Loaded load_inputs(const InputOptions& in) {
  graph::EdgeLoadOptions eo;
  eo.delimiter = parse_delimiter(in.delimiter);
  eo.header = parse_header(in.header);
  eo.skip_bad_lines = in.skip_bad_lines;
  eo.weighted = true;
  Loaded l;
  l.edges = graph::load_edge_list(in.edges, eo);
  if (l.edges.num_edges() == 0) {
    const auto& s = l.edges.stats;
    throw graph::GraphInputError(
        "edge list " + in.edges + ": no edges (" + std::to_string(s.lines) + " lines: " +
        std::to_string(s.edges_read) + " edge lines, " + std::to_string(s.self_loops) + " self-loops, " +
        std::to_string(s.bad_lines) + " bad lines skipped, " + std::to_string(s.comments) +
        " comments); give a file with src,dst lines");
  }
  l.graph = std::make_unique<PreferenceGraph>(l.edges);
  if (!in.catalog.empty()) {
    l.has_catalog = true;
    l.catalog = graph::load_catalog(in.catalog, in.skip_bad_lines);
    l.coverage = graph::audio_coverage(l.edges, l.catalog);
  }
  return l;
}

int64_t count_true(const std::vector<bool>& v) { return std::count(v.begin(), v.end(), true); }

Json edge_stats_json(const InputOptions& in, const Loaded& l) {
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

Json catalog_json(const Loaded& l) {
  const int64_t with_audio = count_true(l.coverage.has_audio);
  return Json{{"catalog_file", l.catalog.source},
              {"items", static_cast<int64_t>(l.catalog.items.size())},
              {"graph_nodes_with_audio", with_audio},
              {"graph_nodes_without_audio", l.coverage.nodes_without_audio},
              {"catalog_items_not_in_graph", l.coverage.items_not_in_graph},
              {"bad_lines", l.catalog.bad_lines},
              {"duplicate_ids", l.catalog.duplicates}};
}

void print_edge_stats(const InputOptions& in, const Loaded& l) {
  const auto& s = l.edges.stats;
  const std::string delim = s.delimiter == '\t'  ? "tab"
                            : s.delimiter == ',' ? "comma"
                            : s.delimiter == ';' ? "semicolon"
                            : s.delimiter == '|' ? "pipe"
                                                 : std::string("'") + s.delimiter + "'";
  std::printf("edges file: %s (%s-delimited%s%s)\n", in.edges.c_str(), delim.c_str(), s.header ? ", header" : "",
              s.gzip ? ", gzip" : "");
  std::printf("nodes: %d\nedges: %lld\n", l.graph->num_nodes(), static_cast<long long>(l.graph->num_edges()));
  std::printf("lines: %lld (%lld edge lines, %lld comments, %lld blank)\n", static_cast<long long>(s.lines),
              static_cast<long long>(s.edges_read), static_cast<long long>(s.comments), static_cast<long long>(s.blank));
  std::printf("dropped: %lld self-loops, %lld duplicates, %lld bad lines\n", static_cast<long long>(s.self_loops),
              static_cast<long long>(s.duplicates), static_cast<long long>(s.bad_lines));
}

void print_catalog(const Loaded& l) {
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

// ---- selection and its triplet tables (shared by stats --top and select) ----

struct Selected {
  graph::Selection sel;
  graph::TripletTables tables;
  int32_t with_pos = 0, isolated = 0;
};

graph::Selection select_items(const Loaded& l, const InputOptions& in, int64_t top, double min_in_degree,
                              bool weighted) {
  try {
    return top > 0 ? graph::select_top_k(*l.graph, l.coverage.has_audio, top, weighted)
                   : graph::select_min_in_degree(*l.graph, l.coverage.has_audio, min_in_degree, weighted);
  } catch (const std::invalid_argument& e) {
    throw UsageError(std::string(e.what()) + " (catalog " + in.catalog + ", edges " + in.edges + ")");
  }
}

Selected build_tables(const Loaded& l, graph::Selection sel, const graph::DistanceOptions& dopt) {
  Selected r;
  r.sel = std::move(sel);
  try {
    r.tables = graph::TripletTables::build(*l.graph, r.sel, dopt);
  } catch (const std::invalid_argument& e) {
    throw UsageError(std::string(e.what()) + " (check --pos-hops and --neg-hops)");
  }
  for (int32_t a = 0; a < r.tables.n_items(); ++a) r.isolated += r.tables.near(a).empty() ? 1 : 0;
  r.with_pos = r.tables.anchors_with_positive();
  return r;
}

graph::DistanceOptions distance_options(int pos_hops, int neg_hops, bool directed, int threads) {
  graph::DistanceOptions d;
  d.pos_hops = pos_hops;
  d.neg_hops = neg_hops;
  d.directed = directed;
  d.threads = threads;
  return d;
}

// ---- stats ----

// Nearest-rank percentile of sorted values: the smallest value with at least p of them <= it.
int32_t percentile(const std::vector<int32_t>& sorted, double p) {
  const auto n = static_cast<double>(sorted.size());
  auto rank = static_cast<int64_t>(std::ceil(p * n));
  rank = std::clamp<int64_t>(rank, 1, static_cast<int64_t>(sorted.size()));
  return sorted[static_cast<size_t>(rank - 1)];
}

void run_stats(const StatsOptions& o) {
  const InputOptions& in = o.in;
  const Loaded l = load_inputs(in);
  std::unique_ptr<Selected> top;
  if (o.top > 0) {
    if (!l.has_catalog) throw UsageError("graph stats --top needs --catalog (only items with audio are selected)");
    top = std::make_unique<Selected>(build_tables(l, select_items(l, in, o.top, -1, false),
                                                  distance_options(o.pos_hops, o.neg_hops, o.directed, 0)));
  }
  std::vector<int32_t> deg = l.graph->in_degree();
  std::sort(deg.begin(), deg.end());
  // Histogram bins [0], [1], [2, 3], [4, 7], ...: in-degrees are heavy-tailed, so powers of two
  // keep the table short at any graph size.
  struct Bin {
    int32_t lo, hi;
    int64_t count;
  };
  std::vector<Bin> bins{{0, 0, 0}};
  for (int64_t lo = 1; lo <= deg.back(); lo *= 2)
    bins.push_back({static_cast<int32_t>(lo), static_cast<int32_t>(std::min<int64_t>(2 * lo - 1, INT32_MAX)), 0});
  for (int32_t d : deg) {
    size_t b = 0;
    while (b + 1 < bins.size() && d > bins[b].hi) ++b;
    ++bins[b].count;
  }
  const int32_t comps = l.graph->num_weak_components();

  if (in.json) {
    Json j = edge_stats_json(in, l);
    Json hist = Json::array();
    for (const Bin& b : bins) hist.push_back(Json{{"from", b.lo}, {"to", b.hi}, {"count", b.count}});
    j["in_degree"] = Json{{"min", deg.front()},
                          {"median", percentile(deg, 0.5)},
                          {"p90", percentile(deg, 0.9)},
                          {"p99", percentile(deg, 0.99)},
                          {"max", deg.back()},
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
    std::printf("%s\n", j.dump(2).c_str());
    return;
  }
  print_edge_stats(in, l);
  std::printf("in-degree: min %d, median %d, p90 %d, p99 %d, max %d\n", deg.front(), percentile(deg, 0.5),
              percentile(deg, 0.9), percentile(deg, 0.99), deg.back());
  for (const Bin& b : bins) {
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

// ---- select ----

void run_select(const SelectOptions& o) {
  if (o.in.json && o.top > kMaxJsonMatrixItems)
    throw UsageError("--json prints a K x K distance matrix; --top " + std::to_string(o.top) + " exceeds " +
                     std::to_string(kMaxJsonMatrixItems) +
                     " items: use --out FILE to save the triplet tables instead (or drop --json)");
  const auto t0 = std::chrono::steady_clock::now();
  const Loaded l = load_inputs(o.in);
  const PreferenceGraph& g = *l.graph;
  const bool weights_present = !l.edges.weight.empty();
  graph::Selection chosen = select_items(l, o.in, o.top, o.min_in_degree, o.weighted);
  if (o.in.json && chosen.size() > kMaxJsonMatrixItems)
    throw UsageError("--json prints a K x K distance matrix; --min-in-degree selected " +
                     std::to_string(chosen.size()) + " items, more than " + std::to_string(kMaxJsonMatrixItems) +
                     ": use --out FILE to save the triplet tables instead, or raise --min-in-degree");
  const Selected r =
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
    std::vector<int32_t> dist, scratch;
    for (int32_t a = 0; a < sel.size(); ++a) {
      g.bfs(sel.nodes[static_cast<size_t>(a)], o.directed, o.max_depth, dist, scratch);
      Json row = Json::array();
      for (int32_t b = 0; b < sel.size(); ++b) row.push_back(dist[static_cast<size_t>(sel.nodes[static_cast<size_t>(b)])]);
      matrix.push_back(std::move(row));
    }
    j["distances"] = std::move(matrix);
    if (!o.out.empty()) j["tables_file"] = o.out;
    std::printf("%s\n", j.dump().c_str());
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

}  // namespace

void register_graph(CLI::App& app) {
  CLI::App* graph_cmd = app.add_subcommand("graph", "The preference graph: statistics, item selection, triplet tables");
  graph_cmd->require_subcommand(1);

  auto st = std::make_shared<StatsOptions>();
  CLI::App* stats = graph_cmd->add_subcommand(
      "stats", "Nodes, edges, dropped lines, in-degree distribution, components and catalog coverage");
  add_input_options(stats, st->in, false);
  stats->add_option("--top", st->top,
                    "Also report how many of the top K items with audio have a positive and how many are isolated")
      ->check(CLI::PositiveNumber);
  stats->add_option("--pos-hops", st->pos_hops, "With --top: positives at 1..N hops")
      ->capture_default_str()->check(CLI::Range(1, 254));
  stats->add_option("--neg-hops", st->neg_hops, "With --top: negatives at >= N hops")
      ->capture_default_str()->check(CLI::Range(2, 255));
  stats->add_flag("--directed", st->directed, "With --top: follow edge direction");
  stats->callback([st] { run_stats(*st); });

  auto so = std::make_shared<SelectOptions>();
  CLI::App* select = graph_cmd->add_subcommand(
      "select", "Select the items to train on and build their triplet tables (positives and near sets)");
  add_input_options(select, so->in, true);
  auto* top = select->add_option("--top", so->top, "Select the K items with audio with the highest in-degree")
                  ->check(CLI::PositiveNumber);
  auto* mind = select->add_option("--min-in-degree", so->min_in_degree,
                                  "Select every item with audio whose in-degree is at least D")
                   ->check(CLI::NonNegativeNumber);
  top->excludes(mind);
  mind->excludes(top);
  select->add_flag("--weighted", so->weighted, "Rank by weighted in-degree (the sum of the weight column)");
  select->add_option("--pos-hops", so->pos_hops, "Positives: selected items at 1..N hops")
      ->capture_default_str()->check(CLI::Range(1, 254));
  select->add_option("--neg-hops", so->neg_hops, "Negatives: selected items at >= N hops or unreachable")
      ->capture_default_str()->check(CLI::Range(2, 255));
  select->add_flag("--directed", so->directed, "Follow edge direction (default: walk edges both ways)");
  select->add_option("--threads", so->threads, "Threads for the BFS (0: all cores)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  select->add_option("--max-depth", so->max_depth, "--json: BFS depth limit of the printed distance matrix")
      ->capture_default_str()->check(CLI::PositiveNumber);
  select->add_option("--out", so->out, "Save the triplet tables (safetensors) to this file");
  select->callback([so, top, mind] {
    if (top->count() == 0 && mind->count() == 0) throw UsageError("graph select: give --top K or --min-in-degree D");
    run_select(*so);
  });
}

}  // namespace mg::cli
