#include "engine/report/html.h"

#include <cstdint>

#include "engine/io/utf8.h"

namespace mg::report {

namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// Plain and readable when printed; colours match the charts' palette (svg_chart.cpp).
constexpr std::string_view kStyle = R"(
body { font-family: sans-serif; margin: 1.5em auto; max-width: 1320px; padding: 0 1em; color: #222; background: #fff; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.6em; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 0.2em 0.6em; text-align: left; font-size: 0.92em; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
.charts { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0.6em 0; }
figure.chart { margin: 0; border: 1px solid #e4e4e4; padding: 0.4em; }
figure.chart figcaption { font-size: 0.9em; color: #444; max-width: 580px; }
p.note { color: #555; font-size: 0.92em; }
)";

// The code point of the valid UTF-8 sequence of `len` bytes at p.
uint32_t decode_utf8(const unsigned char* p, size_t len) {
  if (len == 1) return p[0];
  uint32_t cp = p[0] & (0x7f >> len);
  for (size_t k = 1; k < len; ++k) cp = (cp << 6) | (p[k] & 0x3f);
  return cp;
}

// What HTML's parser reports as an error in the input stream: controls (C0 but for tab, newline
// and carriage return; DEL; C1) and the noncharacters.
bool forbidden_in_html(uint32_t cp) {
  if (cp < 0x20) return cp != '\t' && cp != '\n' && cp != '\r';
  if (cp >= 0x7f && cp <= 0x9f) return true;
  if (cp >= 0xfdd0 && cp <= 0xfdef) return true;
  return (cp & 0xfffe) == 0xfffe;
}

}  // namespace

std::string note(const std::string& text) { return "<p class=\"note\">" + html_escape(text) + "</p>\n"; }

std::string html_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const size_t len = utf8_sequence_length(text, i);
    const uint32_t cp = len ? decode_utf8(reinterpret_cast<const unsigned char*>(text.data() + i), len) : 0;
    if (len == 0 || forbidden_in_html(cp)) {
      out += kReplacement;
    } else if (cp == '\r') {
      // Dropped rather than replaced: CRLF text is common, and the newline stays.
    } else if (cp == '&') {
      out += "&amp;";
    } else if (cp == '<') {
      out += "&lt;";
    } else if (cp == '>') {
      out += "&gt;";
    } else if (cp == '"') {
      out += "&quot;";
    } else if (cp == '\'') {
      out += "&#39;";
    } else {
      out.append(text.substr(i, len));
    }
    i += len ? len : 1;
  }
  return out;
}

std::string html_page(const std::string& title, const std::vector<Section>& sections) {
  std::string out = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  out += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
  out += "<title>" + html_escape(title) + "</title>\n<style>" + std::string(kStyle) + "</style>\n</head>\n<body>\n";
  out += "<h1>" + html_escape(title) + "</h1>\n<nav>";
  for (const Section& s : sections) out += "<a href=\"#" + s.id + "\">" + html_escape(s.title) + "</a>";
  out += "</nav>\n";
  for (const Section& s : sections) {
    out += "<section id=\"" + s.id + "\">\n<h2>" + html_escape(s.title) + "</h2>\n" + s.body + "</section>\n";
  }
  out += "</body>\n</html>\n";
  return out;
}

}  // namespace mg::report
