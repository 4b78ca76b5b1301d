#include "graph/edge_list.h"

#include <algorithm>

namespace mg::graph {

namespace {

// splitmix64's finaliser: edge keys (two small ints) need mixing before masking.
uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

}  // namespace

void EdgeList::rebuild_id_slots(size_t min_capacity) {
  size_t cap = 1024;
  while (cap < min_capacity) cap *= 2;
  id_slots_.assign(cap, -1);
  const size_t mask = cap - 1;
  for (size_t i = 0; i < ids.size(); ++i) {
    size_t pos = StringHash{}(ids[i]) & mask;
    while (id_slots_[pos] >= 0) pos = (pos + 1) & mask;
    id_slots_[pos] = static_cast<int32_t>(i);
  }
  id_count_ = ids.size();
}

int32_t EdgeList::intern(std::string_view id) {
  // Load <= 1/2 keeps probe chains (each a string compare) short. A caller that filled ids and
  // index directly is caught by the count check.
  if (id_count_ != ids.size() || 2 * (ids.size() + 1) > id_slots_.size()) rebuild_id_slots(4 * (ids.size() + 1));
  const size_t mask = id_slots_.size() - 1;
  size_t pos = StringHash{}(id) & mask;
  for (; id_slots_[pos] >= 0; pos = (pos + 1) & mask)
    if (ids[static_cast<size_t>(id_slots_[pos])] == id) return id_slots_[pos];
  const auto n = static_cast<int32_t>(ids.size());
  ids.emplace_back(id);
  index.emplace(ids.back(), n);
  id_slots_[pos] = n;
  id_count_ = ids.size();
  return n;
}

void EdgeList::add_edge(std::string_view src_id, std::string_view dst_id, float w, bool has_weight) {
  const int32_t s = intern(src_id), d = intern(dst_id);
  add_edge_nodes(s, d, w, has_weight);
}

void EdgeList::add_edge_nodes(int32_t s, int32_t d, float w, bool has_weight) {
  ++stats.edges_read;
  if (s == d) {
    ++stats.self_loops;
    return;
  }
  const uint64_t key = static_cast<uint64_t>(static_cast<uint32_t>(s)) << 32 | static_cast<uint32_t>(d);
  if (4 * (seen_count_ + 1) > 3 * seen_.size()) {  // load <= 3/4
    std::vector<uint64_t> old(std::max<size_t>(seen_.size() * 2, 1024), 0);
    old.swap(seen_);
    const size_t m = seen_.size() - 1;
    for (const uint64_t k : old) {
      if (k == 0) continue;
      size_t p = mix64(k) & m;
      while (seen_[p] != 0) p = (p + 1) & m;
      seen_[p] = k;
    }
  }
  const size_t mask = seen_.size() - 1;
  for (size_t pos = mix64(key + 1) & mask;; pos = (pos + 1) & mask) {
    if (seen_[pos] == key + 1) {
      ++stats.duplicates;
      return;
    }
    if (seen_[pos] == 0) {
      seen_[pos] = key + 1;
      ++seen_count_;
      break;
    }
  }
  src.push_back(s);
  dst.push_back(d);
  if (has_weight) {
    weight.resize(src.size() - 1, 1.0f);  // earlier unweighted edges count as 1
    weight.push_back(w);
  } else if (!weight.empty()) {
    weight.push_back(1.0f);
  }
}

}  // namespace mg::graph
