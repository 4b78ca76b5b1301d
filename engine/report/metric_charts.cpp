#include "engine/report/metric_charts.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <utility>

#include "engine/report/html.h"
#include "engine/report/svg_chart.h"

namespace mg::report {

namespace {

// The training charts that come first, in this order; the rest of train.* and loader.* follow
// by name.
const std::vector<std::string> kTrainingFirst = {"train.loss", "train.lr", "train.active_share",
                                                 "train.clips_per_second", "train.grad_norm"};

// Validation sets in the order of ValidationReport (engine/train/validation.cpp), then metrics
// in the order it logs them; unknown ones after these, by name.
const std::vector<std::string> kSetOrder = {"held-out_items", "held-out_edges", "training_fit"};
const std::vector<std::string> kMetricOrder = {"recall", "ndcg", "map", "hit", "triplet_accuracy"};

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

size_t rank_of(const std::vector<std::string>& order, const std::string& s) {
  return static_cast<size_t>(std::find(order.begin(), order.end(), s) - order.begin());
}

// The sort key of val.<set>.<metric>[@k]: set, then metric, then the name.
std::tuple<size_t, std::string, size_t, std::string> validation_key(const std::string& name) {
  const std::string rest = name.substr(4);  // after "val."
  const size_t dot = rest.rfind('.');
  const std::string set = dot == std::string::npos ? rest : rest.substr(0, dot);
  std::string metric = dot == std::string::npos ? std::string() : rest.substr(dot + 1);
  metric = metric.substr(0, metric.find('@'));
  return {rank_of(kSetOrder, set), set, rank_of(kMetricOrder, metric), name};
}

// Why the chart matters, for its caption (known metrics; others get their name only).
std::string caption_of(const ChartSpec& s) {
  static const std::map<std::string, std::string> known = {
      {"train.loss", "training loss of each step: thin line as logged, thick line smoothed"},
      {"train.lr", "learning rate"},
      {"train.active_share",
       "share of the batch the loss learns from: triplets with a positive hinge (of those mined, with mining); "
       "contrastive loss: rows with a positive"},
      {"train.active", "the same as a count"},
      {"train.clips_per_second", "throughput: training clips per second"},
      {"train.grad_norm", "gradient norm before clipping"},
      {"train.mined", "triplets mined in the batch"},
      {"loader.clips_per_thread_second", "loader: clips decoded per thread-second, at each validation"},
      {"loader.wait_fraction", "loader: share of the loop the trainer waited for batches"},
      {"train.skipped_nonfinite", "steps skipped for a non-finite loss or gradient"},
      {"train.exploded", "steps whose update exploded"},
  };
  const auto it = known.find(s.metric);
  if (it != known.end()) return it->second;
  if (s.group == ChartGroup::Validation) return "validation over steps (markers: each validation)";
  return "as logged";
}

std::vector<double> finite_values_at(const MetricSeries& m, double step) {
  std::vector<double> out;
  for (size_t i = 0; i < m.steps.size(); ++i)
    if (m.steps[i] == step && std::isfinite(m.values[i])) out.push_back(m.values[i]);
  return out;
}

// The last finite value at step 0 of a metric, or NaN.
double value_at_step0(const RunMetrics& metrics, const std::string& name) {
  const auto it = metrics.find(name);
  if (it == metrics.end()) return std::numeric_limits<double>::quiet_NaN();
  const std::vector<double> v = finite_values_at(it->second, 0);
  return v.empty() ? std::numeric_limits<double>::quiet_NaN() : v.back();
}

// Points of one series: many points are a line, a few (validations) get markers too.
Series series_of(const std::string& label, const MetricSeries& m, const char* color) {
  Series s;
  s.label = label;
  s.x = m.steps;
  s.y = m.values;
  s.color = color;
  s.markers = m.steps.size() <= 60;
  return s;
}

}  // namespace

RunMetrics group_metrics(const std::vector<MetricRow>& rows) {
  RunMetrics out;
  for (const MetricRow& r : rows) {
    MetricSeries& m = out[r.name];
    m.steps.push_back(static_cast<double>(r.step));
    m.values.push_back(r.value);
  }
  // RunDb::metrics orders by (name, step); sort anyway, so that any reader's rows draw left to right.
  for (auto& entry : out) {
    MetricSeries& m = entry.second;  // a lambda below uses it: no structured binding
    std::vector<size_t> order(m.steps.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return m.steps[a] < m.steps[b]; });
    MetricSeries sorted;
    for (const size_t i : order) {
      sorted.steps.push_back(m.steps[i]);
      sorted.values.push_back(m.values[i]);
    }
    m = std::move(sorted);
  }
  return out;
}

std::vector<std::string> ChartSpec::names() const {
  std::vector<std::string> out = {metric};
  if (!baseline.empty()) out.push_back(baseline);
  if (!chance.empty()) out.push_back(chance);
  return out;
}

