// `melgraph demo`: the whole pipeline on a generated collection, on any machine, in minutes:
//
//   1. a synthetic music collection (engine/demo/demo_collection.h): clips in several styles that
//      differ in tempo, scale, timbre and rhythm, and a preference graph that mostly links
//      items of the same style (with noise, hubs and graph-only items without audio);
//   2. a run config for it (demo.toml, small and fast: short clips, a narrow model);
//   3. `melgraph train` on it: selection, audio cache, training, validation;
//   4. the verdict: recall@k of held-out items for the trained model, the untrained model,
//      the mean-log-mel baseline and chance;
//   5. `melgraph export` of the best checkpoint into an SQLite index, `melgraph eval` of the
//      index against the graph, and a sample `melgraph query` by item and by audio file.
//
// Everything lands in --dir (default melgraph-demo/): the collection, demo.toml, the run and
// the index; a rerun replaces an earlier demo there.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "apps/commands.h"
#include "engine/demo/demo_collection.h"
#include "engine/index/index_eval.h"
#include "engine/index/index_export.h"
#include "engine/index/index_format.h"
#include "engine/index/index_query.h"
#include "engine/train/trainer.h"
#include "engine/backend_factory.h"
#include "engine/config.h"
#include "graph/edge_list_io.h"
#include "graph/preference_graph.h"

