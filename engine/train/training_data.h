// The graph side of a training run: which items are trained on, which are held out, and what
// counts as near. Built once from the config's edge list and catalog:
//
//   edges + catalog -> PreferenceGraph -> selection (top K by in-degree with audio, or all)
//     -> item split: val_items of the selection are held out (never seen in training), one by
//        one or, with data.holdout_by = COLUMN, as whole groups of that catalog column
//     -> edge split: val_edges of the pairs among training items are held out
//     -> training graph = the full graph minus the held-out pairs and minus every edge of a
//        held-out item (same node numbering)
//     -> triplet tables over the training items on the training graph
//
// and, for validation, each query's relevant items with their hop distances:
//   held-out items: a held-out item's selected neighbours within pos_hops in the full graph,
//                   retrieved among all selected items;
//   held-out edges: a training item's held-out partners, retrieved among training items;
//   training fit:   a training item's positives in the training graph, among training items
//                   (the gap to the held-out numbers shows over-fitting).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "engine/config.h"
#include "graph/catalog.h"
#include "graph/preference_graph.h"
#include "graph/triplet_tables.h"

namespace mg::train {

// One query of a validation set: positions are indices into TrainingData::items.
struct Query {
  int32_t item = 0;
  std::vector<int32_t> relevant;  // sorted by (hops, item)
  std::vector<uint8_t> hops;      // per relevant item: its hop distance (>= 1)
};

struct ValidationSet {
  std::string name;                  // "held-out items", "held-out edges", "training fit"
  std::vector<int32_t> candidates;   // items retrieved from (indices into items), sorted
  std::vector<Query> queries;        // queries with at least one relevant item
};

struct TrainingData {
  struct Item {
    std::string id, path;
    double score = 0;  // (weighted) in-degree in the full graph
  };
  std::vector<Item> items;             // the selection, rank order
  graph::Catalog catalog;              // the catalog's rows of `items`, same order (for prepare)
  std::vector<int32_t> train_items;    // indices into items, sorted
  std::vector<int32_t> val_items;      // held out, sorted
  std::string holdout_by;              // data.holdout_by ("" = items held out one by one)
  std::vector<std::string> held_out_groups;  // with holdout_by: the held-out values, sorted
  std::vector<std::pair<int32_t, int32_t>> held_out_edges;  // item pairs (a < b) among train items

  graph::TripletTables tables;         // over train_items (table item t = train_items[t])
  std::vector<int32_t> anchors;        // table items with at least one positive

  ValidationSet val_items_set, val_edges_set, train_fit_set;

  int64_t graph_nodes = 0, graph_edges = 0, catalog_items = 0, nodes_with_audio = 0;
  // Lines skipped by data.skip_bad_lines: edge-list lines, catalog rows (malformed or a repeated id).
  int64_t skipped_edge_lines = 0, skipped_catalog_rows = 0;

  // One paragraph for the run log: sizes of everything above.
  std::string summary() const;
};

// Throws graph::GraphInputError for bad input files, std::invalid_argument when the selection
// cannot train (no anchor with a positive, too few items for the split). Catalog items whose
// id is in `no_audio` (their files failed to decode) count as items without audio.
TrainingData build_training_data(const Config& cfg, int threads, const std::unordered_set<std::string>& no_audio);

}  // namespace mg::train
