// The preference graph's input: an edge list "src recommends dst" with string ids, as loaded
// from a file (graph/edge_list_io.cpp) or built in memory (tests). Node indices are dense
// int32 in order of first appearance; ids[i] is node i's id.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace mg::graph {

// Bad input: the message names the file, the line number and the line's text, and what to do.
struct GraphInputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct EdgeListStats {
  int64_t lines = 0;        // physical lines read
  int64_t comments = 0;     // lines starting with '#' (after optional whitespace)
  int64_t blank = 0;
  int64_t bad_lines = 0;    // malformed lines skipped (only with skip_bad_lines)
  int64_t edges_read = 0;   // well-formed edge lines
  int64_t self_loops = 0;   // dropped
  int64_t duplicates = 0;   // dropped (the first occurrence and its weight are kept)
  bool header = false;      // whether a header line was found and skipped
  char delimiter = ',';     // ',' or '\t' (detected or given)
  bool gzip = false;        // whether the file was gzip-compressed
};

// Transparent hash: lets the id map be searched with a std::string_view (the loader's fields),
// so looking up an already-seen id allocates nothing.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
using IdIndex = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

struct EdgeList {
  std::vector<std::string> ids;                   // node index -> id
  IdIndex index;                                  // id -> node index (find() takes a string_view)
  std::vector<int32_t> src, dst;                  // edges after dropping self-loops/duplicates
  std::vector<float> weight;                      // per edge; empty when the file has no weights
  EdgeListStats stats;

  // Interns an id (adds a node on first sight) and returns its index.
  int32_t intern(std::string_view id);
  // Adds src -> dst, dropping (and counting) self-loops and duplicates. O(1) amortised.
  void add_edge(std::string_view src_id, std::string_view dst_id, float w = 1.0f, bool has_weight = false);
  // The same for already-interned nodes (indices from intern()).
  void add_edge_nodes(int32_t s, int32_t d, float w = 1.0f, bool has_weight = false);
  int32_t num_nodes() const { return static_cast<int32_t>(ids.size()); }
  int64_t num_edges() const { return static_cast<int64_t>(src.size()); }

 private:
  // Both tables are open-addressed with linear probing: node-based std::unordered_map lookups
  // (a malloc and several cache misses per edge) dominated loading 10M-edge files.
  std::vector<uint64_t> seen_;   // (src << 32 | dst) + 1 of kept edges; 0 = empty slot
  size_t seen_count_ = 0;
  std::vector<int32_t> id_slots_;  // node index or -1, at hash(id); a fast path in front of `index`
  size_t id_count_ = 0;            // ids covered by id_slots_ (rebuilt when ids changed behind it)
  void rebuild_id_slots(size_t min_capacity);
};

}  // namespace mg::graph
