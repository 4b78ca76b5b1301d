// Loading an edge list file: "src,dst[,weight]" per line meaning "src recommends dst".
//
// Format accepted:
//   - delimiter: given, or detected from the first line that is not blank or a comment: the
//     first of tab, semicolon, pipe and comma that splits it into 2 or 3 fields (the rarer
//     characters first: commas are common inside ids); an error naming the line when none does;
//   - '#' comment lines (after optional whitespace) and blank lines anywhere; CRLF line ends;
//     a UTF-8 byte-order mark at the start;
//   - fields trimmed of surrounding whitespace; a field may be double-quoted (then it may hold
//     the delimiter; "" is a literal quote); no newlines inside quotes;
//   - an optional header line (see HeaderMode);
//   - a third column is the weight: a finite number >= 0 (checked even when weights are not used);
//     an empty third field counts as absent (weight 1);
//   - ids are UTF-8, as the catalog's (they reach JSON output and the index's text);
//   - gzip compression, detected by the magic bytes (not the name), inflated while streaming.
// A malformed line (fewer than 2 or more than 3 fields, an empty id, an id that is not UTF-8, a
// bad weight, bad quoting) throws GraphInputError "<file>:<line>: <what>: <text> (use
// --skip-bad-lines ...)" or, with skip_bad_lines, is counted in stats.bad_lines and skipped. An
// edge list with no edges is not an error here: the stats say so and the caller decides.
#pragma once
#include <istream>
#include <string>

#include "graph/edge_list.h"

namespace mg::graph {

enum class HeaderMode {
  Auto,  // the first data line is a header when its third field is present and not a number,
         // or its first two fields are both column names (src, dst, source, target, from, to,
         // node, neighbor, u, v; case-insensitive)
  Yes,   // the first data line is a header
  No,    // every data line is an edge
};

struct EdgeLoadOptions {
  char delimiter = 0;  // 0: detect (tab, ';', '|' or ',', as above); or e.g. ',' '\t' ';'
  HeaderMode header = HeaderMode::Auto;
  bool skip_bad_lines = false;
  bool weighted = true;  // keep the third column as EdgeList::weight (false: validated, then ignored)
};

// Reads a (possibly gzip-compressed) file. Errors (missing file, corrupt/truncated gzip,
// malformed lines) are GraphInputError naming the file.
EdgeList load_edge_list(const std::string& path, const EdgeLoadOptions& options = {});
// The same from a stream of plain text; `source` names it in errors. (No gzip detection.)
EdgeList parse_edge_list(std::istream& in, const std::string& source, const EdgeLoadOptions& options = {});

}  // namespace mg::graph
