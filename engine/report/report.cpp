#include "engine/report/report.h"

#include <algorithm>
#include <exception>
#include <filesystem>
#include <optional>
#include <vector>

#include "engine/config.h"
#include "engine/index/index_eval.h"
#include "engine/report/html.h"
#include "engine/report/metric_charts.h"
#include "engine/report/report_error.h"
#include "engine/train/run_db.h"
#include "engine/train/run_dir.h"
#include "engine/train/trainer.h"

namespace mg::report {

namespace {

namespace fs = std::filesystem;

struct RunData {
  RunRecord record;
  std::vector<int64_t> ids;  // every run of the database
  RunMetrics metrics;
};

// The run's row and metrics from <run_dir>/runs.sqlite; id 0: the last run.
RunData load_run(const std::string& run_dir, int64_t id) {
  if (!fs::is_directory(run_dir))
    throw ReportInputError(run_dir +
                           ": no such directory: give a training run's directory (the data.run_dir of "
                           "melgraph train, e.g. <demo dir>/run)");
  const std::string db_path = (fs::path(run_dir) / train::kRunsDbFile).string();
  if (!fs::is_regular_file(db_path))
    throw ReportInputError(db_path + ": no such file: " + run_dir +
                           " is not a training run's directory (melgraph train writes runs.sqlite into its "
                           "data.run_dir)");
  RunData d;
  try {
    const RunDb db(db_path, RunDb::Access::ReadOnly);
    const std::vector<RunRecord> runs = db.runs();
    if (runs.empty()) throw ReportInputError(db_path + ": holds no runs: train first (melgraph train)");
    for (const RunRecord& r : runs) d.ids.push_back(r.id);
    const int64_t want = id > 0 ? id : *std::max_element(d.ids.begin(), d.ids.end());
    const auto it = std::find_if(runs.begin(), runs.end(), [&](const RunRecord& r) { return r.id == want; });
    if (it == runs.end()) {
      std::string ids;
      for (const int64_t i : d.ids) ids += (ids.empty() ? "" : ", ") + std::to_string(i);
      throw ReportInputError(db_path + ": no run with id " + std::to_string(want) + " (its runs: " + ids +
                             "); choose one with --run ID");
    }
    d.record = *it;
    d.metrics = group_metrics(db.metrics(want));
  } catch (const RunDbError& e) {
    throw ReportInputError(std::string(e.what()) + " (" + run_dir + " must be a melgraph train run directory)");
  }
  return d;
}

// The run's config: its row in runs.sqlite (the config that run used), else config.toml (the
// directory's latest run's); nullopt, with the reason in *why, when neither parses.
std::optional<Config> run_config(const RunData& d, const std::string& run_dir, std::string* why) {
  try {
    return parse_config(d.record.info.config, "the config of run " + std::to_string(d.record.id));
  } catch (const std::exception& e) {
    *why = e.what();
  }
  const std::string path = (fs::path(run_dir) / train::kRunConfigFile).string();
  try {
    return load_config(path);
  } catch (const std::exception& e) {
    *why += std::string("; ") + e.what();
  }
  return std::nullopt;
}

std::string row(const std::string& key, const std::string& value) {
  return "<tr><th>" + html_escape(key) + "</th><td>" + html_escape(value) + "</td></tr>\n";
}

Section header_section(const RunData& d, const std::string& run_dir, const std::optional<Config>& cfg,
                       const std::string& config_problem) {
  const RunRecord& r = d.record;
  double last_step = 0;
  for (const auto& [name, m] : d.metrics)
    if (!m.steps.empty()) last_step = std::max(last_step, m.steps.back());
  std::string ids;
  for (const int64_t i : d.ids) ids += (ids.empty() ? "" : ", ") + std::to_string(i);
  Section s{"run", "Run", "<table class=\"run\">\n"};
  s.body += row("name", r.info.name) + row("id", std::to_string(r.id) + " (runs in this database: " + ids + ")");
  s.body += row("status", to_string(r.status)) + row("message", r.message.empty() ? "-" : r.message);
  s.body += row("device", r.info.device) + row("git commit", r.info.git_commit);
  s.body += row("started", r.started_at) + row("ended", r.ended_at.value_or("(not ended: running, or killed)"));
  s.body += row("seed", std::to_string(r.info.seed)) + row("directory", run_dir);
  s.body += row("metrics", std::to_string(d.metrics.size()) + " names, up to step " +
                               std::to_string(static_cast<long long>(last_step)));
  s.body += "</table>\n";
  if (!cfg) s.body += note("The config could not be read: " + config_problem);
  s.body += "<details><summary>config (TOML, as the run used it)</summary>\n<pre>" + html_escape(r.info.config) +
            "</pre>\n</details>\n";
  return s;
}

// The charts of one group, or what explains their absence.
std::string charts_of(const std::vector<ChartSpec>& specs, ChartGroup group, const RunMetrics& metrics, size_t* count) {
  std::string out;
  for (const ChartSpec& c : specs) {
    if (c.group != group) continue;
    out += chart_figure(c, metrics);
    ++*count;
  }
  return out.empty() ? out : "<div class=\"charts\">\n" + out + "</div>\n";
}

std::vector<Section> metric_sections(const RunMetrics& metrics, size_t* charts) {
  std::vector<std::string> names;
  for (const auto& [name, m] : metrics) names.push_back(name);
  const std::vector<ChartSpec> specs = plan_charts(names);
  Section training{"training", "Training", ""}, validation{"validation", "Validation", ""},
      other{"other-metrics", "Other metrics", ""};
  training.body = charts_of(specs, ChartGroup::Training, metrics, charts);
  if (!metrics.count("train.clips_per_second"))
    training.body += note("train.clips_per_second (throughput) is not in this run's metrics.");
  if (!metrics.count("train.loss")) training.body += note("No train.loss: the run logged no training step.");
  validation.body =
      note(
          "Each validation metric over steps. Reference lines, where the run logged them: the mean log-mel vector "
          "(baseline.*, at step 0), the untrained model (the metric at step 0) and chance (a random ranking).") +
      charts_of(specs, ChartGroup::Validation, metrics, charts);
  if (validation.body.find("<figure") == std::string::npos) validation.body += note("No val.* metrics in this run.");
  other.body = charts_of(specs, ChartGroup::Other, metrics, charts);
  if (other.body.empty()) other.body = note("None: every metric of the run is in a chart above.");
  return {training, validation, other};
}

}  // namespace

Report build_report(const ReportOptions& o) {
  const RunData d = load_run(o.run_dir, o.run_id);
  std::string config_problem;
  const std::optional<Config> cfg = run_config(d, o.run_dir, &config_problem);

  std::vector<Section> sections = {header_section(d, o.run_dir, cfg, config_problem)};
  Report rep;
  rep.run_id = d.record.id;
  rep.metrics = d.metrics.size();
  for (Section& s : metric_sections(d.metrics, &rep.charts)) sections.push_back(std::move(s));

  if (o.index.empty()) {
    for (Section& s : sections_without_index()) sections.push_back(std::move(s));
  } else {
    index::Index x;
    try {
      x = index::read_index(o.index);
    } catch (const index::IndexInputError& e) {
      throw ReportInputError(std::string(e.what()) + " (--index takes the file melgraph export writes)");
    }
    IndexReportOptions io = o.index_options;
    const std::string held_path = (fs::path(o.run_dir) / train::kHeldOutItemsFile).string();
    const bool have_held = fs::exists(held_path);
    if (have_held && io.held_out.empty()) {
      try {
        io.held_out = index::read_id_list(held_path);
      } catch (const index::IndexInputError&) {
        // An empty list (nothing held out) outlines nothing; the map says so.
      }
    }
    sections.push_back(embedding_map_section(x, io));
    sections.push_back(similarity_section(x, io));
    RetrievalInputs in;
    if (cfg) {
      in.edges = train::locate_run_path(cfg->data.edges, o.run_dir);
      in.k = cfg->data.recall_k;
      in.hops = cfg->train.pos_hops;
    }
    if (have_held && !io.held_out.empty()) in.queries_file = held_path;
    sections.push_back(retrieval_section(x, in));
    if (d.ids.size() > 1 && d.record.id != *std::max_element(d.ids.begin(), d.ids.end()))
      sections.back().body += note("held_out_items.txt is the run directory's latest run's; this report is of run " +
                                   std::to_string(d.record.id) + ".");
  }
  rep.html =
      html_page("melgraph run report: " + d.record.info.name + " (run " + std::to_string(d.record.id) + ")", sections);
  return rep;
}

}  // namespace mg::report
