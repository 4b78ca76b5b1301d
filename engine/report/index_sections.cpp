#include "engine/report/index_sections.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>
#include <unordered_set>

#include "engine/backend_factory.h"
#include "engine/index/index_eval.h"
#include "engine/report/pca.h"
#include "engine/report/report_error.h"
#include "engine/report/svg_chart.h"
#include "engine/retrieval_metrics.h"
#include "graph/edge_list.h"
#include "graph/edge_list_io.h"
#include "graph/preference_graph.h"
#include "kernels/philox.h"

namespace mg::report {

namespace {

using Json = nlohmann::json;

constexpr uint64_t kMapStream = 0x6d6170ull;     // "map": which items the map samples
constexpr uint64_t kPairStream = 0x70616972ull;  // "pair": the histogram's item pairs
constexpr size_t kLegendValues = 12;             // coloured values; the rest are "other"
constexpr const char* kMapId = "embedding-map";
constexpr const char* kSimilarityId = "similarity";
constexpr const char* kRetrievalId = "retrieval";

// Column value of an item: the index's own columns, else the catalog's other columns in extra
// (text as is, numbers and the like as JSON); "" when the item has none.
std::string column_value(const index::IndexItem& it, const Json& extra, const std::string& column) {
  if (column == "id") return it.id;
  if (column == "path") return it.path;
  if (column == "title") return it.title.value_or("");
  if (column == "artist") return it.artist.value_or("");
  if (column == "in_degree") return it.in_degree < 0 ? "" : std::to_string(it.in_degree);
  if (!extra.is_object()) return "";
  const auto f = extra.find(column);
  if (f == extra.end() || f->is_null()) return "";
  return f->is_string() ? f->get<std::string>() : f->dump();
}

std::vector<Json> parse_extras(const index::Index& x) {
  std::vector<Json> out;
  out.reserve(x.items.size());
  for (const index::IndexItem& it : x.items) out.push_back(Json::parse(it.extra, nullptr, /*allow_exceptions=*/false));
  return out;
}

// Every column an item of the index has: the index's own and the keys of extra.
std::set<std::string> columns_of(const std::vector<Json>& extras) {
  std::set<std::string> out = {"id", "path", "title", "artist", "in_degree"};
  for (const Json& e : extras)
    if (e.is_object())
      for (const auto& [k, v] : e.items()) out.insert(k);
  return out;
}

// Up to `limit` distinct rows of [0, n), a seeded random choice (partial Fisher-Yates), ascending.
std::vector<int64_t> sample_rows(int64_t n, int64_t limit, uint64_t seed) {
  std::vector<int64_t> rows(static_cast<size_t>(n));
  std::iota(rows.begin(), rows.end(), int64_t{0});
  if (n <= limit) return rows;
  for (int64_t i = 0; i < limit; ++i) {
    const auto span = static_cast<uint64_t>(n - i);
    const auto j =
        i + static_cast<int64_t>(
                (static_cast<uint64_t>(philox_u32(seed, kMapStream, static_cast<uint64_t>(i))) * span) >> 32);
    std::swap(rows[static_cast<size_t>(i)], rows[static_cast<size_t>(j)]);
  }
  rows.resize(static_cast<size_t>(limit));
  std::sort(rows.begin(), rows.end());
  return rows;
}

// Groups of the map's legend: the kLegendValues most frequent values get colours, in falling
// count; every other value maps to -1 ("other").
struct Coloring {
  std::vector<ScatterGroup> groups;
  std::map<std::string, int> group_of;
  int64_t other_items = 0, other_values = 0;
};

Coloring coloring(const std::vector<std::string>& values) {
  std::map<std::string, int64_t> count;
  for (const std::string& v : values) ++count[v];
  std::vector<std::pair<std::string, int64_t>> by_count(count.begin(), count.end());
  std::stable_sort(by_count.begin(), by_count.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  Coloring c;
  for (size_t i = 0; i < by_count.size(); ++i) {
    const auto& [value, n] = by_count[i];
    if (i < kLegendValues) {
      c.group_of[value] = static_cast<int>(i);
      c.groups.push_back({(value.empty() ? "(empty)" : value) + " (" + std::to_string(n) + ")", kPalette[i]});
    } else {
      c.other_items += n;
      ++c.other_values;
    }
  }
  if (c.other_values > 0)
    c.groups.push_back(
        {"other: " + std::to_string(c.other_values) + " values (" + std::to_string(c.other_items) + ")", kOtherColor});
  return c;
}

std::string percent(double share) { return fixed(100 * share, 1) + "%"; }

std::string metric_cell(double v) { return "<td class=\"num\">" + fixed(v, 4) + "</td>"; }

std::string bucket_row(const std::string& label, const RetrievalMetrics& m) {
  return "<tr><td>" + html_escape(label) + "</td><td class=\"num\">" + std::to_string(m.queries) + "</td>" +
         metric_cell(m.recall) + metric_cell(m.ndcg) + metric_cell(m.map) + metric_cell(m.hit_rate) + "</tr>\n";
}

}  // namespace

std::string default_color_column(const index::Index& x) {
  for (const index::IndexItem& it : x.items)
    if (it.artist && !it.artist->empty()) return "artist";
  for (const Json& e : parse_extras(x))
    if (e.is_object() && e.contains("album")) return "album";
  return "";
}

Section embedding_map_section(const index::Index& x, const IndexReportOptions& o) {
  Section s{kMapId, "Embedding map", ""};
  const std::vector<Json> extras = parse_extras(x);
  const std::string column = o.color_by.empty() ? default_color_column(x) : o.color_by;
  if (!o.color_by.empty()) {
    const std::set<std::string> columns = columns_of(extras);
    if (!columns.count(o.color_by)) {
      std::string list;
      for (const std::string& c : columns) list += (list.empty() ? "" : ", ") + c;
      throw ReportInputError("--color-by " + o.color_by + ": the index " + x.source +
                             " has no such column (it has: " + list + ")");
    }
  }
  if (x.size() == 0 || x.dim < 1) {
    s.body = note("the index holds no items");
    return s;
  }
  const std::vector<int64_t> rows = sample_rows(x.size(), o.max_points, o.seed);
  std::vector<float> sample;
  sample.reserve(rows.size() * static_cast<size_t>(x.dim));
  for (const int64_t r : rows) sample.insert(sample.end(), x.vector(r), x.vector(r) + x.dim);
  const int count = std::min(2, x.dim);
  const PrincipalAxes pca = principal_axes(sample.data(), static_cast<int64_t>(rows.size()), x.dim, count);

  std::vector<std::string> values;
  values.reserve(rows.size());
  for (const int64_t r : rows)
    values.push_back(
        column.empty() ? "" : column_value(x.items[static_cast<size_t>(r)], extras[static_cast<size_t>(r)], column));
  const Coloring colors = column.empty() ? Coloring{} : coloring(values);
  const std::unordered_set<std::string> held(o.held_out.begin(), o.held_out.end());

  Scatter sc;
  sc.x_label = "principal component 1";
  sc.y_label = count > 1 ? "principal component 2" : "";
  sc.groups = colors.groups;
  int64_t held_plotted = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    const index::IndexItem& it = x.items[static_cast<size_t>(rows[i])];
    const std::vector<double> xy = project(pca, sample.data() + i * static_cast<size_t>(x.dim));
    ScatterPoint p;
    p.x = xy[0];
    p.y = count > 1 ? xy[1] : 0;
    if (!column.empty()) {
      const auto g = colors.group_of.find(values[i]);
      p.group = g == colors.group_of.end() ? -1 : g->second;
    }
    p.highlighted = held.count(it.id) > 0;
    held_plotted += p.highlighted ? 1 : 0;
    p.tooltip = it.id + (it.title ? " \xE2\x80\x94 " + *it.title : std::string()) +
                (column.empty() ? std::string() : "\n" + column + ": " + values[i]) +
                (p.highlighted ? "\nheld out" : "");
    sc.points.push_back(std::move(p));
  }
  if (!held.empty()) sc.highlighted_label = "held-out item (" + std::to_string(held_plotted) + " plotted)";

