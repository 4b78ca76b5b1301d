// Which chart of `melgraph report` draws which metric of runs.sqlite, and the charts themselves.
//
// Every metric name of a run lands in exactly one chart (plan_charts), and each chart is a
// <figure class="chart" data-metrics="..."> naming all the metrics it draws, so that a reader
// (or a test) can tell that nothing logged was left out:
//   training    train.loss (raw and smoothed), train.lr, train.active, train.clips_per_second,
//               train.grad_norm, then every other train.* and loader.* metric, one chart each
//   validation  val.<set>.<metric> over steps, with the reference lines of its set and metric:
//               baseline.<set>.<metric> (the mean log-mel vector, logged at step 0), the untrained
//               model (val.<set>.<metric> at step 0) and chance.<set>.<metric> (a random ranking)
//   other       anything else, including a baseline. or chance. metric without its val. metric
// The names are those of the trainer (engine/train/trainer.cpp) and of ValidationReport::metrics
// (engine/train/validation.cpp).
#pragma once
#include <map>
#include <string>
#include <vector>

#include "engine/train/run_db.h"

namespace mg::report {

// One metric's values in step order; NaN (NULL in the file) where a value was not finite.
struct MetricSeries {
  std::vector<double> steps, values;
};
using RunMetrics = std::map<std::string, MetricSeries>;

RunMetrics group_metrics(const std::vector<MetricRow>& rows);

enum class ChartGroup { Training, Validation, Other };

struct ChartSpec {
  ChartGroup group = ChartGroup::Other;
  std::string metric;                      // the line over steps
  std::string baseline, chance;            // reference metrics drawn as horizontal lines; empty: none
  bool smoothed = false;                   // also an exponential moving average of the line
  bool untrained = false;                  // the line's own value at step 0 as a reference line
  std::vector<std::string> names() const;  // every metric the chart draws
};

// The charts for these metric names, in page order; each name is in exactly one chart.
std::vector<ChartSpec> plan_charts(const std::vector<std::string>& names);

// Debiased exponential moving average (as TensorBoard smooths), weight per point
// 1 - 2 / (span + 1); non-finite values are skipped and stay gaps.
std::vector<double> moving_average(const std::vector<double>& values, double span);

// The chart's <figure class="chart" data-metrics="..."> with caption and SVG.
std::string chart_figure(const ChartSpec& spec, const RunMetrics& metrics);

}  // namespace mg::report
