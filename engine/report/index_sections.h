// The parts of `melgraph report` that show an index (melgraph export): a 2-D map of the
// embeddings (the top two principal components, coloured by a catalog column, held-out items
// outlined), the cosine similarity of random item pairs, and retrieval of graph neighbours by
// in-degree bucket (engine/index/index_eval.h) when the run's edge list is at hand.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/index/index_format.h"
#include "engine/report/html.h"

namespace mg::report {

struct IndexReportOptions {
  std::string color_by;               // a catalog column; empty: artist, else album (extra), else none
  std::vector<std::string> held_out;  // ids outlined on the map (the run's held_out_items.txt)
  int max_points = 5000;              // the map draws a seeded random sample beyond this
  int64_t max_pairs = 100000;         // pairs of the similarity histogram and figures
  uint64_t seed = 0;                  // of both samples
};

// The column --color-by defaults to for this index: "artist" when some item has one, else
// "album" when some item's extra has one, else "" (no colouring).
std::string default_color_column(const index::Index& x);

// ReportInputError when o.color_by names no column of the index (the message lists them).
Section embedding_map_section(const index::Index& x, const IndexReportOptions& o);
Section similarity_section(const index::Index& x, const IndexReportOptions& o);

// What the retrieval table is scored with: the run's edge list, cut-off and hops, and the
// held-out ids' file (empty: every index item in the graph is a query).
struct RetrievalInputs {
  std::string edges, queries_file;
  int k = 10, hops = 1;
};
// When the edge list cannot be read or scored, the section says why instead of a table.
Section retrieval_section(const index::Index& x, const RetrievalInputs& in);

// The three sections' placeholder without an index.
std::vector<Section> sections_without_index();

}  // namespace mg::report
