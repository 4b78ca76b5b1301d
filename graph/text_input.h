// Internal to graph/: the line reader and field splitter shared by the edge-list and catalog
// loaders. Files are read in large chunks (gzip decompressed while streaming), lines are handed
// out as string_views into the chunk buffer, so a line costs no allocation.
#pragma once
#include <cstddef>
#include <cstdint>
#include <istream>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace mg::graph::detail {

// Where the bytes come from: a (possibly gzip-compressed) file or a std::istream.
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  // Fills up to n bytes; returns 0 only at the end. Throws GraphInputError on read errors.
  virtual size_t read(char* buf, size_t n) = 0;
};

// Opens `path` with zlib: gzip is detected by its magic bytes 1f 8b (not the name) and inflated
// while streaming; anything else is read as is. `what` names the file in errors ("edge list").
std::unique_ptr<ByteSource> open_file(const std::string& path, const std::string& what, bool* is_gzip);
std::unique_ptr<ByteSource> wrap_stream(std::istream& in, const std::string& source);

class LineReader {
 public:
  LineReader(std::unique_ptr<ByteSource> src, std::string source, size_t chunk = size_t{1} << 20);
  // The next physical line without its '\n' and a trailing '\r'; the view is valid until the
  // next call. A UTF-8 byte-order mark at the start of the input is dropped.
  bool next(std::string_view& line);
  int64_t line_number() const { return line_no_; }

 private:
  std::unique_ptr<ByteSource> src_;
  std::string source_;
  // Not zero-filled (std::vector would clear the whole megabyte for every file, which was most
  // of the time a small file took); only [begin_, end_) is ever read.
  std::unique_ptr<char[]> buf_;
  size_t size_ = 0;
  size_t begin_ = 0, end_ = 0;
  bool eof_ = false, first_ = true;
  int64_t line_no_ = 0;
};

std::string_view trim(std::string_view s);
// "#" after optional whitespace.
bool is_comment(std::string_view line);
bool is_blank(std::string_view line);

// Splits a line at `delim` into at most `max_fields` trimmed fields. A field may be wrapped in
// double quotes (then it may contain the delimiter; "" is a literal quote); quoted fields are
// unescaped into `scratch` (reused between calls so steady-state parsing does not allocate).
// Returns the field count (max_fields + 1 means "more than max_fields"), or -1 with `error`
// set when the quoting is malformed.
int split_fields(std::string_view line, char delim, std::string_view* fields, int max_fields,
                 std::vector<std::string>& scratch, const char** error);
// split_fields' error for a line that ends inside a quoted field (a catalog record may go on
// on the next line).
extern const char* const kUnterminatedQuote;

// `text` made safe to print in a message: printable ASCII, tabs and valid UTF-8 as they are,
// every other byte (control bytes, broken UTF-8: a binary file) as \xNN; cut after about
// max_bytes with "...".
std::string printable(std::string_view text, size_t max_bytes = 200);

// "<source>:<line>: <what>: <printable(text)> (use --skip-bad-lines to skip such lines)"
std::string bad_line_message(const std::string& source, int64_t line_no, std::string_view what,
                             std::string_view text);

// Where `text` stops being UTF-8 and what to do, for a file of the kind `what` names ("the
// catalog"): "is not UTF-8 (byte 0xE9 at offset 3); <what> is read as UTF-8: convert it, e.g.
// with iconv -f latin1 -t utf-8". "" when the text is UTF-8. Ids and titles reach JSON output,
// the index's SQLite text and --where filters, which need the text the user typed: a Latin-1
// file converted once beats one mangled at every step.
std::string utf8_problem(std::string_view text, std::string_view what);

// A finite float with nothing else in the field.
bool parse_finite_float(std::string_view s, float& out);

}  // namespace mg::graph::detail
