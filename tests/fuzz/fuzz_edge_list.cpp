// The edge-list loader (graph/edge_list_io.h) on arbitrary bytes: plain text or gzip (detected
// from the content), every delimiter, quoting, headers, weights. A malformed file must end in
// GraphInputError, the one error `melgraph graph` and `train` report as bad input; any other
// exception, a crash, a sanitizer report or a hang is a finding.
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>

#include "engine/io/utf8.h"
#include "graph/edge_list.h"
#include "graph/edge_list_io.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = mg::fuzz::input_file(data, size, "edges.csv");
  // The options come from the input's length, not from a byte of it, so that a seed file is
  // read exactly as a user's file would be; every combination is still reached.
  static constexpr char kDelims[] = {0, ',', '\t', ';'};
  static constexpr mg::graph::HeaderMode kHeaders[] = {mg::graph::HeaderMode::Auto, mg::graph::HeaderMode::Yes,
                                                       mg::graph::HeaderMode::No};
  mg::graph::EdgeLoadOptions options;
  options.delimiter = kDelims[size % 4];
  options.header = kHeaders[(size / 4) % 3];
  options.skip_bad_lines = (size / 12) % 2 != 0;
  options.weighted = (size / 24) % 2 != 0;
  try {
    mg::graph::EdgeList edges = mg::graph::load_edge_list(path, options);
    // What the graph code after the loader relies on without checking: edges name nodes that
    // exist, weights (when kept) are one per edge, finite and >= 0, and ids are UTF-8.
    if (edges.dst.size() != edges.src.size()) __builtin_trap();
    if (!edges.weight.empty() && edges.weight.size() != edges.src.size()) __builtin_trap();
    for (size_t i = 0; i < edges.src.size(); ++i)
      if (edges.src[i] < 0 || edges.src[i] >= edges.num_nodes() || edges.dst[i] < 0 ||
          edges.dst[i] >= edges.num_nodes())
        __builtin_trap();
    for (float w : edges.weight)
      if (!(w >= 0 && w <= std::numeric_limits<float>::max())) __builtin_trap();
    for (const std::string& id : edges.ids)
      if (mg::first_invalid_utf8(id) != std::string::npos) __builtin_trap();
  } catch (const mg::graph::GraphInputError&) {
  }
  return 0;
}
