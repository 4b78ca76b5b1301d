#include "engine/quality/quality.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <initializer_list>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "engine/audio/audio_cache.h"
#include "engine/checkpoint.h"
#include "engine/embed/embedder.h"
#include "engine/index/index_eval.h"
#include "engine/index/index_export.h"
#include "engine/index/index_format.h"
#include "engine/io/atomic_file.h"
#include "engine/io/json_text.h"
#include "engine/model.h"
#include "engine/timer.h"
#include "graph/edge_list_io.h"

namespace mg::quality {

namespace fs = std::filesystem;
using Json = nlohmann::json;

namespace {

// The marker that makes a directory a quality run's: a rerun may replace its seed folders.
constexpr const char* kRecipeFile = "recipe.toml";

Scores scores_of(const index::EvalReport& r) { return {r.overall.recall, r.overall.ndcg, r.wide.ndcg, r.overall.map}; }

// An in-memory index of `vectors` [items, dim] over the items of `like` (same rows), for the
// untrained model and the mean-log-mel vector: evaluate_index scores them as it scores a file.
index::Index index_like(const index::Index& like, std::vector<float> vectors, int dim, const std::string& what) {
  index::Index x;
  x.source = what;
  x.dim = dim;
  x.items = like.items;
  x.vectors = std::move(vectors);
  x.rebuild_lookup();
  return x;
}

void prepare_out_dir(const QualityOptions& o) {
  const fs::path out(o.out_dir);
  if (fs::exists(out) && !fs::is_empty(out) && !fs::exists(out / kRecipeFile))
    throw std::invalid_argument(o.out_dir + " is not empty and holds no earlier quality run (" + kRecipeFile +
                                "); choose another --out");
  fs::create_directories(out);
  write_file_atomic((out / kRecipeFile).string(), to_toml(o.recipe));
}

SeedResult run_seed(const QualityOptions& o, uint64_t seed) {
  SeedResult res;
  res.seed = seed;
  const fs::path run_dir = fs::path(o.out_dir) / ("seed-" + std::to_string(seed));
  fs::remove_all(run_dir);  // this seed's earlier run, if any: the run starts afresh
  Config cfg = o.recipe;
  cfg.train.seed = seed;
  cfg.data.run_dir = run_dir.string();
  if (cfg.data.cache.empty()) cfg.data.cache = (fs::path(o.out_dir) / "cache").string();

  // ---- train ----------------------------------------------------------------------------
  std::printf("\n== seed %llu: train (%s)\n", static_cast<unsigned long long>(seed), run_dir.string().c_str());
  std::fflush(stdout);
  const auto t0 = std::chrono::steady_clock::now();
  const train::TrainResult tr = train::run_training(cfg, o.train);
  res.train_seconds = seconds_since(t0);
  res.steps = tr.steps;
  if (tr.status == train::TrainStatus::Diverged || tr.status == train::TrainStatus::Interrupted)
    throw std::runtime_error("seed " + std::to_string(seed) + ": the training run did not finish: " + tr.message);

  // ---- export the last checkpoint and score its held-out items -------------------------------
  index::ExportOptions eo;
  eo.checkpoint = (run_dir / "last.safetensors").string();
  eo.catalog = cfg.data.catalog;
  eo.edges = cfg.data.edges;
  eo.out = (run_dir / "index.sqlite").string();
  eo.cache_dir = cfg.data.cache;
  eo.crops = o.crops;
  eo.backend = o.train.backend;
  eo.prepare_threads = o.train.prepare_threads;
  index::export_index(eo);
  const index::Index trained = index::read_index(eo.out);

  std::string note;
  const std::unique_ptr<Backend> be = make_backend(o.train.backend, &note);
  const graph::PreferenceGraph g(graph::load_edge_list(cfg.data.edges));
  index::EvalOptions ev;
  ev.k = o.k;
  ev.wide_k = o.wide_k;
  ev.hops = cfg.train.pos_hops;
  ev.queries_source = (run_dir / train::kHeldOutItemsFile).string();
  ev.queries = index::read_id_list(ev.queries_source);
  const index::EvalReport rt = index::evaluate_index(*be, trained, g, ev);
  res.trained = scores_of(rt);
  res.queries = rt.overall.queries;
  res.chance_recall = rt.chance_recall;
  res.spread_trained = rt.spread;

  // ---- the untrained model and the mean log-mel, same items, crops and queries ------------------
  const Config ck = read_checkpoint_config(eo.checkpoint);
  Model model(ck, *be, std::min(64, std::max(1, o.crops * 16)));
  load_checkpoint(eo.checkpoint, model, nullptr);  // what is not trained (input statistics) stays
  model.init_params(seed);                         // the weights as the run began
  const audio::AudioCache cache = audio::AudioCache::open(cfg.data.cache);
  std::vector<int64_t> cache_index;
  for (const auto& it : trained.items) {
    const int64_t ci = cache.find(it.id);
    if (ci < 0) throw std::logic_error("quality: item " + it.id + " of the index is missing from the cache");
    cache_index.push_back(ci);
  }
  const embed::Embeddings e = embed::embed_cached(model, cache, cache_index, o.crops, true);
  const index::EvalReport ru = index::evaluate_index(*be, index_like(trained, e.emb, e.dim, "the untrained model"), g, ev);
  const index::EvalReport rm =
      index::evaluate_index(*be, index_like(trained, e.mel, e.mel_dim, "the mean log-mel vector"), g, ev);
  res.untrained = scores_of(ru);
  res.mel = scores_of(rm);
  res.spread_untrained = ru.spread;

  for (const std::string& group : tr.held_out_groups) res.held_out += (res.held_out.empty() ? "" : ", ") + group;
  res.held_out_groups = static_cast<int64_t>(tr.held_out_groups.size());
  return res;
}

struct MeanSd {
  double mean = 0, sd = 0;
};

MeanSd mean_sd(const std::vector<double>& v) {
  MeanSd m;
  if (v.empty()) return m;
  for (const double x : v) m.mean += x;
  m.mean /= static_cast<double>(v.size());
  if (v.size() > 1) {
    for (const double x : v) m.sd += (x - m.mean) * (x - m.mean);
    m.sd = std::sqrt(m.sd / static_cast<double>(v.size() - 1));  // sample standard deviation
  }
  return m;
}

template <class F>
MeanSd over_seeds(const QualityReport& r, F f) {
  std::vector<double> v;
  for (const SeedResult& s : r.seeds) v.push_back(f(s));
  return mean_sd(v);
}

std::string cell(const MeanSd& m) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f +- %.3f", m.mean, m.sd);
  return buf;
}

}  // namespace

