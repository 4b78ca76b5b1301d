// The embedding index reader (engine/index/index_format.h) on arbitrary bytes: SQLite itself
// rejects most of them, so the seeds are real indexes written by write_index (scripts/fuzz)
// and the mutations reach the schema, meta and row checks. A file that is not a usable index
// must end in IndexInputError (what `melgraph query` and `eval` report); any other exception,
// a crash or a sanitizer report is a finding.
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "engine/index/index_format.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = mg::fuzz::input_file(data, size, "index.sqlite");
  // Both ways the commands read an index (eval reads the items only); chosen by the length so
  // that a seed file is read as it is.
  const bool with_vectors = size % 2 == 0;
  try {
    const mg::index::Index index = mg::index::read_index(path, with_vectors);
    // What query and eval rely on without checking: a matrix of size x dim unit rows, and
    // find() agreeing with the item order.
    if (index.dim <= 0 || index.dim > mg::index::kMaxIndexDim) __builtin_trap();
    if (with_vectors && index.vectors.size() != static_cast<size_t>(index.size()) * static_cast<size_t>(index.dim))
      __builtin_trap();
    for (int64_t row = 0; row < index.size(); ++row) {
      if (index.find(index.items[static_cast<size_t>(row)].id) != row) __builtin_trap();
      if (!with_vectors) continue;
      double norm2 = 0;
      for (int j = 0; j < index.dim; ++j) norm2 += double{index.vector(row)[j]} * index.vector(row)[j];
      if (!(std::fabs(std::sqrt(norm2) - 1) <= 1e-3)) __builtin_trap();
    }
  } catch (const mg::index::IndexInputError&) {
  }
  return 0;
}
