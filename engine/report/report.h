// `melgraph report`: one self-contained HTML page about a training run: the run's row of
// runs.sqlite and its config, every metric it logged as a chart (metric_charts.h), and with an
// index of its embeddings, a map, the spread of similarities and retrieval by in-degree
// (index_sections.h). Nothing on the page loads from elsewhere: charts are inline SVG.
#pragma once
#include <cstdint>
#include <string>

#include "engine/report/index_sections.h"

namespace mg::report {

struct ReportOptions {
  std::string run_dir;  // a training run's directory (data.run_dir): runs.sqlite, config.toml, ...
  int64_t run_id = 0;   // 0: the last run of runs.sqlite
  std::string index;    // empty: no index sections
  IndexReportOptions index_options;
};

struct Report {
  std::string html;
  int64_t run_id = 0;
  size_t metrics = 0, charts = 0;
};

// Throws ReportInputError when run_dir holds no runs.sqlite (or it cannot be read as one), when
// the run does not exist, when the index cannot be read or --color-by names no column of it.
Report build_report(const ReportOptions& o);

}  // namespace mg::report