  std::string caption = "PCA of the " + std::to_string(rows.size()) + " plotted items' vectors (float64): component 1 ";
  const double total = pca.total_variance > 0 ? pca.total_variance : 1;
  caption += "holds " + percent(pca.variance[0] / total) + " of the variance";
  if (count > 1) caption += ", component 2 " + percent(pca.variance[1] / total);
  caption += ". Colour: " + (column.empty() ? std::string("none (the index has no artist or album; --color-by COLUMN)")
                                            : column + " (the 12 most frequent values, the rest grey)");
  caption += ". Hover a point for its id and title.";
  s.body += "<figure class=\"map\">\n<figcaption>" + html_escape(caption) + "</figcaption>\n" + scatter_svg(sc) +
            "</figure>\n";
  if (rows.size() < static_cast<size_t>(x.size()))
    s.body += note("Showing " + std::to_string(rows.size()) + " of the index's " + std::to_string(x.size()) +
                   " items: a random sample (seed " + std::to_string(o.seed) + "); the PCA is fitted on that sample.");
  if (!pca.converged)
    s.body += note("The principal components did not converge to the tolerance in " + std::to_string(pca.iterations) +
                   " iterations (leading variances nearly equal); the map is still a projection onto two orthogonal "
                   "directions of high variance.");
  if (o.held_out.empty()) s.body += note("No held_out_items.txt in the run directory: no item is outlined.");
  return s;
}

Section similarity_section(const index::Index& x, const IndexReportOptions& o) {
  Section s{kSimilarityId, "Similarity of random item pairs", ""};
  const int64_t n = x.size();
  if (n < 2) {
    s.body = note("fewer than two items: no pairs");
    return s;
  }
  const auto d = static_cast<size_t>(x.dim);
  Histogram h;
  h.x_label = "cosine similarity";
  const bool every = static_cast<double>(n) * static_cast<double>(n - 1) / 2 <= static_cast<double>(o.max_pairs);
  auto cosine = [&](int64_t i, int64_t j) {
    double dotp = 0;
    const float *a = x.vector(i), *b = x.vector(j);
    for (size_t k = 0; k < d; ++k) dotp += static_cast<double>(a[k]) * b[k];
    return dotp;
  };
  if (every) {
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = i + 1; j < n; ++j) h.values.push_back(cosine(i, j));
  } else {
    const auto un = static_cast<uint64_t>(n);
    for (int64_t p = 0; p < o.max_pairs; ++p) {
      const auto pu = static_cast<uint64_t>(p);
      const auto i = static_cast<int64_t>((static_cast<uint64_t>(philox_u32(o.seed, kPairStream, 2 * pu)) * un) >> 32);
      auto j =
          static_cast<int64_t>((static_cast<uint64_t>(philox_u32(o.seed, kPairStream, 2 * pu + 1)) * (un - 1)) >> 32);
      if (j >= i) ++j;  // a distinct second row, uniform over the others
      h.values.push_back(cosine(i, j));
    }
  }
  const SimilaritySpread spread = similarity_spread(x.vectors.data(), n, x.dim, o.max_pairs, o.seed);
  h.markers = {{"median " + fixed(spread.median, 3), spread.median, "#d62728"},
               {"5th percentile " + fixed(spread.p5, 3), spread.p5, "#7f7f7f"},
               {"95th percentile " + fixed(spread.p95, 3), spread.p95, "#7f7f7f"}};
  s.body += "<figure class=\"histogram\">\n<figcaption>" +
            html_escape("Cosine similarity of " + std::string(every ? "all " : "a random sample of ") +
                        std::to_string(h.values.size()) + " pairs of distinct items" +
                        (every ? "" : " (seed " + std::to_string(o.seed) + ")") +
                        ". A well-spread embedding has its median near 0; a median near 1 means the vectors crowd "
                        "into a narrow cone.") +
            "</figcaption>\n" + histogram_svg(h) + "</figure>\n";
  s.body += note(index::format_spread(spread));
  return s;
}

