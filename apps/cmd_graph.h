// `melgraph graph stats` and `graph select` (apps/cmd_graph*.cpp): their options and the
// pieces both print. The computing is graph/graph_report.h's.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "apps/commands.h"
#include "graph/graph_report.h"

namespace mg::cli::graph_cmd {

using Json = nlohmann::ordered_json;

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

void run_stats(const StatsOptions& o);
void run_select(const SelectOptions& o);

// Shared by both: loading (bad flags as UsageError), the selection and its tables (bad options
// as UsageError naming the inputs), and what both print about the edges and the catalog.
graph::GraphInputs load_inputs(const InputOptions& in);
graph::Selection select_items(const graph::GraphInputs& l, const InputOptions& in, int64_t top, double min_in_degree,
                              bool weighted);
graph::SelectedTables build_tables(const graph::GraphInputs& l, graph::Selection sel, const graph::DistanceOptions& d);
graph::DistanceOptions distance_options(int pos_hops, int neg_hops, bool directed, int threads);
Json edge_stats_json(const InputOptions& in, const graph::GraphInputs& l);
Json catalog_json(const graph::GraphInputs& l);
void print_edge_stats(const InputOptions& in, const graph::GraphInputs& l);
void print_catalog(const graph::GraphInputs& l);

}  // namespace mg::cli::graph_cmd
