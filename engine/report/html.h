// The HTML side of `melgraph report`: escaping text for the page and assembling the page from
// named sections. The page is one self-contained HTML5 file: the style sheet is inline and
// nothing is loaded from anywhere else, so it opens the same offline, mailed or archived.
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace mg::report {

// Text for an HTML element or a quoted attribute: & < > " ' become entities, and bytes that are
// not valid UTF-8 or are control characters other than tab and newline become U+FFFD, since a
// title or message read from a catalog may hold anything and the page must still parse.
std::string html_escape(std::string_view text);

// A paragraph of explanation (class "note"), its text escaped.
std::string note(const std::string& text);

// A part of the page: an anchor id (letters, digits, '-'), a heading and its HTML body.
struct Section {
  std::string id, title, body;
};

// The whole page: doctype, inline style, a table of contents and every section in order.
std::string html_page(const std::string& title, const std::vector<Section>& sections);

}  // namespace mg::report
