#include "graph/edge_list_io.h"

#include <array>

#include "engine/io/utf8.h"
#include "graph/text_input.h"

namespace mg::graph {

namespace {

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    const auto ca = static_cast<unsigned char>(a[i]), cb = static_cast<unsigned char>(b[i]);
    if ((ca >= 'A' && ca <= 'Z' ? ca + 32 : ca) != (cb >= 'A' && cb <= 'Z' ? cb + 32 : cb)) return false;
  }
  return true;
}

bool is_column_name(std::string_view f) {
  static constexpr std::array<std::string_view, 10> kNames = {"src",  "dst",  "source",   "target", "from",
                                                              "to",   "node", "neighbor", "u",      "v"};
  for (auto n : kNames)
    if (iequals(f, n)) return true;
  return false;
}

bool looks_like_header(const std::string_view* f, int n) {
  float w = 0.0f;
  if (n == 3 && !f[2].empty() && !detail::parse_finite_float(f[2], w)) return true;
  return n >= 2 && is_column_name(f[0]) && is_column_name(f[1]);
}

// The delimiter of the first data line: the first of tab, semicolon, pipe and comma that splits
// it into 2 or 3 fields (src, dst[, weight]); 0 when none does. The rarer characters come first:
// commas are common inside ids ("Crosby, Stills, Nash & Young;Neil Young" is ';'-separated),
// semicolons and pipes are not.
constexpr std::array<char, 4> kDetected = {'\t', ';', '|', ','};
char detect_delimiter(std::string_view line, std::vector<std::string>& scratch) {
  std::array<std::string_view, 3> f;
  for (const char d : kDetected) {
    const char* error = nullptr;
    const int n = detail::split_fields(line, d, f.data(), 3, scratch, &error);
    if (n == 2 || n == 3) return d;
  }
  return 0;
}

// "" when both ids are UTF-8; otherwise which one is not, where, and what to do. `line` holds
// both: a line of ASCII (most lines of most files) needs no further look.
std::string id_encoding_problem(std::string_view line, std::string_view src, std::string_view dst) {
  if (is_ascii(line)) return std::string();
  if (std::string p = detail::utf8_problem(src, "the edge list"); !p.empty()) return "source id " + p;
  if (std::string p = detail::utf8_problem(dst, "the edge list"); !p.empty()) return "destination id " + p;
  return std::string();
}

EdgeList parse_lines(detail::LineReader& reader, const std::string& source, const EdgeLoadOptions& opt, bool gz) {
  const char d = opt.delimiter;
  if (d == '"' || d == '\n' || d == '\r' || d == '#')
    throw GraphInputError(source + ": invalid delimiter '" + std::string(1, d) + "' (use ',', tab, or ';')");
  EdgeList el;
  EdgeListStats& st = el.stats;
  st.gzip = gz;
  char delim = d;
  bool first_data = true;
  std::string_view line;
  std::array<std::string_view, 3> f;
  std::vector<std::string> scratch;
  std::string what;
  while (reader.next(line)) {
    if (detail::is_blank(line)) {
      ++st.blank;
      continue;
    }
    if (detail::is_comment(line)) {
      ++st.comments;
      continue;
    }
    if (delim == 0) {
      delim = detect_delimiter(line, scratch);
      if (delim == 0) {
        if (opt.skip_bad_lines) {
          ++st.bad_lines;
          continue;
        }
        throw GraphInputError(detail::bad_line_message(
            source, reader.line_number(),
            "cannot tell the delimiter: neither tab, ';', '|' nor ',' splits the first line into src, dst[, weight] "
            "(name it with --delimiter)",
            line));
      }
    }
    const char* quote_error = nullptr;
    const int n = detail::split_fields(line, delim, f.data(), 3, scratch, &quote_error);
    if (first_data) {
      first_data = false;
      const bool header = opt.header == HeaderMode::Yes ||
                          (opt.header == HeaderMode::Auto && n >= 2 && n <= 3 && looks_like_header(f.data(), n));
      if (header) {
        st.header = true;
        continue;
      }
    }
    what.clear();
    float w = 1.0f;
    bool has_w = false;
    if (n < 0) {
      what = quote_error;
    } else if (n < 2) {
      what = "1 field, expected 2 or 3 (src, dst[, weight])";
    } else if (n > 3) {
      what = "more than 3 fields, expected 2 or 3 (src, dst[, weight])";
    } else if (f[0].empty()) {
      what = "empty source id";
    } else if (f[1].empty()) {
      what = "empty destination id";
    } else if (n == 3 && !f[2].empty()) {
      if (!detail::parse_finite_float(f[2], w))
        what = "weight '" + std::string(f[2].substr(0, 40)) + "' is not a finite number";
      else if (w < 0)  // weights add up to weighted in-degrees: a negative one has no meaning there
        what = "weight '" + std::string(f[2].substr(0, 40)) + "' is negative (weights are 0 or more)";
      else
        has_w = opt.weighted;
    }
    if (what.empty()) what = id_encoding_problem(line, f[0], f[1]);  // a well-formed line's ids
    if (!what.empty()) {
      if (opt.skip_bad_lines) {
        ++st.bad_lines;
        continue;
      }
      throw GraphInputError(detail::bad_line_message(source, reader.line_number(), what, line));
    }
    const int32_t s = el.intern(f[0]);
    const int32_t t = el.intern(f[1]);
    el.add_edge_nodes(s, t, has_w ? w : 1.0f, has_w);
  }
  st.lines = reader.line_number();
  st.delimiter = delim == 0 ? ',' : delim;
  return el;
}

}  // namespace

EdgeList load_edge_list(const std::string& path, const EdgeLoadOptions& options) {
  bool gz = false;
  detail::LineReader reader(detail::open_file(path, "edge list", &gz), path);
  return parse_lines(reader, path, options, gz);
}

EdgeList parse_edge_list(std::istream& in, const std::string& source, const EdgeLoadOptions& options) {
  detail::LineReader reader(detail::wrap_stream(in, source), source);
  return parse_lines(reader, source, options, false);
}

}  // namespace mg::graph
