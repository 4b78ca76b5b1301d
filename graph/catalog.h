// The audio catalog: which graph items have audio, and where. CSV with a header row naming the
// columns; `id` and `path` are required (any order, case-insensitive), other columns (title,
// artist, ...) are kept as strings. Paths are resolved relative to the catalog file's directory
// (absolute paths are kept). '#' comment lines, blank lines, CRLF, quoted fields, a tab
// delimiter (detected from the header) and gzip compression are accepted as for edge lists,
// and as RFC 4180 (and Python's csv module) write them: a UTF-8 byte-order mark, doubled
// quotes inside a quoted field, and line breaks inside a quoted field (the record goes on on
// the next line; an error names the record's first line).
#pragma once
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "graph/edge_list.h"

namespace mg::graph {

struct Catalog {
  std::string source;                  // the file it was read from
  std::vector<std::string> columns;    // every header column, file order (id and path included)
  std::vector<std::string> extra_columns;  // the columns of Item::extra: `columns` minus id, path
  struct Item {
    std::string id, path;             // path already resolved against the catalog's directory
    std::vector<std::string> extra;   // values of extra_columns, in that order
  };
  std::vector<Item> items;
  std::unordered_map<std::string, int64_t> index;  // id -> position in items
  int64_t bad_lines = 0;                           // lines of malformed rows skipped (skip_bad_lines)
  int64_t duplicates = 0;  // rows whose id was already seen, skipped (skip_bad_lines)
};

// Malformed rows (wrong field count, empty id or path, bad quoting) and duplicate ids throw
// GraphInputError "<file>:<line>: ..." unless skip_bad_lines (then the first row of an id wins).
// A missing file, an empty file or a header without `id` or `path` always throw.
Catalog load_catalog(const std::string& path, bool skip_bad_lines = false);

// "skipped N malformed catalog rows and M repeated ids (--skip-bad-lines)", or "" when none.
std::string skipped_rows_note(const Catalog& catalog);

// The value of column `column` (header name, case-insensitive; id and path included) for every
// item, in item order. Throws GraphInputError naming the catalog, the column and the columns
// it has.
std::vector<std::string> column_values(const Catalog& catalog, const std::string& column);

// How the graph's nodes and the catalog's items overlap.
struct AudioCoverage {
  std::vector<bool> has_audio;         // per graph node
  std::vector<int64_t> item_of_node;   // per graph node: index into Catalog::items, or -1
  int64_t nodes_without_audio = 0;     // graph nodes with no catalog entry
  int64_t items_not_in_graph = 0;      // catalog items whose id is not a graph node
};
AudioCoverage audio_coverage(const EdgeList& graph, const Catalog& catalog);
// Per graph node: whether the catalog has an entry for it (audio_coverage(...).has_audio).
std::vector<bool> audio_mask(const EdgeList& graph, const Catalog& catalog);

}  // namespace mg::graph
