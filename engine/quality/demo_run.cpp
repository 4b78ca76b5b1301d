#include "engine/quality/demo_run.h"

#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <utility>

#include "engine/backend_factory.h"
#include "engine/config.h"
#include "engine/demo/demo_collection.h"
#include "engine/demo/demo_config.h"
#include "engine/index/index_eval.h"
#include "engine/index/index_export.h"
#include "engine/index/index_format.h"
#include "engine/index/index_query.h"
#include "engine/io/atomic_file.h"
#include "engine/io/json_text.h"
#include "engine/report/report.h"
#include "engine/train/trainer.h"
#include "graph/edge_list_io.h"
#include "graph/preference_graph.h"

namespace mg::quality {

namespace {

namespace fs = std::filesystem;

// The demo owns its directory: an earlier demo there (it has demo.toml) is replaced; any other
// non-empty directory is left alone.
void prepare_dir(const std::string& d) {
  const fs::path dir(d);
  if (fs::exists(dir) && !fs::is_empty(dir)) {
    if (!fs::exists(dir / "demo.toml"))
      throw std::invalid_argument(d + " is not empty and holds no earlier demo; choose another --dir");
    std::printf("replacing the earlier demo in %s\n", d.c_str());
    fs::remove_all(dir);
  }
  fs::create_directories(dir);
}

void make_collection(const DemoRunOptions& o) {
  std::printf("== 1. a synthetic collection and its preference graph\n");
  demo::DemoCollectionOptions dopt;
  dopt.clips = o.clips;
  dopt.clip_seconds = o.clip_seconds;
  dopt.pulse_depth = o.pulse_depth;
  dopt.sample_rate = 16000;
  dopt.seed = o.seed;
  dopt.threads = o.threads;
  std::printf("%s\n", demo::make_demo_collection((fs::path(o.dir) / "collection").string(), dopt).describe().c_str());
}

// The demo's recipe with the --set overrides, and the device, checked before anything is
// generated: a typo must not cost the minutes of the collection.
Config checked_config(const DemoRunOptions& o) {
  Config cfg;
  try {
    cfg = apply_overrides(demo::demo_run_config(o.clip_seconds, o.steps, o.seed), o.overrides);
  } catch (const ConfigError& e) {
    throw std::invalid_argument(e.what());
  }
  BackendOptions bo;
  parse_device(o.device, bo);
  bo.threads = 1;
  (void)make_backend(bo, nullptr);  // std::invalid_argument without the device asked for
  return cfg;
}

// demo.toml, and the config with its paths resolved against the demo's folder.
Config write_config(const DemoRunOptions& o, Config cfg, const std::string& config_path) {
  std::printf("\n== 2. the run config\n");
  write_file_atomic(config_path, to_toml(cfg));
  std::printf("%s (edit it and run `melgraph train --config %s` to train it again)\n", config_path.c_str(),
              config_path.c_str());
  resolve_paths(cfg, o.dir);
  return cfg;
}

void print_verdict(const train::TrainResult& r, DemoResult& d) {
  std::printf("\n== 4. did it learn?\n");
  if (!r.initial || !r.last) throw std::runtime_error("the run did not validate (no steps were taken)");
  const auto& first = r.initial->sets.front();
  const auto& last = r.last->sets.front();
  d.k = r.last->k;
  d.held_out_queries = last.model.queries;
  d.trained = {last.model.recall, last.model.ndcg};
  d.untrained = {first.model.recall, first.model.ndcg};
  d.mean_log_mel = {first.baseline.recall, first.baseline.ndcg};
  d.chance_recall = first.chance_recall;
  std::printf("recall@%d of graph neighbours for %lld held-out items (never seen in training):\n", r.last->k,
              static_cast<long long>(last.model.queries));
  std::printf("  trained model     %.3f  (nDCG %.3f)\n", last.model.recall, last.model.ndcg);
  std::printf("  untrained model   %.3f  (nDCG %.3f)\n", first.model.recall, first.model.ndcg);
  std::printf("  mean log-mel      %.3f  (nDCG %.3f)\n", first.baseline.recall, first.baseline.ndcg);
  std::printf("  chance            %.3f\n", first.chance_recall);
}

// melgraph export of the best checkpoint, eval of the index against the graph, a query by item
// and one by audio file.
void export_eval_query(const DemoRunOptions& o, const Config& cfg, const BackendOptions& bo, DemoResult& d) {
  std::printf("\n== 5. export, eval, query\n");
  index::ExportOptions eo;
  eo.checkpoint = (fs::path(cfg.data.run_dir) / "best.safetensors").string();
  eo.catalog = cfg.data.catalog;
  eo.edges = cfg.data.edges;
  eo.out = (fs::path(o.dir) / "index.sqlite").string();
  eo.cache_dir = (fs::path(cfg.data.run_dir) / "cache").string();  // the run's cache: nothing to decode
  eo.backend = bo;
  eo.prepare_threads = o.threads;
  std::printf("%s\n", index::export_index(eo).describe().c_str());

  const index::Index idx = index::read_index(eo.out);
  std::string note;
  const std::unique_ptr<Backend> be = make_backend(bo, &note);
  const graph::PreferenceGraph g(graph::load_edge_list(cfg.data.edges));
  index::EvalOptions ev;
  ev.k = 10;
  const index::EvalReport er = index::evaluate_index(*be, idx, g, ev);
  std::printf("melgraph eval --index %s --edges %s\n%s\n", eo.out.c_str(), cfg.data.edges.c_str(),
              index::format_eval(er).c_str());
  d.index = eo.out;
  d.spread_median = er.spread.median;
  d.spread_p5 = er.spread.p5;
  d.spread_p95 = er.spread.p95;
  const std::string item = idx.items.front().id;
  std::printf("melgraph query --index %s --item %s -k 5\n%s\n", eo.out.c_str(), item.c_str(),
              index::format_hits(idx, index::query_item(*be, idx, item, 5)).c_str());
  const std::string audio = idx.items.back().path;
  std::printf("melgraph query --index %s --audio %s -k 5\n%s", eo.out.c_str(), audio.c_str(),
              index::format_hits(idx, index::query_audio(*be, idx, audio, 5, "")).c_str());
}

// melgraph report of the run with the index: the curves, the map of the embeddings.
void write_report(DemoResult& d) {
  std::printf("\n== 6. report\n");
  report::ReportOptions ro;
  ro.run_dir = d.run_dir;
  ro.index = d.index;
  ro.index_options.color_by = "style";  // the collection's six styles: what the graph mostly links
  d.report = (fs::path(d.dir) / "report.html").string();
  write_file_atomic(d.report, report::build_report(ro).html);
  std::printf(
      "melgraph report %s --index %s --out %s\nopen %s in a browser: the curves, the validation against the "
      "baselines and a map of the embeddings\n",
      d.run_dir.c_str(), d.index.c_str(), d.report.c_str(), d.report.c_str());
}

}  // namespace

DemoResult run_demo(const DemoRunOptions& o) {
  Config recipe = checked_config(o);
  prepare_dir(o.dir);
  make_collection(o);
  const std::string config_path = (fs::path(o.dir) / "demo.toml").string();
  const Config cfg = write_config(o, std::move(recipe), config_path);
  DemoResult d;
  d.dir = o.dir;
  d.config = config_path;
  d.run_dir = cfg.data.run_dir;
  std::printf("\n== 3. train\n");
  train::TrainOptions to;
  to.config_path = config_path;
  parse_device(o.device, to.backend);
  to.backend.threads = o.threads;
  to.prepare_threads = o.threads;
  const train::TrainResult r = train::run_training(cfg, to);
  std::printf("%s\n", r.message.c_str());
  print_verdict(r, d);
  export_eval_query(o, cfg, to.backend, d);
  write_report(d);
  return d;
}

std::string DemoResult::json() const {
  auto score = [](const DemoScore& s) { return nlohmann::json{{"recall", s.recall}, {"ndcg", s.ndcg}}; };
  const nlohmann::json j{{"dir", dir},
                         {"config", config},
                         {"run_dir", run_dir},
                         {"index", index},
                         {"report", report},
                         {"k", k},
                         {"held_out_queries", held_out_queries},
                         {"trained", score(trained)},
                         {"untrained", score(untrained)},
                         {"mean_log_mel", score(mean_log_mel)},
                         {"chance_recall", chance_recall},
                         {"spread", {{"median", spread_median}, {"p5", spread_p5}, {"p95", spread_p95}}}};
  return json_text(j);
}

}  // namespace mg::quality