QualityReport run_quality(const QualityOptions& o) {
  if (o.recipe.data.holdout_by.empty())
    throw std::invalid_argument("quality: data.holdout_by is not set: name the catalog column whose groups are held "
                                "out (--holdout-by album)");
  if (o.seeds.empty()) throw std::invalid_argument("quality: no seeds (--seeds 0,1,2)");
  if (o.crops < 1) throw std::invalid_argument("quality: --crops must be >= 1");
  prepare_out_dir(o);
  QualityReport r;
  r.catalog = o.recipe.data.catalog;
  r.holdout_by = o.recipe.data.holdout_by;
  r.k = o.k;
  r.wide_k = o.wide_k;
  r.crops = o.crops;
  for (const uint64_t seed : o.seeds) {
    r.seeds.push_back(run_seed(o, seed));
    write_file_atomic((fs::path(o.out_dir) / "quality.json").string(), r.json() + "\n");
  }
  return r;
}

std::string QualityReport::format() const {
  std::string out;
  char buf[512];
  const SeedResult* first = seeds.empty() ? nullptr : &seeds.front();
  std::snprintf(buf, sizeof buf,
                "%s, held out by %s (%lld groups, %lld queries in the first seed), %zu seed%s, %d crop%s per item:\n",
                catalog.c_str(), holdout_by.c_str(), static_cast<long long>(first ? first->held_out_groups : 0),
                static_cast<long long>(first ? first->queries : 0), seeds.size(), seeds.size() == 1 ? "" : "s", crops,
                crops == 1 ? "" : "s");
  out += buf;
  const std::string at = std::to_string(k), wide_at = std::to_string(wide_k);
  std::snprintf(buf, sizeof buf, "  %-16s %-15s %-15s %-15s %-15s %s\n", "", ("recall@" + at).c_str(),
                ("nDCG@" + at).c_str(), ("nDCG@" + wide_at).c_str(), ("mAP@" + at).c_str(), "median cosine");
  out += buf;
  auto row = [&](const char* who, Scores SeedResult::*m, SimilaritySpread SeedResult::*sp) {
    const std::string spread =
        sp ? cell(over_seeds(*this, [&](const SeedResult& s) { return (s.*sp).median; })) : std::string("-");
    std::snprintf(buf, sizeof buf, "  %-16s %-15s %-15s %-15s %-15s %s\n", who,
                  cell(over_seeds(*this, [&](const SeedResult& s) { return (s.*m).recall; })).c_str(),
                  cell(over_seeds(*this, [&](const SeedResult& s) { return (s.*m).ndcg; })).c_str(),
                  cell(over_seeds(*this, [&](const SeedResult& s) { return (s.*m).ndcg_wide; })).c_str(),
                  cell(over_seeds(*this, [&](const SeedResult& s) { return (s.*m).map; })).c_str(), spread.c_str());
    out += buf;
  };
  row("trained", &SeedResult::trained, &SeedResult::spread_trained);
  row("untrained", &SeedResult::untrained, &SeedResult::spread_untrained);
  row("mean log-mel", &SeedResult::mel, nullptr);
  std::snprintf(buf, sizeof buf, "  %-16s %-15s\n", "chance",
                cell(over_seeds(*this, [](const SeedResult& s) { return s.chance_recall; })).c_str());
  out += buf;
  for (const SeedResult& s : seeds) {
    std::snprintf(buf, sizeof buf,
                  "  seed %llu: recall@%d trained %.3f, untrained %.3f, mean log-mel %.3f; %lld steps in %.0f s; "
                  "held out: %s\n",
                  static_cast<unsigned long long>(s.seed), k, s.trained.recall, s.untrained.recall,
                  s.mel.recall, static_cast<long long>(s.steps), s.train_seconds, s.held_out.c_str());
    out += buf;
  }
  return out;
}

