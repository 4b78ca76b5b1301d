// The audio catalog loader (graph/catalog.h) on arbitrary bytes: header detection, quoting,
// tab or comma, gzip, duplicate ids, path resolution. Bad input must end in GraphInputError
// (what `melgraph graph`, `prepare` and `train` report as bad input); anything else is a finding.
#include <cstddef>
#include <cstdint>
#include <string>

#include "engine/io/utf8.h"
#include "graph/catalog.h"
#include "graph/edge_list.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = mg::fuzz::input_file(data, size, "catalog.csv");
  // Chosen by the input's length so that seed files are read unchanged; both modes are reached.
  const bool skip_bad_lines = size % 2 != 0;
  try {
    const mg::graph::Catalog cat = mg::graph::load_catalog(path, skip_bad_lines);
    // What the users of a catalog index without checking: one extra value per extra column,
    // an id lookup that points at the item with that id, and UTF-8 everywhere but the paths
    // (JSON output and the index's text take them as they are).
    const auto utf8 = [](const std::string& s) { return mg::first_invalid_utf8(s) == std::string::npos; };
    if (cat.items.size() != cat.index.size()) __builtin_trap();
    for (const auto& column : cat.columns)
      if (!utf8(column)) __builtin_trap();
    for (const auto& item : cat.items) {
      if (item.extra.size() != cat.extra_columns.size() || item.id.empty() || item.path.empty()) __builtin_trap();
      if (!utf8(item.id)) __builtin_trap();
      for (const auto& value : item.extra)
        if (!utf8(value)) __builtin_trap();
      const auto it = cat.index.find(item.id);
      if (it == cat.index.end() || cat.items[static_cast<size_t>(it->second)].id != item.id) __builtin_trap();
    }
    for (const auto& column : cat.columns) (void)mg::graph::column_values(cat, column);
  } catch (const mg::graph::GraphInputError&) {
  }
  return 0;
}
