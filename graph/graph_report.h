// What `melgraph graph stats` and `graph select` compute about a preference graph: the inputs
// as loaded, the in-degree distribution, a selection's triplet tables with its anchor counts,
// and the exact hop distances between selected items. The command prints them (apps/).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "graph/catalog.h"
#include "graph/edge_list_io.h"
#include "graph/preference_graph.h"
#include "graph/triplet_tables.h"

namespace mg::graph {

// An edge list, its graph and, when a catalog is given, the catalog and how it covers the graph.
struct GraphInputs {
  EdgeList edges;
  std::unique_ptr<PreferenceGraph> graph;
  bool has_catalog = false;
  Catalog catalog;
  AudioCoverage coverage;
};

// catalog "" = none. Throws GraphInputError (file:line) for bad input, and for an edge list
// that yields no edge (with what its lines were).
GraphInputs load_graph_inputs(const std::string& edges, const EdgeLoadOptions& options, const std::string& catalog,
                              bool skip_bad_lines);

// "tab", "comma", "semicolon", "pipe", or the character quoted.
std::string delimiter_name(char delimiter);

// In-degrees: nearest-rank percentiles and a histogram over bins [0], [1], [2, 3], [4, 7], ...
// (in-degrees are heavy-tailed: powers of two keep the table short at any graph size).
struct InDegreeSummary {
  int32_t min = 0, median = 0, p90 = 0, p99 = 0, max = 0;
  struct Bin {
    int32_t lo, hi;
    int64_t count;
  };
  std::vector<Bin> bins;
};
InDegreeSummary summarize_in_degree(const PreferenceGraph& g);

// A selection with its triplet tables: anchors with a positive, and isolated ones (no selected
// item within the tables' depth). Throws std::invalid_argument for bad distance options.
struct SelectedTables {
  Selection sel;
  TripletTables tables;
  int32_t with_pos = 0, isolated = 0;
};
SelectedTables build_selected_tables(const PreferenceGraph& g, Selection sel, const DistanceOptions& options);

// Exact hops between the selected items, [K][K] (not the tables' values capped at neg_hops);
// -1 beyond max_depth or unreachable.
std::vector<std::vector<int32_t>> selection_hops(const PreferenceGraph& g, const Selection& sel, bool directed,
                                                 int max_depth);

}  // namespace mg::graph
