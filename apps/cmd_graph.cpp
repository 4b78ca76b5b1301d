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
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>

#include "apps/cmd_graph.h"

namespace mg::cli {

namespace graph_cmd {

namespace {

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

}  // namespace

graph::GraphInputs load_inputs(const InputOptions& in) {
  graph::EdgeLoadOptions eo;
  eo.delimiter = parse_delimiter(in.delimiter);
  eo.header = parse_header(in.header);
  eo.skip_bad_lines = in.skip_bad_lines;
  eo.weighted = true;
  return graph::load_graph_inputs(in.edges, eo, in.catalog, in.skip_bad_lines);
}

graph::Selection select_items(const graph::GraphInputs& l, const InputOptions& in, int64_t top, double min_in_degree,
                              bool weighted) {
  try {
    return top > 0 ? graph::select_top_k(*l.graph, l.coverage.has_audio, top, weighted)
                   : graph::select_min_in_degree(*l.graph, l.coverage.has_audio, min_in_degree, weighted);
  } catch (const std::invalid_argument& e) {
    throw UsageError(std::string(e.what()) + " (catalog " + in.catalog + ", edges " + in.edges + ")");
  }
}

graph::SelectedTables build_tables(const graph::GraphInputs& l, graph::Selection sel, const graph::DistanceOptions& d) {
  try {
    return graph::build_selected_tables(*l.graph, std::move(sel), d);
  } catch (const std::invalid_argument& e) {
    throw UsageError(std::string(e.what()) + " (check --pos-hops and --neg-hops)");
  }
}

graph::DistanceOptions distance_options(int pos_hops, int neg_hops, bool directed, int threads) {
  graph::DistanceOptions d;
  d.pos_hops = pos_hops;
  d.neg_hops = neg_hops;
  d.directed = directed;
  d.threads = threads;
  return d;
}

}  // namespace graph_cmd

using namespace graph_cmd;

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
