// Triplet supervision from the preference graph: for each selected item (anchor) the selected
// items within hop radius < neg_hops ("near set"), from which positives are drawn (distance
// 1..pos_hops); every other selected item (distance >= neg_hops or unreachable) is a negative.
//
// Memory. Only near sets are stored, never a K x K matrix: per anchor 8 bytes (offset) + 4 bytes
// (positive count), per near item 5 bytes (int32 item + uint8 distance). Negatives are drawn by
// rejection against the near set. The total is memory_bytes(); it grows with the sum of the
// near-set sizes, which is K^2 only when nearly every pair of selected items is within
// neg_hops - 1 hops (then neg_hops is too large for that graph). Building also needs, briefly,
// 4 bytes per graph node per thread (visited stamps), an index of each node's selected
// neighbours (8 bytes per node + 4 per edge endpoint at a selected item, twice when undirected)
// and 8 bytes per near item of the current block of 2048 anchors.
//
// Measured (2 threads, synthetic power-law graph, 1M nodes, 10M edges, K = 50,000, neg_hops 3):
// graph 2 s, tables 6 s, 918 near items per anchor, 230 MB of tables.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "graph/preference_graph.h"

namespace mg::graph {

struct DistanceOptions {
  int pos_hops = 1;        // positives: distance 1..pos_hops
  int neg_hops = 3;        // negatives: distance >= neg_hops or unreachable; 2 <= neg_hops <= 255
  bool directed = false;   // BFS along edge direction (anchor -> ...) instead of both ways
  int max_depth = -1;      // BFS depth limit; -1 (default): neg_hops - 1, which is all the near
                           // sets need. Larger values are clamped to neg_hops - 1; smaller values
                           // make items beyond max_depth count as far (negatives).
  int threads = 0;         // OpenMP threads for the build; 0: the OpenMP default
};

class TripletTables {
 public:
  // Format tag stored in the file's metadata ("format") and checked by load().
  static constexpr const char* kFormat = "melgraph.triplet_tables.v1";
  // Philox indices used per draw in sample(): see there.
  static constexpr uint64_t kDrawStride = 128;
  static constexpr int kNegativeAttempts = 64;

  TripletTables() = default;

  // One BFS per selected item through all graph nodes (also those without audio), in parallel
  // over anchors. The result does not depend on the thread count. Throws std::invalid_argument
  // for inconsistent options (pos_hops < 1, neg_hops <= pos_hops, neg_hops > 255, max_depth <
  // pos_hops) or a selection that does not belong to the graph.
  static TripletTables build(const PreferenceGraph& g, const Selection& sel, const DistanceOptions& opt);

  int32_t n_items() const { return static_cast<int32_t>(pos_count_.size()); }
  int pos_hops() const { return pos_hops_; }
  int neg_hops() const { return neg_hops_; }
  bool directed() const { return directed_; }
  int max_depth() const { return max_depth_; }

  // Near set of an anchor: selected items (item indices) at distance 1..max_depth, sorted by
  // (distance, item), so the positives are the first num_positives(anchor) entries.
  std::span<const int32_t> near(int32_t anchor) const;
  std::span<const uint8_t> near_distance(int32_t anchor) const;
  int32_t num_positives(int32_t anchor) const { return pos_count_.at(static_cast<size_t>(anchor)); }
  bool has_positive(int32_t anchor) const { return num_positives(anchor) > 0; }
  int32_t anchors_with_positive() const;
  int32_t anchors_without_positive() const { return n_items() - anchors_with_positive(); }
  // Valid negatives of an anchor: all items but itself and its near set.
  int64_t num_negatives(int32_t anchor) const;
  int64_t total_near() const { return static_cast<int64_t>(items_.size()); }
  size_t memory_bytes() const;

  // Hop distance from a to b: 0 when a == b, the exact distance when it is < neg_hops (and within
  // max_depth), otherwise neg_hops ("far or unreachable"). O(neg_hops * log |near(a)|).
  int32_t distance(int32_t a, int32_t b) const;

  // One (positive, negative) pair for the anchor, a pure function of (seed, anchor, draw): Philox
  // stream = anchor, indices draw * kDrawStride + [0, kDrawStride). Index +0 picks the positive
  // uniformly among the near items with distance <= pos_hops; indices +1..+kNegativeAttempts
  // propose negatives uniformly over all items, rejecting the anchor and its near set; if all
  // are rejected (the near set covers most items), index +kNegativeAttempts+1 picks uniformly
  // among the valid negatives by a scan. Uniform picks use (u32 * n) >> 32 (bias < n / 2^32).
  // Throws std::invalid_argument when the anchor has no positive or no valid negative.
  std::pair<int32_t, int32_t> sample(int32_t anchor, uint64_t seed, uint64_t draw) const;

  // B x B row-major matrix of distance(batch[i], batch[j]) (capped at neg_hops, 0 on the
  // diagonal), for in-batch mining. Throws std::out_of_range for an item outside 0..n_items-1.
  std::vector<int32_t> batch_distance_matrix(const std::vector<int32_t>& batch) const;

  // Safetensors file with metadata format/n_items/pos_hops/neg_hops/directed/max_depth and
  // int32 tensors near_count [K], near_items [N], near_dist [N]; written atomically.
  void save(const std::string& path) const;
  // Checks the format tag, the metadata and every size/range/order invariant; throws
  // GraphInputError naming the file and what is wrong.
  static TripletTables load(const std::string& path);

 private:
  void check_item(int32_t item, const char* who) const;

  int pos_hops_ = 1, neg_hops_ = 3, max_depth_ = 2;
  bool directed_ = false;
  std::vector<int64_t> offsets_{0};  // size K + 1
  std::vector<int32_t> items_;
  std::vector<uint8_t> dist_;
  std::vector<int32_t> pos_count_;
};

// A seeded split of item indices 0..n_items-1: a Fisher-Yates shuffle driven by Philox(seed,
// stream kSplitItemsStream, index i), whose first round(fraction * n_items) entries are held
// out. Both lists are returned sorted. fraction must be in [0, 1].
struct HeldOutSplit {
  std::vector<int32_t> train, held_out;
};
inline constexpr uint64_t kSplitItemsStream = 0x73706c6974ull;  // "split"
HeldOutSplit split_items(int32_t n_items, double fraction, uint64_t seed);

// A seeded split by group (cold start: an album or artist held out with every one of its
// items). group_of[i] is item i's group key; the distinct keys, sorted, are shuffled as
// split_items shuffles items (stream kSplitGroupsStream) and the first round(fraction * groups)
// of them, at least one when fraction > 0, are held out with all their items. Returns item
// indices, both lists sorted; held_groups (when given) receives the held-out keys, sorted.
inline constexpr uint64_t kSplitGroupsStream = 0x67726f7570ull;  // "group"
HeldOutSplit split_groups(const std::vector<std::string>& group_of, double fraction, uint64_t seed,
                          std::vector<std::string>* held_groups = nullptr);

// A seeded split of the graph edges among selected items, as undirected item pairs (a < b;
// a -> b and b -> a are one pair). Pair (a, b) is held out when philox_uniform(seed, stream =
// a << 32 | b, 0) < fraction, so the decision for a pair does not depend on the other edges or
// on their order. Both lists are sorted.
struct EdgeSplit {
  std::vector<std::pair<int32_t, int32_t>> train, held_out;
};
EdgeSplit split_edges(const PreferenceGraph& g, const Selection& sel, double fraction, uint64_t seed);

}  // namespace mg::graph