namespace mg::cli {

namespace {

struct DemoOptions {
  std::string dir = "melgraph-demo";
  int clips = 300;
  double clip_seconds = 10.0;
  int steps = 1000;
  uint64_t seed = 0;
  int threads = 0;
  std::string device = "auto";
};

// The demo's model: the seed architecture with the default recipe, made small enough to train
// in under a minute on two CPU cores (16 kHz, 3 s crops of the 10 s clips, 64 mels, 64
// channels, 64-d projection, 128-d embedding), at lr 1e-3, negatives from 2 hops. On
// collection seed 0: lr 2e-3 reached 0.397, 1e-3 0.424, 5e-4 0.408; 48 or 64 anchors a
// step, 3000 steps, 5 s crops, 128 channels, temperature 0.1 or the linear projection as
// the embedding did not beat 0.424 against 0.307 untrained (docs/performance.md, "Learning
// quality").
Config demo_config(const DemoOptions& o) {
  Config c = default_config();
  c.audio.sample_rate = 16000;
  c.mel.sample_rate = 16000;
  c.audio.clip_seconds = 3.0;
  c.audio.excerpt = Excerpt::Start;
  c.audio.excerpt_seconds = o.clip_seconds;
  c.mel.n_fft = 512;
  c.mel.hop = 256;
  c.mel.n_mels = 64;
  c.model.channels = {64, 64, 64};
  c.model.embedding = 64;
  c.model.pooling = GlobalPool::MeanMax;
  c.optim.adam.lr = 1e-3;
  c.train.neg_hops = 2;
  c.train.batch_triplets = 24;
  c.train.steps = o.steps;
  c.train.warmup_steps = std::min(20, o.steps);
  c.train.validate_every = std::max(1, o.steps / 3);
  c.train.checkpoint_every = std::max(1, o.steps / 3);
  c.train.seed = o.seed;
  c.train.loader_threads = 1;
  c.augment.gain_db = 3.0;
  c.data.edges = "collection/edges.csv";
  c.data.catalog = "collection/catalog.csv";
  c.data.run_dir = "run";
  c.data.val_items = 0.2;
  c.data.val_edges = 0.1;
  c.data.recall_k = 10;
  validate_config(c);
  return c;
}

void run_demo(const DemoOptions& o) {
  namespace fs = std::filesystem;
  const fs::path dir(o.dir);
  // The demo owns its directory: an earlier demo there (it has demo.toml) is replaced; any
  // other non-empty directory is left alone.
  if (fs::exists(dir) && !fs::is_empty(dir)) {
    if (!fs::exists(dir / "demo.toml"))
      throw UsageError(o.dir + " is not empty and holds no earlier demo; choose another --dir");
    std::printf("replacing the earlier demo in %s\n", o.dir.c_str());
    fs::remove_all(dir);
  }
  fs::create_directories(dir);

  std::printf("== 1. a synthetic collection and its preference graph\n");
  demo::DemoCollectionOptions dopt;
  dopt.clips = o.clips;
  dopt.clip_seconds = o.clip_seconds;
  dopt.sample_rate = 16000;
  dopt.seed = o.seed;
  dopt.threads = o.threads;
  const demo::DemoCollectionSummary coll = demo::make_demo_collection((dir / "collection").string(), dopt);
  std::printf("%s\n", coll.describe().c_str());

  std::printf("\n== 2. the run config\n");
  Config cfg = demo_config(o);
  const std::string config_path = (dir / "demo.toml").string();
  {
    std::ofstream out(config_path, std::ios::binary | std::ios::trunc);
    out << to_toml(cfg);
    if (!out) throw std::runtime_error(config_path + ": write failed");
  }
  std::printf("%s (edit it and run `melgraph train --config %s` to train it again)\n", config_path.c_str(),
              config_path.c_str());
  resolve_paths(cfg, o.dir);

  std::printf("\n== 3. train\n");
  train::TrainOptions to;
  to.config_path = config_path;
  to.backend.device = parse_device_choice(o.device);
  to.backend.threads = o.threads;
  to.prepare_threads = o.threads;
  const train::TrainResult r = train::run_training(cfg, to);
  std::printf("%s\n", r.message.c_str());

  std::printf("\n== 4. did it learn?\n");
  if (!r.initial || !r.last) throw std::runtime_error("the run did not validate (no steps were taken)");
  const auto& first = r.initial->sets.front();
  const auto& last = r.last->sets.front();
  std::printf("recall@%d of graph neighbours for %lld held-out items (never seen in training):\n", r.last->k,
              static_cast<long long>(last.model.queries));
  std::printf("  trained model     %.3f  (nDCG %.3f)\n", last.model.recall, last.model.ndcg);
  std::printf("  untrained model   %.3f  (nDCG %.3f)\n", first.model.recall, first.model.ndcg);
  std::printf("  mean log-mel      %.3f  (nDCG %.3f)\n", first.baseline.recall, first.baseline.ndcg);
  std::printf("  chance            %.3f\n", first.chance_recall);

  std::printf("\n== 5. export, eval, query\n");
  index::ExportOptions eo;
  eo.checkpoint = (fs::path(cfg.data.run_dir) / "best.safetensors").string();
  eo.catalog = cfg.data.catalog;
  eo.edges = cfg.data.edges;
  eo.out = (dir / "index.sqlite").string();
  eo.cache_dir = (fs::path(cfg.data.run_dir) / "cache").string();  // the run's cache: nothing to decode
  eo.backend = to.backend;
  eo.prepare_threads = o.threads;
  const index::ExportSummary ex = index::export_index(eo);
  std::printf("%s\n", ex.describe().c_str());

  const index::Index idx = index::read_index(eo.out);
  std::string note;
  const std::unique_ptr<Backend> be = make_backend(to.backend, &note);
  const graph::PreferenceGraph g(graph::load_edge_list(cfg.data.edges));
  index::EvalOptions ev;
  ev.k = 10;
  std::printf("melgraph eval --index %s --edges %s\n%s\n", eo.out.c_str(), cfg.data.edges.c_str(),
              index::format_eval(index::evaluate_index(*be, idx, g, ev)).c_str());

  const std::string item = idx.items.front().id;
  std::printf("melgraph query --index %s --item %s -k 5\n%s\n", eo.out.c_str(), item.c_str(),
              index::format_hits(idx, index::query_item(*be, idx, item, 5)).c_str());
  const std::string audio = idx.items.back().path;
  std::printf("melgraph query --index %s --audio %s -k 5\n%s", eo.out.c_str(), audio.c_str(),
              index::format_hits(idx, index::query_audio(*be, idx, audio, 5, "")).c_str());
}

}  // namespace

void register_demo(CLI::App& app) {
  auto opts = std::make_shared<DemoOptions>();
  CLI::App* cmd = app.add_subcommand(
      "demo", "The whole pipeline on a generated music collection and preference graph: select, prepare, "
              "train, validate; prints whether the model learned");
  cmd->add_option("--dir", opts->dir, "Where the collection, config and run go")->capture_default_str();
  cmd->add_option("--clips", opts->clips, "Clips in the collection")->capture_default_str()->check(CLI::Range(48, 100000));
  cmd->add_option("--clip-seconds", opts->clip_seconds, "Length of every clip")
      ->capture_default_str()->check(CLI::Range(3.0, 600.0));
  cmd->add_option("--steps", opts->steps, "Training steps")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--seed", opts->seed, "Seed of the collection, the weights and the batches")->capture_default_str();
  cmd->add_option("--threads", opts->threads, "CPU threads (0: all cores)")->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--device", opts->device, "auto (CUDA when a GPU is present), cpu or cuda")
      ->capture_default_str()->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  cmd->callback([opts] { run_demo(*opts); });
}

}  // namespace mg::cli