std::vector<ChartSpec> plan_charts(const std::vector<std::string>& names) {
  const std::set<std::string> all(names.begin(), names.end());
  std::set<std::string> claimed;
  std::vector<ChartSpec> training, validation, other;

  for (const std::string& n : kTrainingFirst) {
    if (!all.count(n)) continue;
    ChartSpec c;
    c.group = ChartGroup::Training;
    c.metric = n;
    c.smoothed = n == "train.loss";
    training.push_back(c);
    claimed.insert(n);
  }
  const auto first = static_cast<std::ptrdiff_t>(training.size());
  for (const std::string& n : all) {
    if (claimed.count(n) || !(starts_with(n, "train.") || starts_with(n, "loader."))) continue;
    ChartSpec c;
    c.group = ChartGroup::Training;
    c.metric = n;
    training.push_back(c);
    claimed.insert(n);
  }
  std::stable_sort(training.begin() + first, training.end(), [](const ChartSpec& a, const ChartSpec& b) {
    return starts_with(a.metric, "train.") && !starts_with(b.metric, "train.");
  });

  std::vector<std::string> val;
  for (const std::string& n : all)
    if (starts_with(n, "val.")) val.push_back(n);
  std::sort(val.begin(), val.end(),
            [](const std::string& a, const std::string& b) { return validation_key(a) < validation_key(b); });
  for (const std::string& n : val) {
    ChartSpec c;
    c.group = ChartGroup::Validation;
    c.metric = n;
    c.untrained = true;
    const std::string rest = n.substr(4);
    if (all.count("baseline." + rest)) c.baseline = "baseline." + rest;
    if (all.count("chance." + rest)) c.chance = "chance." + rest;
    for (const std::string& m : c.names()) claimed.insert(m);
    validation.push_back(c);
  }

  for (const std::string& n : all) {
    if (claimed.count(n)) continue;
    ChartSpec c;
    c.metric = n;
    other.push_back(c);
  }
  std::vector<ChartSpec> out = std::move(training);
  out.insert(out.end(), validation.begin(), validation.end());
  out.insert(out.end(), other.begin(), other.end());
  return out;
}

std::vector<double> moving_average(const std::vector<double>& values, double span) {
  const double beta = 1 - 2 / (std::max(1.0, span) + 1);
  std::vector<double> out(values.size(), std::numeric_limits<double>::quiet_NaN());
  double acc = 0, weight = 0;
  for (size_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i])) continue;
    acc = beta * acc + (1 - beta) * values[i];
    weight = beta * weight + (1 - beta);  // dividing by it removes the pull towards the zero start
    out[i] = acc / weight;
  }
  return out;
}

std::string chart_figure(const ChartSpec& spec, const RunMetrics& metrics) {
  LineChart chart;
  const auto it = metrics.find(spec.metric);
  const MetricSeries empty;
  const MetricSeries& main = it == metrics.end() ? empty : it->second;
  std::string note;
  if (spec.smoothed) {
    Series raw = series_of(spec.metric + " (as logged)", main, "#9ecae1");
    raw.width = 1;
    raw.markers = false;
    chart.series.push_back(raw);
    const double span = std::clamp(static_cast<double>(main.values.size()) / 20, 2.0, 200.0);
    Series smooth = series_of(spec.metric + " (EMA, span " + fixed(span, 0) + " points)", main, kPalette[0]);
    smooth.y = moving_average(main.values, span);
    smooth.width = 2.2;
    smooth.markers = false;
    chart.series.push_back(smooth);
  } else {
    chart.series.push_back(series_of(spec.metric, main, kPalette[0]));
  }
  if (spec.untrained) {
    const double v = value_at_step0(metrics, spec.metric);
    if (std::isfinite(v)) chart.references.push_back({"untrained (step 0)", v, "#ff7f0e"});
  }
  if (!spec.baseline.empty()) {
    const auto b = metrics.find(spec.baseline);
    double v = value_at_step0(metrics, spec.baseline);
    if (!std::isfinite(v) && b != metrics.end() && !b->second.values.empty()) v = b->second.values.back();
    if (std::isfinite(v)) chart.references.push_back({"mean log-mel", v, "#2ca02c"});
  }
  if (!spec.chance.empty()) {
    const auto c = metrics.find(spec.chance);
    if (c != metrics.end() && !c->second.values.empty() && std::isfinite(c->second.values.back()))
      chart.references.push_back({"chance", c->second.values.back(), "#7f7f7f"});
  }
  size_t gaps = 0;
  for (const double v : main.values) gaps += std::isfinite(v) ? 0 : 1;
  if (gaps) note = "; " + std::to_string(gaps) + " non-finite value" + (gaps > 1 ? "s" : "") + " shown as gaps";

  std::string names;
  for (const std::string& n : spec.names()) names += (names.empty() ? "" : " ") + n;
  return "<figure class=\"chart\" data-metrics=\"" + html_escape(names) + "\">\n<figcaption><b>" +
         html_escape(spec.metric) + "</b>: " + html_escape(caption_of(spec) + note) + "</figcaption>\n" +
         line_chart_svg(chart) + "</figure>\n";
}

}  // namespace mg::report
