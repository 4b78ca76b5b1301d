// `melgraph report RUN_DIR [--index I] [--color-by COLUMN] [--run ID] --out report.html`: one
// self-contained HTML page about a training run: its curves, validation against the mean
// log-mel, the untrained model and chance, and with an index a map of the embeddings, their
// similarity spread and retrieval by in-degree (engine/report/report.h).
#include <cstdio>
#include <memory>
#include <string>

#include "apps/commands.h"
#include "engine/io/atomic_file.h"
#include "engine/report/report.h"
#include "engine/report/report_error.h"

namespace mg::cli {

namespace {

struct ReportCliOptions {
  report::ReportOptions o;
  std::string out;
};

void run_report(const ReportCliOptions& c) {
  report::Report r;
  try {
    r = report::build_report(c.o);
  } catch (const report::ReportInputError& e) {
    throw UsageError(e.what());
  }
  write_file_atomic(c.out, r.html);
  std::printf("report of run %lld: %zu metrics in %zu charts\n%s\n", static_cast<long long>(r.run_id), r.metrics,
              r.charts, c.out.c_str());
}

}  // namespace

void register_report(CLI::App& app) {
  auto opts = std::make_shared<ReportCliOptions>();
  CLI::App* cmd = app.add_subcommand(
      "report",
      "One self-contained HTML page about a training run: the run and its config, training curves, "
      "validation against the mean log-mel, the untrained model and chance, every logged metric, and "
      "with --index a map of the embeddings, their similarity spread and retrieval by in-degree");
  cmd->add_option("run_dir", opts->o.run_dir, "The run's directory (data.run_dir: runs.sqlite, config.toml, ...)")
      ->required();
  cmd->add_option("--out", opts->out, "The HTML file to write")->required();
  cmd->add_option("--index", opts->o.index, "An index of the run's embeddings (melgraph export)");
  cmd->add_option("--color-by", opts->o.index_options.color_by,
                  "Catalog column that colours the map (default: artist, else album, else none)");
  cmd->add_option("--run", opts->o.run_id, "Run id in runs.sqlite (default: the last run)")->check(CLI::PositiveNumber);
  cmd->callback([opts] { run_report(*opts); });
}

}  // namespace mg::cli
