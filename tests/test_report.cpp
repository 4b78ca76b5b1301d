// melgraph report's pieces (engine/report): HTML escaping, nice axis ticks, a line chart with
// gaps at non-finite values, PCA against covariances whose eigenvectors are known exactly, the
// chart plan, the index sections on an index built in memory, and the page of a small
// runs.sqlite written with RunDb: every metric name of the run is in some chart's data-metrics.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "engine/report/html.h"
#include "engine/report/index_sections.h"
#include "engine/report/metric_charts.h"
#include "engine/report/pca.h"
#include "engine/report/report.h"
#include "engine/report/report_error.h"
#include "engine/report/svg_chart.h"
#include "engine/train/run_db.h"
#include "tests/test_support.h"

namespace mg::report {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

size_t count_of(const std::string& s, const std::string& part) {
  size_t n = 0;
  for (size_t at = s.find(part); at != std::string::npos; at = s.find(part, at + part.size())) ++n;
  return n;
}

// The text of an escaped attribute value (html_escape's five entities).
std::string unescape(std::string s) {
  for (const auto& [entity, c] : std::vector<std::pair<std::string, std::string>>{
           {"&lt;", "<"}, {"&gt;", ">"}, {"&quot;", "\""}, {"&#39;", "'"}, {"&amp;", "&"}})
    s = std::regex_replace(s, std::regex(entity), c);
  return s;
}

// The metric names of every chart: data-metrics="a b c" of each <figure class="chart">.
std::vector<std::vector<std::string>> chart_metrics(const std::string& html) {
  std::vector<std::vector<std::string>> out;
  const std::regex attr("<figure class=\"chart\" data-metrics=\"([^\"]*)\"");
  for (auto it = std::sregex_iterator(html.begin(), html.end(), attr); it != std::sregex_iterator(); ++it) {
    const std::string v = unescape((*it)[1].str());
    std::vector<std::string> names;
    for (size_t b = 0; b < v.size();) {
      const size_t e = std::min(v.find(' ', b), v.size());
      names.push_back(v.substr(b, e - b));
      b = e + 1;
    }
    out.push_back(names);
  }
  return out;
}

TEST(ReportHtml, EscapesMarkupCharacters) {
  EXPECT_EQ(html_escape("a & b < c > d \" e ' f"), "a &amp; b &lt; c &gt; d &quot; e &#39; f");
  EXPECT_EQ(html_escape("<script>alert(1)</script>"), "&lt;script&gt;alert(1)&lt;/script&gt;");
  EXPECT_EQ(html_escape("&amp;"), "&amp;amp;");  // already escaped text is text: escaped again
}

TEST(ReportHtml, KeepsUtf8AndReplacesWhatHtmlForbids) {
  const std::string replacement = "\xEF\xBF\xBD";
  EXPECT_EQ(html_escape("Bj\xC3\xB6rk \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x8E\xB5"),
            "Bj\xC3\xB6rk \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x8E\xB5");
  EXPECT_EQ(html_escape("a\xFF"
                        "b"),
            "a" + replacement + "b");                                                         // not UTF-8
  EXPECT_EQ(html_escape("a\xC3"), "a" + replacement);                                         // cut sequence
  EXPECT_EQ(html_escape(std::string("a\0b\x01", 4)), "a" + replacement + "b" + replacement);  // C0 controls
  EXPECT_EQ(html_escape("a\xC2\x85"
                        "b"),
            "a" + replacement + "b");                                 // C1 control U+0085
  EXPECT_EQ(html_escape("x\xEF\xBF\xBEy"), "x" + replacement + "y");  // noncharacter U+FFFE
  EXPECT_EQ(html_escape("line\r\nnext\ttab"), "line\nnext\ttab");
}

TEST(ReportChart, NiceTicksCoverTheRangeWithRoundSteps) {
  Ticks t = nice_ticks(0, 1, 5);
  EXPECT_DOUBLE_EQ(t.step, 0.2);
  ASSERT_EQ(t.values.size(), 6u);
  EXPECT_DOUBLE_EQ(t.values.front(), 0);
  EXPECT_NEAR(t.values.back(), 1, 1e-12);

  t = nice_ticks(-37, 412, 5);
  EXPECT_DOUBLE_EQ(t.step, 100);
  EXPECT_EQ(t.values, (std::vector<double>{-100, 0, 100, 200, 300, 400, 500}));

  t = nice_ticks(0, 3, 6, /*integer=*/true);  // steps of training: never half a step
  EXPECT_DOUBLE_EQ(t.step, 1);
  EXPECT_EQ(t.values, (std::vector<double>{0, 1, 2, 3}));

  t = nice_ticks(0.25, 0.25);  // one value: widened around it
  EXPECT_LT(t.values.front(), 0.25);
  EXPECT_GT(t.values.back(), 0.25);

  // Any range: covered, 1-2-5 steps, a handful of ticks.
  for (const auto& [lo, hi] : std::vector<std::pair<double, double>>{
           {1e-6, 3.7e-4}, {-2.5, -2.4}, {0.713, 0.9991}, {12345, 98765}, {-1, 1}, {3.2, 3.2000001}}) {
    t = nice_ticks(lo, hi, 5);
    EXPECT_LE(t.values.front(), lo) << lo << " " << hi;
    EXPECT_GE(t.values.back(), hi) << lo << " " << hi;
    EXPECT_GE(t.values.size(), 3u) << lo << " " << hi;
    EXPECT_LE(t.values.size(), 12u) << lo << " " << hi;
    const double mantissa = t.step / std::pow(10.0, std::floor(std::log10(t.step)));
    EXPECT_TRUE(std::abs(mantissa - 1) < 1e-9 || std::abs(mantissa - 2) < 1e-9 || std::abs(mantissa - 5) < 1e-9)
        << t.step;
  }
  EXPECT_EQ(tick_label(0.2, 0.2), "0.2");
  EXPECT_EQ(tick_label(0.25, 0.05), "0.25");
  EXPECT_EQ(tick_label(300, 100), "300");
  EXPECT_EQ(tick_label(-1e-17, 0.1), "0.0");  // not "-0.0"
  EXPECT_EQ(tick_label(2e-5, 1e-5), "2e-05");
  EXPECT_EQ(fixed(-0.04, 1), "0.0");
}

TEST(ReportChart, NonFiniteValuesAreGapsInTheLine) {
  LineChart c;
  Series s;
  s.label = "loss";
  s.x = {1, 2, 3, 4, 5, 6, 7, 8};
  s.y = {1.0, kNaN, 3.0, 4.0, 5.0, kInf, 7.0, kNaN};
  c.series.push_back(s);
  c.references.push_back({"chance", 2.0, "#777777"});
  const std::string svg = line_chart_svg(c);
  // Runs of finite points: {1} (a dot), {3, 4, 5} (a line), {7} (a dot).
  EXPECT_EQ(count_of(svg, "<polyline"), 1u) << svg;
  EXPECT_EQ(count_of(svg, "r=\"2.5\""), 2u) << svg;
  const std::smatch m = [&] {
    std::smatch r;
    std::regex_search(svg, r, std::regex("<polyline[^>]* points=\"([^\"]*)\""));
    return r;
  }();
  ASSERT_FALSE(m.empty());
  EXPECT_EQ(count_of(m[1].str(), ","), 3u) << m[1];
  for (const char* bad : {"nan", "inf", "NaN"}) EXPECT_EQ(svg.find(bad), std::string::npos) << bad;
  EXPECT_NE(svg.find("stroke-dasharray"), std::string::npos);  // the reference line
  EXPECT_NE(svg.find(">chance 2<"), std::string::npos) << svg;

  Series empty;
  empty.label = "all NaN";
  empty.x = {1, 2};
  empty.y = {kNaN, kNaN};
  LineChart e;
  e.series.push_back(empty);
  const std::string none = line_chart_svg(e);
  EXPECT_NE(none.find("no finite values"), std::string::npos);
  EXPECT_EQ(none.find("<polyline"), std::string::npos);
}

TEST(ReportChart, LongSeriesCollapseToTheirPixelEnvelope) {
  Series s;
  for (int i = 0; i < 100000; ++i) {
    s.x.push_back(i);
    s.y.push_back(std::sin(i * 0.01) + (i % 2 ? 0.1 : -0.1));
  }
  LineChart c;
  c.series.push_back(s);
  const std::string svg = line_chart_svg(c);
  EXPECT_LT(svg.size(), 60000u);  // at most four points per pixel column
  EXPECT_EQ(count_of(svg, "<polyline"), 1u);
}

TEST(ReportChart, MovingAverageIsUnbiasedAndSkipsGaps) {
  const std::vector<double> v = moving_average({2, 2, kNaN, 2, 2}, 10);
  ASSERT_EQ(v.size(), 5u);
  for (const size_t i : {0u, 1u, 3u, 4u}) EXPECT_NEAR(v[i], 2, 1e-12) << i;  // no pull towards 0 at the start
  EXPECT_TRUE(std::isnan(v[2]));
}

// Rows of the Walsh-Hadamard matrix of order 16 scaled to unit length: entries +-1/4, exact in
// float32, orthonormal.
std::vector<std::vector<double>> hadamard16() {
  std::vector<std::vector<double>> h(16, std::vector<double>(16));
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 16; ++j) h[i][j] = (__builtin_popcount(static_cast<unsigned>(i & j)) % 2 ? -0.25 : 0.25);
  return h;
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Points c +- s_k h_k (k = 0..3, s = 8, 4, 2, 1) around an offset c: their mean is c and their
// covariance sum_k 2 s_k^2 h_k h_k' / (n - 1), so the axes are h_1 (the rows' order: h[1],
// h[2] below) with variances 2 s_k^2 / 7, exactly. Every input is exact in float32 and the sums
// in float64 are exact too, so the only error is the iteration's: it stops at a residual
// |C v - lambda v| <= 1e-10 lambda_1, which bounds the angle to the true axis by
// 1e-10 lambda_1 / (lambda_1 - lambda_2) = 1.3e-10 and the variance's relative error by its square.
TEST(ReportPca, FindsTheKnownAxesOfAHadamardCloud) {
  const auto h = hadamard16();
  const std::vector<int> rows_used = {5, 9, 3, 12};
  const std::vector<double> s = {8, 4, 2, 1};
  std::vector<double> c(16, 0.0);
  c[0] = 0.5;
  c[7] = -1.25;
  std::vector<float> x;
  for (size_t k = 0; k < 4; ++k)
    for (const double sign : {1.0, -1.0})
      for (int j = 0; j < 16; ++j) x.push_back(static_cast<float>(c[j] + sign * s[k] * h[rows_used[k]][j]));
  const PrincipalAxes p = principal_axes(x.data(), 8, 16, 2);
  EXPECT_TRUE(p.converged);
  for (int j = 0; j < 16; ++j) EXPECT_EQ(p.mean[j], c[j]) << j;
  EXPECT_NEAR(p.total_variance, 2.0 * (64 + 16 + 4 + 1) / 7, 1e-12);
  for (size_t k = 0; k < 2; ++k) {
    const std::vector<double>& want = h[rows_used[k]];
    EXPECT_NEAR(dot(p.axes[k], p.axes[k]), 1, 1e-12);
    EXPECT_GE(std::abs(dot(p.axes[k], want)), 1 - 1e-15) << k;  // 1 - cos(angle) <= angle^2 / 2
    double off = 0;                                             // the part of the axis outside the true direction
    for (int j = 0; j < 16; ++j) {
      const double e = p.axes[k][j] - dot(p.axes[k], want) * want[j];
      off += e * e;
    }
    EXPECT_LE(std::sqrt(off), 2e-10) << k;
    const double variance = 2 * s[k] * s[k] / 7;
    EXPECT_LE(std::abs(p.variance[k] - variance) / variance, 1e-12) << k;
  }
  EXPECT_NEAR(dot(p.axes[0], p.axes[1]), 0, 1e-12);
  // The point c + 8 h_5 sits at +-8 on axis 1 and 0 on axis 2.
  const std::vector<double> xy = project(p, x.data());
  EXPECT_NEAR(std::abs(xy[0]), 8, 8 * 1e-9);
  EXPECT_NEAR(xy[1], 0, 1e-9);
}

// Signed coordinate axes in a permuted order (d = 256, more than the block of vectors iterated):
// the top axes are +e_perm(0) and +e_perm(1) exactly (the sign rule makes the largest entry
// positive), variances s_k^2 * 2 / (n - 1) with s_k = 64 * 0.9^k.
TEST(ReportPca, FindsDominantCoordinateAxesBeyondTheIteratedBlock) {
  const int d = 256, dims_used = 40;
  std::vector<int> perm(d);
  for (int i = 0; i < d; ++i) perm[i] = (i * 97 + 13) % d;  // 97 is odd: a permutation of 0..255
  std::vector<float> x;
  std::vector<double> s;
  for (int k = 0; k < dims_used; ++k) {
    s.push_back(64 * std::pow(0.9, k));
    for (const double sign : {1.0, -1.0}) {
      std::vector<float> row(d, 0.0f);
      row[perm[k]] = static_cast<float>(sign * s[k]);
      x.insert(x.end(), row.begin(), row.end());
    }
  }
  const int64_t n = 2 * dims_used;
  const PrincipalAxes p = principal_axes(x.data(), n, d, 2);
  EXPECT_TRUE(p.converged) << p.iterations;
  for (int k = 0; k < 2; ++k) {
    EXPECT_NEAR(p.axes[k][perm[k]], 1, 1e-12) << k;
    const double sk = static_cast<float>(s[k]);  // the variance of the float32 inputs
    EXPECT_LE(std::abs(p.variance[k] - 2 * sk * sk / static_cast<double>(n - 1)) / p.variance[k], 1e-12);
  }
}

TEST(ReportPca, RefusesBadShapesAndHandlesOneRow) {
  const std::vector<float> one = {1, 2, 3};
  EXPECT_THROW(principal_axes(one.data(), 0, 3, 2), std::invalid_argument);
  EXPECT_THROW(principal_axes(one.data(), 1, 3, 4), std::invalid_argument);
  const PrincipalAxes p = principal_axes(one.data(), 1, 3, 2);
  EXPECT_EQ(p.variance, (std::vector<double>{0, 0}));
  EXPECT_NEAR(dot(p.axes[0], p.axes[1]), 0, 1e-12);
}

TEST(ReportPlan, EveryNameIsInExactlyOneChart) {
  const std::vector<std::string> names = {"train.loss",
                                          "train.lr",
                                          "train.active",
                                          "train.active_share",
                                          "train.grad_norm",
                                          "train.mined",
                                          "loader.wait_fraction",
                                          "val.held-out_items.recall@10",
                                          "baseline.held-out_items.recall@10",
                                          "chance.held-out_items.recall@10",
                                          "val.training_fit.ndcg@10",
                                          "baseline.orphan.recall@10",
                                          "custom.metric"};
  const std::vector<ChartSpec> plan = plan_charts(names);
  std::map<std::string, int> seen;
  for (const ChartSpec& c : plan)
    for (const std::string& n : c.names()) ++seen[n];
  for (const std::string& n : names) EXPECT_EQ(seen[n], 1) << n;
  EXPECT_EQ(seen.size(), names.size());
  ASSERT_GE(plan.size(), 2u);
  EXPECT_EQ(plan[0].metric, "train.loss");
  EXPECT_TRUE(plan[0].smoothed);
  EXPECT_EQ(plan[1].metric, "train.lr");
  const auto held = std::find_if(plan.begin(), plan.end(),
                                 [](const ChartSpec& c) { return c.metric == "val.held-out_items.recall@10"; });
  ASSERT_NE(held, plan.end());
  EXPECT_EQ(held->group, ChartGroup::Validation);
  EXPECT_EQ(held->baseline, "baseline.held-out_items.recall@10");
  EXPECT_EQ(held->chance, "chance.held-out_items.recall@10");
  EXPECT_TRUE(held->untrained);
  for (const char* other : {"baseline.orphan.recall@10", "custom.metric"}) {
    const auto it = std::find_if(plan.begin(), plan.end(), [&](const ChartSpec& c) { return c.metric == other; });
    ASSERT_NE(it, plan.end()) << other;
    EXPECT_EQ(it->group, ChartGroup::Other) << other;
  }
}

// A run with every kind of metric the trainer logs, a NaN, a name of an unknown prefix and one
// with '&' and '<', then a second run.
void write_runs(const std::string& path) {
  RunDb db(path);
  RunInfo info;
  info.name = "tiny <run> & co";
  info.config = "[train]\nsteps = 20\n";
  info.seed = 7;
  info.device = "cpu";
  const int64_t id = db.begin_run(info);
  for (int s = 1; s <= 20; ++s) {
    db.log(id, s, "train.loss", s == 5 ? kNaN : 1.0 / s);
    db.log(id, s, "train.lr", 1e-3);
    db.log(id, s, "train.active", 24 - s % 3);
    db.log(id, s, "train.grad_norm", 2.0);
  }
  for (const int s : {0, 10, 20}) {
    db.log(id, s, "val.held-out_items.recall@10", 0.2 + s * 0.01);
    db.log(id, s, "val.training_fit.triplet_accuracy", 0.6 + s * 0.01);
    if (s > 0) db.log(id, s, "loader.wait_fraction", 0.1);
  }
  db.log(id, 0, "baseline.held-out_items.recall@10", 0.25);
  db.log(id, 0, "chance.held-out_items.recall@10", 0.05);
  db.log(id, 0, "baseline.orphan.recall@10", 0.3);
  db.log(id, 3, "custom.a&b<c", 1.5);
  db.end_run(id, RunStatus::Finished, "done <ok> & \"quoted\"");
  info.name = "second";
  const int64_t second = db.begin_run(info);
  db.log(second, 1, "train.loss", 0.5);
  db.end_run(second, RunStatus::Failed, "stopped");
}

TEST(ReportPage, EveryMetricOfTheRunIsInAChart) {
  test::TempDir dir;
  write_runs(dir.file("runs.sqlite"));
  ReportOptions o;
  o.run_dir = dir.path.string();
  o.run_id = 1;
  const Report r = build_report(o);
  EXPECT_EQ(r.run_id, 1);

  std::set<std::string> want;
  {
    const RunDb db(dir.file("runs.sqlite"));
    for (const MetricRow& m : db.metrics(1)) want.insert(m.name);
  }
  EXPECT_EQ(want.size(), 11u);
  EXPECT_EQ(r.metrics, want.size());
  std::map<std::string, int> charted;
  const auto charts = chart_metrics(r.html);
  EXPECT_EQ(charts.size(), r.charts);
  for (const auto& names : charts)
    for (const std::string& n : names) ++charted[n];
  for (const std::string& n : want) EXPECT_EQ(charted[n], 1) << n << " is not in exactly one chart";
  EXPECT_EQ(charted.size(), want.size());

  // Text from the database is escaped; the sections without an index say so.
  EXPECT_NE(r.html.find("done &lt;ok&gt; &amp; &quot;quoted&quot;"), std::string::npos);
  EXPECT_NE(r.html.find("tiny &lt;run&gt; &amp; co"), std::string::npos);
  EXPECT_EQ(r.html.find("<run>"), std::string::npos);
  EXPECT_EQ(r.html.find("custom.a&b<c"), std::string::npos);
  EXPECT_EQ(count_of(r.html, "no index given (--index)"), 3u);
  EXPECT_NE(r.html.find("1 non-finite value shown as gaps"), std::string::npos);
  EXPECT_NE(r.html.find("train.clips_per_second (throughput) is not in this run"), std::string::npos);
  for (const char* external : {"http://", "https://", "src="}) {
    // The SVG namespace is the one URL on the page, and it is a name, not a request.
    std::string page = r.html;
    for (size_t at; (at = page.find("xmlns=\"http://www.w3.org/2000/svg\"")) != std::string::npos;) page.erase(at, 34);
    EXPECT_EQ(page.find(external), std::string::npos) << external;
  }

  o.run_id = 0;  // the last run
  EXPECT_EQ(build_report(o).run_id, 2);
}

TEST(ReportPage, RefusesWhatIsNoRun) {
  test::TempDir dir;
  ReportOptions o;
  o.run_dir = dir.file("no-such-run");
  test::expect_error<ReportInputError>([&] { build_report(o); }, dir.file("no-such-run") + ": no such directory");
  o.run_dir = dir.path.string();
  test::expect_error<ReportInputError>([&] { build_report(o); }, dir.file("runs.sqlite") + ": no such file");
  EXPECT_FALSE(std::filesystem::exists(dir.file("runs.sqlite")));  // not created by looking
  write_runs(dir.file("runs.sqlite"));
  o.run_id = 99;
  test::expect_error<ReportInputError>([&] { build_report(o); }, "no run with id 99 (its runs: 1, 2)");
  o.run_id = 1;
  o.index = dir.file("no-such-index.sqlite");
  test::expect_error<ReportInputError>([&] { build_report(o); }, "no-such-index.sqlite");
}

// 30 items of 3 artists on 4 dimensions, titles with markup.
index::Index small_index(bool with_artist) {
  index::Index x;
  x.source = "memory";
  x.dim = 4;
  for (int i = 0; i < 30; ++i) {
    index::IndexItem it;
    it.id = std::to_string(i);
    it.id.insert(it.id.begin(), 't');
    it.path = it.id + ".wav";
    it.title = "Song <" + std::to_string(i) + "> & more";
    if (with_artist) it.artist = "artist " + std::to_string(i % 3);
    it.extra = "{\"album\": \"album " + std::to_string(i % 5) + "\", \"year\": " + std::to_string(1990 + i % 2) + "}";
    x.items.push_back(it);
    std::vector<double> v = {std::cos(i * 0.3), std::sin(i * 0.3), 0.3 * (i % 3), 0.1};
    double norm = 0;
    for (const double a : v) norm += a * a;
    for (const double a : v) x.vectors.push_back(static_cast<float>(a / std::sqrt(norm)));
  }
  x.rebuild_lookup();
  return x;
}

TEST(ReportIndex, MapColoursSamplesAndOutlines) {
  const index::Index x = small_index(true);
  EXPECT_EQ(default_color_column(x), "artist");
  EXPECT_EQ(default_color_column(small_index(false)), "album");
  IndexReportOptions o;
  o.held_out = {"t1", "t2", "not-in-index"};
  Section s = embedding_map_section(x, o);
  EXPECT_EQ(count_of(s.body, "<circle"), 30u + 3 + 1);  // points, legend swatches, held-out swatch
  EXPECT_EQ(count_of(s.body, "stroke=\"#000\" stroke-width=\"1.6\" fill="), 2u);  // t1 and t2
  EXPECT_NE(s.body.find("<title>t7 \xE2\x80\x94 Song &lt;7&gt; &amp; more"), std::string::npos);
  EXPECT_NE(s.body.find("artist 0 (10)"), std::string::npos);

  o.max_points = 10;
  o.color_by = "year";  // a column of extra
  s = embedding_map_section(x, o);
  EXPECT_EQ(count_of(s.body, "<title>"), 10u);
  EXPECT_NE(s.body.find("Showing 10 of the index&#39;s 30 items"), std::string::npos);
  EXPECT_NE(s.body.find("1990 ("), std::string::npos);

  o.color_by = "genre";
  test::expect_error<ReportInputError>([&] { embedding_map_section(x, o); },
                                       "--color-by genre: the index memory has no such column (it has: album, artist");
}

TEST(ReportIndex, HistogramCountsEveryPairOrTheSample) {
  const index::Index x = small_index(true);
  IndexReportOptions o;
  Section s = similarity_section(x, o);
  EXPECT_NE(s.body.find("all 435 pairs"), std::string::npos);  // 30 * 29 / 2
  EXPECT_NE(s.body.find("spread: cosine similarity of all 435 item pairs"), std::string::npos);
  o.max_pairs = 100;
  s = similarity_section(x, o);
  EXPECT_NE(s.body.find("a random sample of 100 pairs"), std::string::npos);
  // Bar counts add up to the pairs.
  int64_t total = 0;
  const std::regex bar("\\): ([0-9]+)</title>");
  for (auto it = std::sregex_iterator(s.body.begin(), s.body.end(), bar); it != std::sregex_iterator(); ++it)
    total += std::stoll((*it)[1].str());
  EXPECT_EQ(total, 100);
}

TEST(ReportIndex, RetrievalSaysWhyItIsAbsent) {
  const index::Index x = small_index(true);
  RetrievalInputs in;
  in.edges = "/no/such/edges.csv";
  const Section s = retrieval_section(x, in);
  EXPECT_NE(s.body.find("/no/such/edges.csv (data.edges) does not exist"), std::string::npos) << s.body;
  EXPECT_EQ(s.body.find("<table"), std::string::npos);
}

}  // namespace
}  // namespace mg::report
