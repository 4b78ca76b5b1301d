#include "graph/catalog.h"

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "graph/text_input.h"

namespace mg::graph {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

std::string resolve(const std::filesystem::path& dir, std::string_view p) {
  const std::filesystem::path path{std::string(p)};
  if (path.is_absolute() || dir.empty()) return path.lexically_normal().string();
  return (dir / path).lexically_normal().string();
}

std::string utf8_problem(std::string_view text) { return detail::utf8_problem(text, "the catalog"); }

// The catalog's header: its columns and where id and path are.
struct CatalogHeader {
  char delim = ',';
  int ncol = 0, id_col = -1, path_col = -1;
};

// Reads the header (the first line that is neither blank nor a comment) into cat.columns and
// cat.extra_columns; throws GraphInputError for an empty file, a bad or duplicate column name,
// or a missing id or path column.
CatalogHeader read_header(detail::LineReader& reader, const std::string& path, Catalog& cat,
                          std::vector<std::string>& scratch) {
  constexpr int kMaxColumns = 1024;
  std::string_view line;
  std::vector<std::string_view> f(kMaxColumns + 1);
  const char* quote_error = nullptr;
  CatalogHeader h;
  bool have_header = false;
  while (!have_header && reader.next(line)) {
    if (detail::is_blank(line) || detail::is_comment(line)) continue;
    h.delim = line.find('\t') != std::string_view::npos ? '\t' : ',';
    const int n = detail::split_fields(line, h.delim, f.data(), kMaxColumns, scratch, &quote_error);
    const std::string at = path + ":" + std::to_string(reader.line_number()) + ": header";
    if (n < 0) throw GraphInputError(at + ": " + quote_error);
    if (n > kMaxColumns)
      throw GraphInputError(path + ": header has more than " + std::to_string(kMaxColumns) + " columns");
    h.ncol = n;
    for (int c = 0; c < n; ++c) {
      const std::string name = lower(f[static_cast<size_t>(c)]);
      if (name.empty()) throw GraphInputError(at + " column " + std::to_string(c + 1) + " has no name");
      if (std::find_if(cat.columns.begin(), cat.columns.end(),
                       [&](const std::string& o) { return lower(o) == name; }) != cat.columns.end())
        throw GraphInputError(at + " column '" + name + "' appears twice");
      if (name == "id")
        h.id_col = c;
      else if (name == "path")
        h.path_col = c;
      cat.columns.emplace_back(f[static_cast<size_t>(c)]);
      if (name != "id" && name != "path") cat.extra_columns.emplace_back(f[static_cast<size_t>(c)]);
    }
    have_header = true;
  }
  if (!have_header)
    throw GraphInputError("catalog " + path + ": empty, expected a header row with columns id,path[,...]");
  for (const auto& [col, name] : {std::pair{h.id_col, "id"}, std::pair{h.path_col, "path"}}) {
    if (col >= 0) continue;
    std::string have;
    for (const auto& c : cat.columns) have += (have.empty() ? "" : ",") + c;
    throw GraphInputError("catalog " + path + ": missing required column '" + name + "' (the header has: " +
                          detail::printable(have, 120) + "); the catalog needs columns id and path");
  }
  // After the id and path check, so that a binary file is told it has no header.
  const auto bad = std::find_if(cat.columns.begin(), cat.columns.end(),
                                [](const std::string& name) { return !utf8_problem(name).empty(); });
  if (bad != cat.columns.end())
    throw GraphInputError(path + ":" + std::to_string(reader.line_number()) + ": header column " +
                          std::to_string(bad - cat.columns.begin() + 1) + "'s name " + utf8_problem(*bad));
  return h;
}

// What is wrong with a row's n fields f ("" when nothing); *duplicate when only its id repeats.
// The path may hold any bytes (a Linux file name); every other field must be UTF-8.
std::string row_problem(int n, const std::vector<std::string_view>& f, const CatalogHeader& h, const Catalog& cat,
                        const char* quote_error, bool* duplicate) {
  *duplicate = false;
  if (n < 0) return quote_error;
  if (n != h.ncol)
    return (n > h.ncol ? "more than " + std::to_string(h.ncol) : std::to_string(n)) + " fields, the header has " +
           std::to_string(h.ncol);
  if (f[static_cast<size_t>(h.id_col)].empty()) return "empty id";
  if (f[static_cast<size_t>(h.path_col)].empty()) return "empty path";
  for (int c = 0; c < h.ncol; ++c) {
    if (c == h.path_col) continue;
    const std::string bad = utf8_problem(f[static_cast<size_t>(c)]);
    if (!bad.empty()) return "column '" + cat.columns[static_cast<size_t>(c)] + "' " + bad;
  }
  if (cat.index.count(std::string(f[static_cast<size_t>(h.id_col)])) != 0) {
    *duplicate = true;
    return "duplicate id '" + std::string(f[static_cast<size_t>(h.id_col)]) + "'";
  }
  return std::string();
}

// A record may span lines (RFC 4180: a line break inside a quoted field, as Python's csv
// module writes a title with a newline): while the fields end inside an open quote, the next
// physical line joins the record after a '\n'. Returns the field count as split_fields does;
// `record` holds the joined text the fields point into and *lines the physical lines it took.
// Stops joining at kMaxRecordLines lines, leaving the quote error (a stray quote then costs
// the lines it swallowed, all counted).
constexpr int kMaxRecordLines = 1000;
int split_record(detail::LineReader& reader, std::string_view first, char delim, std::vector<std::string_view>& f,
                 int ncol, std::vector<std::string>& scratch, std::string& record, const char** quote_error,
                 int64_t* lines) {
  *lines = 1;
  int n = detail::split_fields(first, delim, f.data(), ncol, scratch, quote_error);
  if (n >= 0 || std::strcmp(*quote_error, detail::kUnterminatedQuote) != 0) return n;
  record.assign(first);
  std::string_view more;
  while (*lines < kMaxRecordLines && reader.next(more)) {
    ++*lines;
    record += '\n';
    record.append(more);
    n = detail::split_fields(record, delim, f.data(), ncol, scratch, quote_error);
    if (n >= 0 || std::strcmp(*quote_error, detail::kUnterminatedQuote) != 0) return n;
  }
  return n;
}

}  // namespace

