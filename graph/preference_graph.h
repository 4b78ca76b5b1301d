// The preference graph ("src recommends dst") stored as Boost.Graph compressed sparse row graphs
// (one for out-edges, one for the reversed edges), in-degree centrality, the selection of the
// items to train on, and hop-distance BFS.
#pragma once
#include <boost/graph/compressed_sparse_row_graph.hpp>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "graph/edge_list.h"

namespace mg::graph {

class PreferenceGraph {
 public:
  // 32-bit vertices keep the column array at 4 bytes per edge; 64-bit edge indices allow
  // graphs with more than 4G edges.
  using Csr = boost::compressed_sparse_row_graph<boost::directedS, boost::no_property, boost::no_property,
                                                 boost::no_property, uint32_t, uint64_t>;

  // Copies the ids (the EdgeList may be destroyed afterwards). Throws GraphInputError when the
  // list has more than 2^31-1 nodes or its weight vector has the wrong length.
  explicit PreferenceGraph(const EdgeList& edges);

  int32_t num_nodes() const { return static_cast<int32_t>(ids_.size()); }
  int64_t num_edges() const { return num_edges_; }
  const std::string& id(int32_t node) const { return ids_.at(static_cast<size_t>(node)); }
  std::optional<int32_t> find(const std::string& id) const;

  const std::vector<int32_t>& in_degree() const { return in_degree_; }
  // Sum of the weights of the in-edges; equals in_degree() when the list has no weights.
  const std::vector<double>& weighted_in_degree() const { return weighted_in_degree_; }
  // Components of the graph with edge directions ignored (isolated nodes cannot occur: every
  // node came from an edge line, but a node whose only edge was a self-loop is its own component).
  int32_t num_weak_components() const;

  // Neighbours along edge direction (out) and against it (in), straight from Boost's CSR arrays.
  std::span<const uint32_t> out_neighbors(int32_t v) const { return row(out_graph_, v); }
  std::span<const uint32_t> in_neighbors(int32_t v) const { return row(in_graph_, v); }
  const Csr& out_graph() const { return out_graph_; }
  const Csr& in_graph() const { return in_graph_; }

  // Hop distances from `source`: dist[v] = hops, or -1 when v is unreachable or farther than
  // max_depth (max_depth < 0: no limit). `directed` follows edge direction (src -> dst);
  // otherwise edges are walked both ways.
  // Workspace contract (what makes K BFS runs on a big graph cheap): pass the same dist and
  // scratch to every call and do not modify them in between. The first call (dist.size() !=
  // num_nodes()) sizes dist and fills it with -1; every later call only resets the entries the
  // previous call touched, which it finds in scratch. On return scratch holds the reached nodes
  // in BFS order (source first, non-decreasing distance).
  void bfs(int32_t source, bool directed, int max_depth, std::vector<int32_t>& dist,
           std::vector<int32_t>& scratch) const;

 private:
  // Boost's CSR keeps its arrays in the public member m_forward (m_rowstart, m_column); reading
  // them directly avoids the edge-descriptor iterators in the BFS inner loop.
  static std::span<const uint32_t> row(const Csr& g, int32_t v) {
    const auto& f = g.m_forward;
    const uint64_t b = f.m_rowstart[static_cast<size_t>(v)], e = f.m_rowstart[static_cast<size_t>(v) + 1];
    return {f.m_column.data() + b, static_cast<size_t>(e - b)};
  }

  std::vector<std::string> ids_;
  std::unordered_map<std::string, int32_t> index_;
  int64_t num_edges_ = 0;
  Csr out_graph_, in_graph_;
  std::vector<int32_t> in_degree_;
  std::vector<double> weighted_in_degree_;
};

// The items chosen for training, in rank order. Ranking: score descending, ties broken by id
// ascending in byte-wise (std::string operator<) order, so the choice never depends on the
// order of the input file.
struct Selection {
  std::vector<int32_t> nodes;         // graph node of item i (rank order)
  std::vector<double> score;          // its (weighted) in-degree
  std::vector<int32_t> item_of_node;  // size num_nodes: item index, or -1 when not selected
  int32_t size() const { return static_cast<int32_t>(nodes.size()); }
};

// The k best items among those with has_audio[node] (size num_nodes). Throws
// std::invalid_argument when k <= 0 or k exceeds the number of items with audio (the message
// gives both numbers), or when has_audio has the wrong size.
Selection select_top_k(const PreferenceGraph& g, const std::vector<bool>& has_audio, int64_t k, bool weighted);
// All items with audio whose (weighted) in-degree is >= threshold, ranked as above. Throws
// std::invalid_argument when none qualifies.
Selection select_min_in_degree(const PreferenceGraph& g, const std::vector<bool>& has_audio, double threshold,
                               bool weighted);

}  // namespace mg::graph
