#include "graph/triplet_tables.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "engine/io/safetensors.h"
#include "kernels/philox.h"

namespace mg::graph {

namespace {

// Uniform integer in [0, n) from one 32-bit word (multiply-shift; bias < n / 2^32).
uint32_t pick(uint32_t word, uint64_t n) {
  return static_cast<uint32_t>((static_cast<uint64_t>(word) * n) >> 32);
}

// For each node, its neighbours that are selected items (out-neighbours, plus in-neighbours
// when undirected), as nodes. The last BFS level only needs these: in a power-law graph most
// edges lead to unselected nodes, so this cuts the dominant last-level scan.
struct SelectedNeighbors {
  std::vector<uint64_t> offsets;
  std::vector<uint32_t> nodes;
  std::span<const uint32_t> of(int32_t v) const {
    const uint64_t b = offsets[static_cast<size_t>(v)], e = offsets[static_cast<size_t>(v) + 1];
    return {nodes.data() + b, static_cast<size_t>(e - b)};
  }
};

SelectedNeighbors selected_neighbors(const PreferenceGraph& g, const std::vector<int32_t>& item_of_node,
                                     bool directed) {
  SelectedNeighbors sn;
  const auto n = static_cast<size_t>(g.num_nodes());
  sn.offsets.assign(n + 1, 0);
  auto each = [&](int32_t v, auto&& f) {
    for (uint32_t w : g.out_neighbors(v))
      if (item_of_node[w] >= 0) f(w);
    if (!directed)
      for (uint32_t w : g.in_neighbors(v))
        if (item_of_node[w] >= 0) f(w);
  };
  for (size_t v = 0; v < n; ++v) {
    uint64_t c = 0;
    each(static_cast<int32_t>(v), [&](uint32_t) { ++c; });
    sn.offsets[v + 1] = sn.offsets[v] + c;
  }
  sn.nodes.resize(static_cast<size_t>(sn.offsets[n]));
  for (size_t v = 0; v < n; ++v) {
    size_t pos = static_cast<size_t>(sn.offsets[v]);
    each(static_cast<int32_t>(v), [&](uint32_t w) { sn.nodes[pos++] = w; });
  }
  return sn;
}

// BFS from `source` up to depth `limit`, recording the selected nodes it reaches as
// (distance, item). `seen[v] == stamp` marks v as visited in this BFS; every anchor has its own
// stamp, so the array never needs resetting between BFS runs of one thread. The last level only
// walks edges to selected nodes and enqueues nothing.
void near_bfs(const PreferenceGraph& g, const SelectedNeighbors& sn, const std::vector<int32_t>& item_of_node,
              int32_t source, int32_t stamp, bool directed, int limit, std::vector<int32_t>& seen,
              std::vector<int32_t>& queue, std::vector<std::pair<uint8_t, int32_t>>& out) {
  out.clear();
  queue.clear();
  seen[static_cast<size_t>(source)] = stamp;
  queue.push_back(source);
  size_t head = 0;
  for (int depth = 1; depth <= limit && head < queue.size(); ++depth) {
    const size_t level_end = queue.size();
    const auto d8 = static_cast<uint8_t>(depth);
    if (depth == limit) {
      for (; head < level_end; ++head)
        for (uint32_t w : sn.of(queue[head])) {
          int32_t& s = seen[w];
          if (s == stamp) continue;
          s = stamp;
          out.emplace_back(d8, item_of_node[w]);
        }
      break;
    }
    auto visit = [&](uint32_t w) {
      int32_t& s = seen[w];
      if (s == stamp) return;
      s = stamp;
      const int32_t item = item_of_node[w];
      if (item >= 0) out.emplace_back(d8, item);
      queue.push_back(static_cast<int32_t>(w));
    };
    for (; head < level_end; ++head) {
      const int32_t u = queue[head];
      for (uint32_t w : g.out_neighbors(u)) visit(w);
      if (!directed)
        for (uint32_t w : g.in_neighbors(u)) visit(w);
    }
  }
  std::sort(out.begin(), out.end());
}

[[noreturn]] void bad_file(const std::string& path, const std::string& what) {
  throw GraphInputError("triplet tables " + path + ": " + what +
                        "; re-create it with `melgraph graph select ... --out`");
}

int meta_int(const StFile& f, const std::string& path, const std::string& key) {
  auto it = f.metadata.find(key);
  if (it == f.metadata.end()) bad_file(path, "metadata field '" + key + "' is missing");
  try {
    size_t used = 0;
    const long long v = std::stoll(it->second, &used);
    if (used != it->second.size() || v < 0 || v > 2147483647LL) throw std::invalid_argument("range");
    return static_cast<int>(v);
  } catch (const std::exception&) {
    bad_file(path, "metadata field '" + key + "' = '" + it->second + "' is not a non-negative integer");
  }
}

}  // namespace

TripletTables TripletTables::build(const PreferenceGraph& g, const Selection& sel, const DistanceOptions& opt) {
  if (opt.pos_hops < 1) throw std::invalid_argument("triplet tables: pos_hops must be >= 1");
  if (opt.neg_hops <= opt.pos_hops)
    throw std::invalid_argument("triplet tables: neg_hops (" + std::to_string(opt.neg_hops) +
                                ") must be larger than pos_hops (" + std::to_string(opt.pos_hops) + ")");
  if (opt.neg_hops > 255) throw std::invalid_argument("triplet tables: neg_hops must be <= 255");
  const int limit = opt.max_depth < 0 ? opt.neg_hops - 1 : std::min(opt.max_depth, opt.neg_hops - 1);
  if (limit < opt.pos_hops)
    throw std::invalid_argument("triplet tables: max_depth (" + std::to_string(opt.max_depth) +
                                ") is below pos_hops (" + std::to_string(opt.pos_hops) + "): no positive could be found");
  if (sel.item_of_node.size() != static_cast<size_t>(g.num_nodes()))
    throw std::invalid_argument("triplet tables: the selection was made on a different graph");
  for (size_t i = 0; i < sel.nodes.size(); ++i) {
    const int32_t v = sel.nodes[i];
    if (v < 0 || v >= g.num_nodes() || sel.item_of_node[static_cast<size_t>(v)] != static_cast<int32_t>(i))
      throw std::invalid_argument("triplet tables: selection entry " + std::to_string(i) + " is inconsistent");
  }

  TripletTables t;
  t.pos_hops_ = opt.pos_hops;
  t.neg_hops_ = opt.neg_hops;
  t.max_depth_ = limit;
  t.directed_ = opt.directed;
  const int32_t k = sel.size();
  t.offsets_.assign(1, 0);
  t.offsets_.reserve(static_cast<size_t>(k) + 1);
  t.pos_count_.assign(static_cast<size_t>(k), 0);

  const SelectedNeighbors sn = selected_neighbors(g, sel.item_of_node, opt.directed);
  const int threads = opt.threads > 0 ? opt.threads : omp_get_max_threads();
  std::vector<std::vector<int32_t>> seen(static_cast<size_t>(threads)), queue(static_cast<size_t>(threads));
  // Anchors go in blocks so the per-anchor temporaries (8 bytes per near item) stay bounded;
  // each block is appended in anchor order, which makes the result thread-count independent.
  constexpr int32_t kBlock = 2048;
  std::vector<std::vector<std::pair<uint8_t, int32_t>>> found(static_cast<size_t>(std::min(k, kBlock)));
  for (int32_t begin = 0; begin < k; begin += kBlock) {
    const int32_t end = std::min(k, begin + kBlock);
#pragma omp parallel num_threads(threads)
    {
      const auto tid = static_cast<size_t>(omp_get_thread_num());
      std::vector<int32_t>& my_seen = seen[tid];
      if (my_seen.size() != static_cast<size_t>(g.num_nodes())) my_seen.assign(static_cast<size_t>(g.num_nodes()), -1);
#pragma omp for schedule(dynamic, 8)
      for (int32_t a = begin; a < end; ++a)
        near_bfs(g, sn, sel.item_of_node, sel.nodes[static_cast<size_t>(a)], a, opt.directed, limit, my_seen,
                 queue[tid], found[static_cast<size_t>(a - begin)]);
    }
    for (int32_t a = begin; a < end; ++a) {
      auto& f = found[static_cast<size_t>(a - begin)];
      int32_t positives = 0;
      for (const auto& [d, item] : f) {
        t.items_.push_back(item);
        t.dist_.push_back(d);
        if (d <= opt.pos_hops) ++positives;
      }
      t.pos_count_[static_cast<size_t>(a)] = positives;
      t.offsets_.push_back(static_cast<int64_t>(t.items_.size()));
      std::vector<std::pair<uint8_t, int32_t>>().swap(f);
    }
  }
  return t;
}

void TripletTables::check_item(int32_t item, const char* who) const {
  if (item < 0 || item >= n_items())
    throw std::out_of_range(std::string("TripletTables::") + who + ": item " + std::to_string(item) +
                            " is outside 0.." + std::to_string(n_items() - 1));
}

std::span<const int32_t> TripletTables::near(int32_t anchor) const {
  check_item(anchor, "near");
  const auto b = static_cast<size_t>(offsets_[static_cast<size_t>(anchor)]);
  const auto e = static_cast<size_t>(offsets_[static_cast<size_t>(anchor) + 1]);
  return {items_.data() + b, e - b};
}

std::span<const uint8_t> TripletTables::near_distance(int32_t anchor) const {
  check_item(anchor, "near_distance");
  const auto b = static_cast<size_t>(offsets_[static_cast<size_t>(anchor)]);
  const auto e = static_cast<size_t>(offsets_[static_cast<size_t>(anchor) + 1]);
  return {dist_.data() + b, e - b};
}

int32_t TripletTables::anchors_with_positive() const {
  return static_cast<int32_t>(std::count_if(pos_count_.begin(), pos_count_.end(), [](int32_t c) { return c > 0; }));
}

int64_t TripletTables::num_negatives(int32_t anchor) const {
  return static_cast<int64_t>(n_items()) - 1 - static_cast<int64_t>(near(anchor).size());
}

size_t TripletTables::memory_bytes() const {
  return offsets_.size() * sizeof(int64_t) + pos_count_.size() * sizeof(int32_t) +
         items_.size() * (sizeof(int32_t) + sizeof(uint8_t));
}

int32_t TripletTables::distance(int32_t a, int32_t b) const {
  check_item(a, "distance");
  check_item(b, "distance");
  if (a == b) return 0;
  const std::span<const int32_t> items = near(a);
  const std::span<const uint8_t> dist = near_distance(a);
  // Entries are sorted by (distance, item): binary-search b inside each distance group.
  size_t lo = 0;
  while (lo < items.size()) {
    const uint8_t d = dist[lo];
    const size_t hi = static_cast<size_t>(std::upper_bound(dist.begin() + static_cast<std::ptrdiff_t>(lo), dist.end(), d) -
                                          dist.begin());
    if (std::binary_search(items.begin() + static_cast<std::ptrdiff_t>(lo),
                           items.begin() + static_cast<std::ptrdiff_t>(hi), b))
      return d;
    lo = hi;
  }
  return neg_hops_;
}

std::pair<int32_t, int32_t> TripletTables::sample(int32_t anchor, uint64_t seed, uint64_t draw) const {
  check_item(anchor, "sample");
  const int32_t positives = num_positives(anchor);
  if (positives == 0)
    throw std::invalid_argument("TripletTables::sample: item " + std::to_string(anchor) +
                                " has no positive within " + std::to_string(pos_hops_) +
                                " hops; skip anchors without has_positive()");
  const auto stream = static_cast<uint64_t>(anchor);
  const uint64_t base = draw * kDrawStride;
  const std::span<const int32_t> items = near(anchor);
  const int32_t pos = items[pick(philox_u32(seed, stream, base), static_cast<uint64_t>(positives))];

  const auto k = static_cast<uint64_t>(n_items());
  for (int t = 1; t <= kNegativeAttempts; ++t) {
    const auto c = static_cast<int32_t>(pick(philox_u32(seed, stream, base + static_cast<uint64_t>(t)), k));
    if (c != anchor && distance(anchor, c) >= neg_hops_) return {pos, c};
  }
  const int64_t valid = num_negatives(anchor);
  if (valid <= 0)
    throw std::invalid_argument("TripletTables::sample: item " + std::to_string(anchor) +
                                " has no negative: every other selected item is within " +
                                std::to_string(max_depth_) + " hops; lower neg_hops or select more items");
  // Rare fallback: the r-th item that is neither the anchor nor near.
  std::vector<int32_t> excluded(items.begin(), items.end());
  excluded.push_back(anchor);
  std::sort(excluded.begin(), excluded.end());
  int64_t r = pick(philox_u32(seed, stream, base + kNegativeAttempts + 1), static_cast<uint64_t>(valid));
  size_t e = 0;
  for (int32_t c = 0; c < n_items(); ++c) {
    if (e < excluded.size() && excluded[e] == c) {
      ++e;
      continue;
    }
    if (r-- == 0) return {pos, c};
  }
  throw std::logic_error("TripletTables::sample: negative scan ran past the end");  // unreachable
}

std::vector<int32_t> TripletTables::batch_distance_matrix(const std::vector<int32_t>& batch) const {
  for (int32_t item : batch) check_item(item, "batch_distance_matrix");
  const size_t b = batch.size();
  std::vector<int32_t> m(b * b);
  for (size_t i = 0; i < b; ++i)
    for (size_t j = 0; j < b; ++j) m[i * b + j] = distance(batch[i], batch[j]);
  return m;
}

void TripletTables::save(const std::string& path) const {
  StFile f;
  f.metadata["format"] = kFormat;
  f.metadata["n_items"] = std::to_string(n_items());
  f.metadata["pos_hops"] = std::to_string(pos_hops_);
  f.metadata["neg_hops"] = std::to_string(neg_hops_);
  f.metadata["max_depth"] = std::to_string(max_depth_);
  f.metadata["directed"] = std::to_string(directed_ ? 1 : 0);
  std::vector<int32_t> counts(static_cast<size_t>(n_items()));
  for (size_t a = 0; a < counts.size(); ++a) counts[a] = static_cast<int32_t>(offsets_[a + 1] - offsets_[a]);
  const std::vector<int32_t> dist32(dist_.begin(), dist_.end());
  f.put_i32("near_count", {static_cast<int64_t>(counts.size())}, counts.data());
  f.put_i32("near_items", {static_cast<int64_t>(items_.size())}, items_.data());
  f.put_i32("near_dist", {static_cast<int64_t>(dist32.size())}, dist32.data());
  write_safetensors(path, f);
}

TripletTables TripletTables::load(const std::string& path) {
  StFile f;
  try {
    f = read_safetensors(path);
  } catch (const SafetensorsError& e) {
    throw GraphInputError(std::string("triplet tables: ") + e.what());
  }
  auto fmt = f.metadata.find("format");
  if (fmt == f.metadata.end() || fmt->second != kFormat)
    bad_file(path, std::string("not a triplet table file (format tag '") +
                       (fmt == f.metadata.end() ? std::string("<missing>") : fmt->second) + "', expected '" + kFormat +
                       "')");
  TripletTables t;
  const int k = meta_int(f, path, "n_items");
  t.pos_hops_ = meta_int(f, path, "pos_hops");
  t.neg_hops_ = meta_int(f, path, "neg_hops");
  t.max_depth_ = meta_int(f, path, "max_depth");
  const int directed = meta_int(f, path, "directed");
  if (directed > 1) bad_file(path, "metadata field 'directed' must be 0 or 1");
  t.directed_ = directed == 1;
  if (t.pos_hops_ < 1 || t.neg_hops_ <= t.pos_hops_ || t.neg_hops_ > 255 || t.max_depth_ < t.pos_hops_ ||
      t.max_depth_ >= t.neg_hops_)
    bad_file(path, "inconsistent pos_hops/neg_hops/max_depth");
  for (const char* name : {"near_count", "near_items", "near_dist"}) {
    if (!f.has(name)) bad_file(path, std::string("tensor '") + name + "' is missing");
    const StTensor& s = f.at(name);
    if (s.dtype != DType::I32 || s.shape.size() != 1)
      bad_file(path, std::string("tensor '") + name + "' must be a 1-D int32 tensor");
  }
  const std::vector<int32_t> counts = f.at("near_count").to_i32();
  t.items_ = f.at("near_items").to_i32();
  const std::vector<int32_t> dist32 = f.at("near_dist").to_i32();
  if (counts.size() != static_cast<size_t>(k))
    bad_file(path, "near_count has " + std::to_string(counts.size()) + " entries but n_items is " + std::to_string(k));
  if (dist32.size() != t.items_.size())
    bad_file(path, "near_items and near_dist have different lengths (" + std::to_string(t.items_.size()) + " vs " +
                       std::to_string(dist32.size()) + ")");
  t.offsets_.assign(1, 0);
  t.offsets_.reserve(counts.size() + 1);
  for (int32_t c : counts) {
    if (c < 0) bad_file(path, "near_count has a negative entry");
    t.offsets_.push_back(t.offsets_.back() + c);
  }
  if (t.offsets_.back() != static_cast<int64_t>(t.items_.size()))
    bad_file(path, "near_count sums to " + std::to_string(t.offsets_.back()) + " but near_items has " +
                       std::to_string(t.items_.size()) + " entries");
  t.dist_.resize(dist32.size());
  t.pos_count_.assign(static_cast<size_t>(k), 0);
  for (int32_t a = 0; a < k; ++a) {
    const auto b = static_cast<size_t>(t.offsets_[static_cast<size_t>(a)]);
    const auto e = static_cast<size_t>(t.offsets_[static_cast<size_t>(a) + 1]);
    for (size_t i = b; i < e; ++i) {
      const int32_t item = t.items_[i], d = dist32[i];
      if (item < 0 || item >= k || item == a || d < 1 || d > t.max_depth_)
        bad_file(path, "near set of item " + std::to_string(a) + " has an invalid entry (item " +
                           std::to_string(item) + ", distance " + std::to_string(d) + ")");
      if (i > b && std::make_pair(dist32[i - 1], t.items_[i - 1]) >= std::make_pair(d, item))
        bad_file(path, "near set of item " + std::to_string(a) + " is not sorted by (distance, item)");
      t.dist_[i] = static_cast<uint8_t>(d);
      if (d <= t.pos_hops_) ++t.pos_count_[static_cast<size_t>(a)];
    }
  }
  return t;
}

HeldOutSplit split_items(int32_t n_items, double fraction, uint64_t seed) {
  if (n_items < 0) throw std::invalid_argument("split_items: n_items must be >= 0");
  if (!(fraction >= 0.0 && fraction <= 1.0))
    throw std::invalid_argument("split_items: held-out fraction must be in [0, 1], got " + std::to_string(fraction));
  std::vector<int32_t> perm(static_cast<size_t>(n_items));
  for (int32_t i = 0; i < n_items; ++i) perm[static_cast<size_t>(i)] = i;
  for (int32_t i = n_items - 1; i > 0; --i) {
    const uint32_t j = pick(philox_u32(seed, kSplitItemsStream, static_cast<uint64_t>(i)), static_cast<uint64_t>(i) + 1);
    std::swap(perm[static_cast<size_t>(i)], perm[j]);
  }
  const auto held = static_cast<size_t>(std::llround(fraction * static_cast<double>(n_items)));
  HeldOutSplit s;
  s.held_out.assign(perm.begin(), perm.begin() + static_cast<std::ptrdiff_t>(held));
  s.train.assign(perm.begin() + static_cast<std::ptrdiff_t>(held), perm.end());
  std::sort(s.held_out.begin(), s.held_out.end());
  std::sort(s.train.begin(), s.train.end());
  return s;
}

HeldOutSplit split_groups(const std::vector<std::string>& group_of, double fraction, uint64_t seed,
                          std::vector<std::string>* held_groups) {
  if (!(fraction >= 0.0 && fraction <= 1.0))
    throw std::invalid_argument("split_groups: held-out fraction must be in [0, 1], got " + std::to_string(fraction));
  std::vector<std::string> keys(group_of);
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  const auto n = static_cast<int64_t>(keys.size());
  for (int64_t i = n - 1; i > 0; --i) {
    const uint32_t j = pick(philox_u32(seed, kSplitGroupsStream, static_cast<uint64_t>(i)), static_cast<uint64_t>(i) + 1);
    std::swap(keys[static_cast<size_t>(i)], keys[j]);
  }
  auto held = static_cast<int64_t>(std::llround(fraction * static_cast<double>(n)));
  if (fraction > 0 && n > 0) held = std::max<int64_t>(held, 1);
  std::vector<std::string> out(keys.begin(), keys.begin() + held);
  std::sort(out.begin(), out.end());
  HeldOutSplit s;
  for (size_t i = 0; i < group_of.size(); ++i) {
    const bool h = std::binary_search(out.begin(), out.end(), group_of[i]);
    (h ? s.held_out : s.train).push_back(static_cast<int32_t>(i));
  }
  if (held_groups) *held_groups = std::move(out);
  return s;
}

EdgeSplit split_edges(const PreferenceGraph& g, const Selection& sel, double fraction, uint64_t seed) {
  if (!(fraction >= 0.0 && fraction <= 1.0))
    throw std::invalid_argument("split_edges: held-out fraction must be in [0, 1], got " + std::to_string(fraction));
  if (sel.item_of_node.size() != static_cast<size_t>(g.num_nodes()))
    throw std::invalid_argument("split_edges: the selection was made on a different graph");
  std::vector<std::pair<int32_t, int32_t>> pairs;
  for (int32_t a = 0; a < sel.size(); ++a)
    for (uint32_t w : g.out_neighbors(sel.nodes[static_cast<size_t>(a)])) {
      const int32_t b = sel.item_of_node[w];
      if (b >= 0) pairs.emplace_back(std::min(a, b), std::max(a, b));
    }
  std::sort(pairs.begin(), pairs.end());
  pairs.erase(std::unique(pairs.begin(), pairs.end()), pairs.end());
  EdgeSplit s;
  for (const auto& p : pairs) {
    const uint64_t stream = static_cast<uint64_t>(static_cast<uint32_t>(p.first)) << 32 | static_cast<uint32_t>(p.second);
    if (static_cast<double>(philox_uniform(seed, stream, 0)) < fraction)
      s.held_out.push_back(p);
    else
      s.train.push_back(p);
  }
  return s;
}

}  // namespace mg::graph
