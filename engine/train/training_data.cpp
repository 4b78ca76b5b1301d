#include "engine/train/training_data.h"

#include <algorithm>
#include <sstream>
#include <stdexcept>

#include "graph/edge_list_io.h"

namespace mg::train {

namespace {

// Streams of the split draws, so that items and edges are split independently of each other
// and of the triplet sampler (which uses train.seed with its own streams).
constexpr uint64_t kEdgeSplitSeedSalt = 0x65646765ull;  // "edge"

graph::DistanceOptions distance_options(const TrainConfig& t, int threads) {
  graph::DistanceOptions o;
  o.pos_hops = t.pos_hops;
  o.neg_hops = t.neg_hops;
  o.threads = threads;
  return o;
}

// The training graph: the full graph, same node numbering, without the held-out item pairs
// (both directions) and without any edge that touches a held-out item, so that nothing the
// validation asks about (a held-out item's links, a held-out pair) shapes the positives or the
// negatives the training samples.
graph::EdgeList training_edges(const graph::EdgeList& full, const graph::Selection& train_sel,
                               const std::vector<std::pair<int32_t, int32_t>>& pairs,
                               const std::vector<int32_t>& held_out_nodes) {
  std::vector<uint64_t> drop;
  drop.reserve(pairs.size() * 2);
  for (const auto& [a, b] : pairs) {
    const auto na = static_cast<uint64_t>(train_sel.nodes[static_cast<size_t>(a)]);
    const auto nb = static_cast<uint64_t>(train_sel.nodes[static_cast<size_t>(b)]);
    drop.push_back(na << 32 | nb);
    drop.push_back(nb << 32 | na);
  }
  std::sort(drop.begin(), drop.end());
  std::vector<bool> held(full.ids.size(), false);
  for (const int32_t n : held_out_nodes) held[static_cast<size_t>(n)] = true;
  graph::EdgeList out;
  for (const std::string& id : full.ids) out.intern(id);
  const bool weighted = !full.weight.empty();
  for (size_t e = 0; e < full.src.size(); ++e) {
    if (held[static_cast<size_t>(full.src[e])] || held[static_cast<size_t>(full.dst[e])]) continue;
    const uint64_t key = static_cast<uint64_t>(full.src[e]) << 32 | static_cast<uint64_t>(full.dst[e]);
    if (std::binary_search(drop.begin(), drop.end(), key)) continue;
    out.add_edge_nodes(full.src[e], full.dst[e], weighted ? full.weight[e] : 1.0f, weighted);
  }
  return out;
}

// Items held out for validation: one by one (split_items), or whole groups of a catalog column
// (split_groups), an empty value making a group of its own item.
graph::HeldOutSplit split_selection(const TrainingData& d, const Config& cfg, std::vector<std::string>* groups) {
  if (cfg.data.holdout_by.empty())
    return graph::split_items(static_cast<int32_t>(d.items.size()), cfg.data.val_items, cfg.train.seed);
  std::vector<std::string> keys;
  try {
    keys = graph::column_values(d.catalog, cfg.data.holdout_by);
  } catch (const graph::GraphInputError& e) {
    throw graph::GraphInputError(std::string(e.what()) + "; data.holdout_by must name one of them, e.g. album or artist");
  }
  // An item without a value is its own group; the prefix keeps it apart from any real value.
  for (size_t i = 0; i < keys.size(); ++i)
    if (keys[i].empty()) keys[i] = std::string("\x01item:") + d.items[i].id;
  graph::HeldOutSplit s = graph::split_groups(keys, cfg.data.val_items, cfg.train.seed, groups);
  for (std::string& g : *groups)
    if (!g.empty() && g[0] == '\x01') g = g.substr(6) + " (no " + cfg.data.holdout_by + ")";
  return s;
}

// Selected items within max_hops of `item` (both edge directions), with their distances.
Query neighbours(const graph::PreferenceGraph& g, const graph::Selection& sel, int32_t item, int max_hops,
                 std::vector<int32_t>& dist, std::vector<int32_t>& scratch) {
  Query q;
  q.item = item;
  g.bfs(sel.nodes[static_cast<size_t>(item)], /*directed=*/false, max_hops, dist, scratch);
  std::vector<std::pair<int32_t, int32_t>> found;  // (hops, item)
  for (const int32_t node : scratch) {
    const int32_t other = sel.item_of_node[static_cast<size_t>(node)];
    const int32_t h = dist[static_cast<size_t>(node)];
    if (other < 0 || other == item || h < 1) continue;
    found.emplace_back(h, other);
  }
  std::sort(found.begin(), found.end());
  for (const auto& [h, other] : found) {
    q.relevant.push_back(other);
    q.hops.push_back(static_cast<uint8_t>(h));
  }
  return q;
}

// The catalog without the rows in `no_audio` (items that failed to decode).
graph::Catalog without_items(graph::Catalog catalog, const std::unordered_set<std::string>& no_audio) {
  if (no_audio.empty()) return catalog;
  graph::Catalog kept;
  kept.source = catalog.source;
  kept.columns = catalog.columns;
  kept.extra_columns = catalog.extra_columns;
  for (auto& row : catalog.items) {
    if (no_audio.count(row.id)) continue;
    kept.index[row.id] = static_cast<int64_t>(kept.items.size());
    kept.items.push_back(std::move(row));
  }
  return kept;
}

// d.items and d.catalog: the selected nodes' catalog rows, in selection order.
void take_selected_rows(TrainingData& d, const graph::Catalog& catalog, const graph::Selection& sel,
                        const graph::AudioCoverage& cov) {
  d.catalog.source = catalog.source;
  d.catalog.columns = catalog.columns;
  d.catalog.extra_columns = catalog.extra_columns;
  for (int32_t i = 0; i < sel.size(); ++i) {
    const int32_t node = sel.nodes[static_cast<size_t>(i)];
    const auto& row = catalog.items[static_cast<size_t>(cov.item_of_node[static_cast<size_t>(node)])];
    d.items.push_back({row.id, row.path, sel.score[static_cast<size_t>(i)]});
    d.catalog.index[row.id] = static_cast<int64_t>(d.catalog.items.size());
    d.catalog.items.push_back(row);
  }
}

// The training items as a selection of their own over the same nodes: item t = train_items[t].
graph::Selection training_selection(const TrainingData& d, const graph::Selection& sel, int32_t num_nodes) {
  graph::Selection train_sel;
  train_sel.item_of_node.assign(static_cast<size_t>(num_nodes), -1);
  for (size_t t = 0; t < d.train_items.size(); ++t) {
    const auto i = static_cast<size_t>(d.train_items[t]);
    train_sel.nodes.push_back(sel.nodes[i]);
    train_sel.score.push_back(sel.score[i]);
    train_sel.item_of_node[static_cast<size_t>(sel.nodes[i])] = static_cast<int32_t>(t);
  }
  return train_sel;
}

// The edge split among the training items (d.held_out_edges), then the triplet tables over
// the training graph, which has neither those edges nor any edge of a held-out item, and the
// anchors (training items with a positive and a negative).
void build_tables(TrainingData& d, const Config& cfg, int threads, const graph::EdgeList& edges,
                  const graph::PreferenceGraph& g, const graph::Selection& sel) {
  const graph::Selection train_sel = training_selection(d, sel, g.num_nodes());
  const graph::EdgeSplit esplit = graph::split_edges(g, train_sel, cfg.data.val_edges, cfg.train.seed ^ kEdgeSplitSeedSalt);
  for (const auto& [a, b] : esplit.held_out) {
    const int32_t ia = d.train_items[static_cast<size_t>(a)], ib = d.train_items[static_cast<size_t>(b)];
    d.held_out_edges.emplace_back(std::min(ia, ib), std::max(ia, ib));
  }
  std::sort(d.held_out_edges.begin(), d.held_out_edges.end());

  std::vector<int32_t> held_nodes;
  for (const int32_t i : d.val_items) held_nodes.push_back(sel.nodes[static_cast<size_t>(i)]);
  const graph::PreferenceGraph train_graph(training_edges(edges, train_sel, esplit.held_out, held_nodes));
  d.tables = graph::TripletTables::build(train_graph, train_sel, distance_options(cfg.train, threads));
  for (int32_t t = 0; t < d.tables.n_items(); ++t) {
    if (d.tables.has_positive(t) && d.tables.num_negatives(t) > 0) d.anchors.push_back(t);
  }
  if (d.anchors.empty())
    throw std::invalid_argument("no training item has a positive within train.pos_hops = " +
                                std::to_string(cfg.train.pos_hops) + " and a negative beyond train.neg_hops = " +
                                std::to_string(cfg.train.neg_hops) +
                                " in the training graph; check the edge list, select more items or raise pos_hops");
}

// Held-out items against every selected item; relevant: their neighbours within pos_hops in
// the full graph.
ValidationSet held_out_items_set(const TrainingData& d, const Config& cfg, const graph::PreferenceGraph& g,
                                 const graph::Selection& sel) {
  ValidationSet v;
  v.name = "held-out items";
  v.candidates.resize(static_cast<size_t>(sel.size()));
  for (size_t i = 0; i < v.candidates.size(); ++i) v.candidates[i] = static_cast<int32_t>(i);
  std::vector<int32_t> dist, scratch;
  for (const int32_t q : d.val_items) {
    Query query = neighbours(g, sel, q, cfg.train.pos_hops, dist, scratch);
    if (!query.relevant.empty()) v.queries.push_back(std::move(query));
  }
  return v;
}

// Training items against training items; relevant: the partners of their held-out edges.
ValidationSet held_out_edges_set(const TrainingData& d, int32_t num_items) {
  ValidationSet v;
  v.name = "held-out edges";
  v.candidates = d.train_items;
  std::vector<std::vector<int32_t>> partners(static_cast<size_t>(num_items));
  for (const auto& [a, b] : d.held_out_edges) {
    partners[static_cast<size_t>(a)].push_back(b);
    partners[static_cast<size_t>(b)].push_back(a);
  }
  for (const int32_t a : d.train_items) {
    auto& p = partners[static_cast<size_t>(a)];
    if (p.empty()) continue;
    std::sort(p.begin(), p.end());
    Query q;
    q.item = a;
    q.relevant = p;
    q.hops.assign(p.size(), 1);
    v.queries.push_back(std::move(q));
  }
  return v;
}

// Training fit on at most 1000 anchors, evenly spaced (deterministic); relevant: each one's
// positives in the training graph.
ValidationSet training_fit_set(const TrainingData& d) {
  ValidationSet v;
  v.name = "training fit";
  v.candidates = d.train_items;
  const size_t n_fit = std::min<size_t>(d.anchors.size(), 1000);
  for (size_t j = 0; j < n_fit; ++j) {
    const int32_t t = d.anchors[j * d.anchors.size() / n_fit];
    Query q;
    q.item = d.train_items[static_cast<size_t>(t)];
    const auto near = d.tables.near(t);
    const auto nd = d.tables.near_distance(t);
    for (int32_t r = 0; r < d.tables.num_positives(t); ++r) {
      q.relevant.push_back(d.train_items[static_cast<size_t>(near[static_cast<size_t>(r)])]);
      q.hops.push_back(nd[static_cast<size_t>(r)]);
    }
    v.queries.push_back(std::move(q));
  }
  return v;
}

}  // namespace

TrainingData build_training_data(const Config& cfg, int threads, const std::unordered_set<std::string>& no_audio) {
  if (cfg.data.edges.empty())
    throw std::invalid_argument("data.edges is not set: the training run needs the preference graph's edge list");
  if (cfg.data.catalog.empty())
    throw std::invalid_argument("data.catalog is not set: the training run needs the audio catalog (id, path)");
  TrainingData d;
  d.holdout_by = cfg.data.holdout_by;
  graph::EdgeLoadOptions eo;
  eo.skip_bad_lines = cfg.data.skip_bad_lines;
  const graph::EdgeList edges = graph::load_edge_list(cfg.data.edges, eo);
  if (edges.num_edges() == 0)
    throw std::invalid_argument(cfg.data.edges + ": the edge list has no edges (" + std::to_string(edges.stats.lines) +
                                " lines read); training needs the preference graph: one source,target pair per line");
  const graph::Catalog catalog =
      without_items(graph::load_catalog(cfg.data.catalog, cfg.data.skip_bad_lines), no_audio);
  const graph::PreferenceGraph g(edges);
  const graph::AudioCoverage cov = graph::audio_coverage(edges, catalog);
  d.graph_nodes = g.num_nodes();
  d.graph_edges = g.num_edges();
  d.catalog_items = static_cast<int64_t>(catalog.items.size());
  d.skipped_edge_lines = edges.stats.bad_lines;
  d.skipped_catalog_rows = catalog.bad_lines + catalog.duplicates;
  d.nodes_with_audio = std::count(cov.has_audio.begin(), cov.has_audio.end(), true);
  if (d.nodes_with_audio < 2)
    throw std::invalid_argument(cfg.data.catalog + ": only " + std::to_string(d.nodes_with_audio) +
                                " of the graph's items have audio; training needs at least 2");

  const int64_t k = cfg.data.top_k > 0 ? std::min<int64_t>(cfg.data.top_k, d.nodes_with_audio) : d.nodes_with_audio;
  const graph::Selection sel = graph::select_top_k(g, cov.has_audio, k, cfg.data.weighted);
  take_selected_rows(d, catalog, sel, cov);

  // Item split, then the edge split among the training items only.
  const graph::HeldOutSplit split = split_selection(d, cfg, &d.held_out_groups);
  d.train_items = split.train;
  d.val_items = split.held_out;
  if (d.train_items.size() < 2)
    throw std::invalid_argument("data.val_items = " + std::to_string(cfg.data.val_items) + " leaves " +
                                std::to_string(d.train_items.size()) + " of " + std::to_string(sel.size()) +
                                " items for training" +
                                (cfg.data.holdout_by.empty() ? "" : " (held out by " + cfg.data.holdout_by + ")") +
                                "; lower it or select more items (data.top_k)");
  build_tables(d, cfg, threads, edges, g, sel);

  d.val_items_set = held_out_items_set(d, cfg, g, sel);
  d.val_edges_set = held_out_edges_set(d, sel.size());
  d.train_fit_set = training_fit_set(d);
  return d;
}

std::string TrainingData::summary() const {
  std::ostringstream o;
  o << "graph: " << graph_nodes << " items, " << graph_edges << " edges; " << nodes_with_audio
    << " with audio (catalog: " << catalog_items << ")\n";
  if (skipped_edge_lines + skipped_catalog_rows > 0)
    o << "skipped (--skip-bad-lines): " << skipped_edge_lines << " edge-list lines, " << skipped_catalog_rows
      << " catalog rows\n";
  o << "selected " << items.size() << " items: " << train_items.size() << " for training (" << anchors.size()
    << " anchors with a positive), " << val_items.size() << " held out";
  if (!holdout_by.empty()) o << " (" << held_out_groups.size() << " " << holdout_by << " groups)";
  o << "; "
    << held_out_edges.size() << " held-out edges among training items\n"
    << "validation queries: " << val_items_set.queries.size() << " held-out items, "
    << val_edges_set.queries.size() << " held-out edges, " << train_fit_set.queries.size()
    << " training items";
  return o.str();
}

}  // namespace mg::train