std::string QualityReport::json() const {
  auto scores = [](const Scores& s) {
    return Json{{"recall", s.recall}, {"ndcg", s.ndcg}, {"ndcg_wide", s.ndcg_wide}, {"map", s.map}};
  };
  Json per_seed = Json::array();
  for (const SeedResult& s : seeds)
    per_seed.push_back(Json{{"seed", s.seed},
                            {"queries", s.queries},
                            {"held_out_groups", s.held_out_groups},
                            {"held_out", s.held_out},
                            {"steps", s.steps},
                            {"train_seconds", s.train_seconds},
                            {"trained", scores(s.trained)},
                            {"untrained", scores(s.untrained)},
                            {"mean_log_mel", scores(s.mel)},
                            {"chance_recall", s.chance_recall},
                            {"spread_trained", index::spread_json(s.spread_trained)},
                            {"spread_untrained", index::spread_json(s.spread_untrained)}});
  auto summary = [&](Scores SeedResult::*m) {
    Json j;
    for (const auto& [name, f] : std::initializer_list<std::pair<const char*, double Scores::*>>{
             {"recall", &Scores::recall}, {"ndcg", &Scores::ndcg}, {"ndcg_wide", &Scores::ndcg_wide}, {"map", &Scores::map}}) {
      // A copy of f: clang before 16 (clang-tidy here) cannot capture a structured binding.
      const MeanSd v = over_seeds(*this, [&, field = f](const SeedResult& s) { return (s.*m).*field; });
      j[name] = Json{{"mean", v.mean}, {"sd", v.sd}};
    }
    return j;
  };
  return json_text(Json{{"catalog", catalog},
                        {"holdout_by", holdout_by},
                        {"k", k},
                        {"wide_k", wide_k},
                        {"crops", crops},
                        {"trained", summary(&SeedResult::trained)},
                        {"untrained", summary(&SeedResult::untrained)},
                        {"mean_log_mel", summary(&SeedResult::mel)},
                        {"seeds", per_seed}},
                   2);
}

}  // namespace mg::quality