Catalog load_catalog(const std::string& path, bool skip_bad_lines) {
  Catalog cat;
  cat.source = path;
  detail::LineReader reader(detail::open_file(path, "catalog", nullptr), path);
  const std::filesystem::path dir = std::filesystem::path(path).parent_path();
  std::vector<std::string> scratch;
  const CatalogHeader h = read_header(reader, path, cat, scratch);

  std::string_view line;
  std::vector<std::string_view> f(static_cast<size_t>(h.ncol) + 1);
  const char* quote_error = nullptr;
  std::string record;  // a record of several lines, joined
  while (reader.next(line)) {
    if (detail::is_blank(line) || detail::is_comment(line)) continue;
    const int64_t line_no = reader.line_number();
    record.clear();
    int64_t lines = 1;
    const int n = split_record(reader, line, h.delim, f, h.ncol, scratch, record, &quote_error, &lines);
    if (!record.empty()) line = record;
    bool duplicate = false;
    const std::string what = row_problem(n, f, h, cat, quote_error, &duplicate);
    if (!what.empty()) {
      if (!skip_bad_lines) throw GraphInputError(detail::bad_line_message(path, line_no, what, line));
      (duplicate ? cat.duplicates : cat.bad_lines) += duplicate ? 1 : lines;
      continue;
    }
    Catalog::Item item;
    item.id = f[static_cast<size_t>(h.id_col)];
    item.path = resolve(dir, f[static_cast<size_t>(h.path_col)]);
    item.extra.reserve(cat.extra_columns.size());
    for (int c = 0; c < h.ncol; ++c)
      if (c != h.id_col && c != h.path_col) item.extra.emplace_back(f[static_cast<size_t>(c)]);
    cat.index.emplace(item.id, static_cast<int64_t>(cat.items.size()));
    cat.items.push_back(std::move(item));
  }
  return cat;
}

std::string skipped_rows_note(const Catalog& catalog) {
  if (catalog.bad_lines == 0 && catalog.duplicates == 0) return "";
  return catalog.source + ": skipped " + std::to_string(catalog.bad_lines) + " malformed rows and " +
         std::to_string(catalog.duplicates) + " repeated ids (--skip-bad-lines)";
}

std::vector<std::string> column_values(const Catalog& catalog, const std::string& column) {
  const std::string want = lower(column);
  std::vector<std::string> out;
  out.reserve(catalog.items.size());
  if (want == "id" || want == "path") {
    for (const auto& row : catalog.items) out.push_back(want == "id" ? row.id : row.path);
    return out;
  }
  for (size_t c = 0; c < catalog.extra_columns.size(); ++c) {
    if (lower(catalog.extra_columns[c]) != want) continue;
    for (const auto& row : catalog.items) out.push_back(row.extra[c]);
    return out;
  }
  std::string have;
  for (const auto& c : catalog.columns) have += (have.empty() ? "" : ", ") + c;
  throw GraphInputError(catalog.source + ": there is no column \"" + column + "\" (the columns: " + have + ")");
}

AudioCoverage audio_coverage(const EdgeList& graph, const Catalog& catalog) {
  AudioCoverage cov;
  const auto n = static_cast<size_t>(graph.num_nodes());
  cov.has_audio.assign(n, false);
  cov.item_of_node.assign(n, -1);
  for (size_t v = 0; v < n; ++v) {
    const auto it = catalog.index.find(graph.ids[v]);
    if (it == catalog.index.end()) {
      ++cov.nodes_without_audio;
      continue;
    }
    cov.has_audio[v] = true;
    cov.item_of_node[v] = it->second;
  }
  for (const auto& item : catalog.items)
    if (graph.index.find(item.id) == graph.index.end()) ++cov.items_not_in_graph;
  return cov;
}

std::vector<bool> audio_mask(const EdgeList& graph, const Catalog& catalog) {
  return audio_coverage(graph, catalog).has_audio;
}

}  // namespace mg::graph
