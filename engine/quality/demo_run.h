// The pipeline of `melgraph demo`: the whole of melgraph on a generated collection, on any machine, in minutes:
//
//   1. a synthetic music collection (engine/demo/demo_collection.h): clips in several styles that
//      differ in tempo, scale, timbre and rhythm, and a preference graph that mostly links
//      items of the same style (with noise, hubs and graph-only items without audio);
//   2. a run config for it (demo.toml, small and fast: short clips, a narrow model);
//   3. `melgraph train` on it: selection, audio cache, training, validation;
//   4. the verdict: recall@k of held-out items for the trained model, the untrained model,
//      the mean-log-mel baseline and chance;
//   5. `melgraph export` of the best checkpoint into an SQLite index, `melgraph eval` of the
//      index against the graph, and a sample `melgraph query` by item and by audio file;
//   6. `melgraph report` of the run and the index: report.html in the demo's folder.
//
// Everything lands in --dir (default melgraph-demo/): the collection, demo.toml, the run and
// the index and report.html; a rerun replaces an earlier demo there.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace mg::quality {

struct DemoRunOptions {
  std::string dir = "melgraph-demo";
  int clips = 300;
  double clip_seconds = 10.0;
  // How deep each clip's pulse dips (demo::DemoCollectionOptions::pulse_depth); 0 leaves the
  // graph's taste nothing audible to rest on (the control).
  double pulse_depth = 0.8;
  int steps = 1000;
  uint64_t seed = 0;
  int threads = 0;
  std::string device = "auto";
  // Config fields changed from the demo's recipe, as `melgraph train --set` takes them
  // ("train.steps=300"); applied, and checked, before anything is generated.
  std::vector<std::string> overrides;
};

// The held-out items' recall@k and nDCG@k (the run's k) of one embedding.
struct DemoScore {
  double recall = 0, ndcg = 0;
};

struct DemoResult {
  std::string dir, config, run_dir, index, report;
  int k = 0;
  int64_t held_out_queries = 0;
  DemoScore trained, untrained, mean_log_mel;
  double chance_recall = 0;
  double spread_median = 0, spread_p5 = 0, spread_p95 = 0;  // cosine of random index pairs
  // One JSON object (`melgraph demo --json`).
  std::string json() const;
};

// Runs the five phases above, printing each to stdout. std::invalid_argument for bad input
// (a --dir that holds something other than an earlier demo, a bad config, a device this
// machine lacks), found before anything is generated.
DemoResult run_demo(const DemoRunOptions& o);

}  // namespace mg::quality