Section retrieval_section(const index::Index& x, const RetrievalInputs& in) {
  Section s{kRetrievalId, "Retrieval by in-degree", ""};
  if (in.edges.empty()) {
    s.body = note("The run's config sets no data.edges: nothing to score the index against.");
    return s;
  }
  if (!std::filesystem::exists(in.edges)) {
    s.body = note("The run's edge list " + in.edges +
                  " (data.edges) does not exist here: no retrieval scores. Run `melgraph eval --index INDEX --edges "
                  "FILE` where it is.");
    return s;
  }
  index::EvalReport r;
  try {
    index::EvalOptions o;
    o.k = in.k;
    o.hops = in.hops;
    if (!in.queries_file.empty()) {
      o.queries = index::read_id_list(in.queries_file);
      o.queries_source = in.queries_file;
    }
    const graph::PreferenceGraph g(graph::load_edge_list(in.edges));
    BackendOptions bo;
    bo.device = DeviceChoice::Cpu;
    std::string backend_note;
    const std::unique_ptr<Backend> be = make_backend(bo, &backend_note);
    r = index::evaluate_index(*be, x, g, o);
  } catch (const index::IndexInputError& e) {
    s.body = note(std::string("Not scored: ") + e.what());
    return s;
  } catch (const graph::GraphInputError& e) {
    s.body = note(std::string("Not scored: ") + e.what());
    return s;
  }
  const std::string k = "@" + std::to_string(r.k);
  s.body += note("Graph neighbours within " + std::to_string(r.hops) + " hop" + (r.hops > 1 ? "s" : "") + " of " +
                 in.edges + " among each query's " + std::to_string(r.k) + " nearest index items. Queries: " +
                 (in.queries_file.empty() ? std::string("every index item in the graph")
                                          : "the run's held-out items (" + in.queries_file + "), " +
                                                std::to_string(r.queries_listed - r.queries_not_found) + " of " +
                                                std::to_string(r.queries_listed) + " found in the index and graph") +
                 ". Buckets by the query's in-degree (how many items recommend it).");
  s.body += "<table class=\"buckets\">\n<tr><th>in-degree</th><th>queries</th><th>recall" + k + "</th><th>nDCG" + k +
            "</th><th>mAP" + k + "</th><th>hit" + k + "</th></tr>\n";
  for (const index::EvalBucket& b : r.buckets) s.body += bucket_row(b.label, b.metrics);
  s.body += bucket_row("overall", r.overall) + "</table>\n";
  char chance[160];
  std::snprintf(chance, sizeof chance,
                "Chance (a random ranking): recall%s %.4f. Skipped queries (no indexed neighbour): %lld.", k.c_str(),
                r.chance_recall, static_cast<long long>(r.overall.skipped));
  s.body += note(chance);
  return s;
}

std::vector<Section> sections_without_index() {
  const std::string body = note("no index given (--index)");
  return {{kMapId, "Embedding map", body},
          {kSimilarityId, "Similarity of random item pairs", body},
          {kRetrievalId, "Retrieval by in-degree", body}};
}

}  // namespace mg::report
