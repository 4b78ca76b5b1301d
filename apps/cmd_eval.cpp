// `melgraph eval --index I --edges E`: recall@k, nDCG@k, mAP@k and hit@k of graph neighbours
// among an index's nearest neighbours, overall and by in-degree bucket
// (engine/index/index_eval.h).
#include <cstdio>
#include <memory>
#include <string>

#include "apps/commands.h"
#include "engine/index/index_eval.h"
#include "engine/index/index_format.h"
#include "engine/backend_factory.h"
#include "graph/edge_list_io.h"

namespace mg::cli {

namespace {

struct EvalCliOptions {
  std::string index, edges, queries;
  index::EvalOptions o;
  bool json = false;
  std::string device = "auto";
  int threads = 0;
};

void run_eval(const EvalCliOptions& c) {
  try {
    index::EvalOptions o = c.o;
    if (!c.queries.empty()) {
      o.queries = index::read_id_list(c.queries);
      o.queries_source = c.queries;
    }
    const index::Index x = index::read_index(c.index);
    const graph::PreferenceGraph g(graph::load_edge_list(c.edges));
    BackendOptions bo;
    parse_device(c.device, bo);
    bo.threads = c.threads;
    std::string note;
    const std::unique_ptr<Backend> be = make_backend(bo, &note);
    index::EvalReport r = index::evaluate_index(*be, x, g, o);
    r.edges_path = c.edges;
    std::fputs(c.json ? (index::eval_json(r) + "\n").c_str() : index::format_eval(r).c_str(), stdout);
  } catch (const index::IndexInputError& e) {
    throw UsageError(e.what());
  }
}

}  // namespace

void register_eval(CLI::App& app) {
  auto opts = std::make_shared<EvalCliOptions>();
  CLI::App* cmd = app.add_subcommand(
      "eval", "Score an index against a preference graph: recall@k, nDCG@k, mAP@k and hit@k of graph neighbours, "
              "overall and by in-degree bucket, nDCG at a wide cut-off, and the spread of the vectors");
  cmd->add_option("--index", opts->index, "Index file (melgraph export)")->required();
  cmd->add_option("--edges", opts->edges, "Edge list of the preference graph")->required();
  cmd->add_option("-k", opts->o.k, "Cut-off of the ranking")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--hops", opts->o.hops, "Relevant: graph neighbours within this many hops (undirected)")
      ->capture_default_str()->check(CLI::Range(1, 255));
  cmd->add_option("--wide-k", opts->o.wide_k, "A second, wide cut-off from the same ranking (0: none)")
      ->capture_default_str()->check(CLI::Range(0, kMaxTopkCuda));
  cmd->add_option("--queries", opts->queries,
                  "Query only these ids (a file, one per line), e.g. a training run's held_out_items.txt: the "
                  "items it never trained on, ranked among every item of the index");
  cmd->add_flag("--json", opts->json, "One JSON object instead of a table");
  cmd->add_option("--device", opts->device, kDeviceHelp)->capture_default_str()->check(device_check());
  cmd->add_option("--threads", opts->threads, "CPU threads for the CPU backend (0: all cores)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->callback([opts] { run_eval(*opts); });
}

}  // namespace mg::cli
