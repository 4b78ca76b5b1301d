// melgraph quality (engine/quality/quality.h) end to end on a tiny generated collection: per seed
// a run with whole artists held out, its index, and the held-out items scored for the trained
// model, the untrained model, the mean log-mel and chance; the table, the JSON, the folder.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "engine/demo/demo_collection.h"
#include "engine/index/index_eval.h"
#include "engine/quality/quality.h"
#include "engine/train/trainer.h"
#include "graph/catalog.h"
#include "tests/test_support.h"

namespace mg::quality {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

struct Tiny {
  test::TempDir dir;
  QualityOptions o;

  Tiny() {
    demo::DemoCollectionOptions d;
    d.clips = 48;
    d.styles = 4;
    d.clip_seconds = 2.0;
    d.sample_rate = 8000;
    d.seed = 5;
    d.threads = 2;
    demo::make_demo_collection(dir.file("collection"), d);
    Config c = test::small_recipe_config();  // 8 kHz, 1 s clips, the default recipe's head and loss
    c.audio.excerpt = Excerpt::Start;
    c.audio.excerpt_seconds = 2.0;
    c.train.batch_triplets = 8;
    c.train.steps = 6;
    c.train.warmup_steps = 2;
    c.train.validate_every = 6;
    c.train.checkpoint_every = 6;
    c.train.loader_threads = 2;
    c.data.edges = dir.file("collection/edges.csv");
    c.data.catalog = dir.file("collection/catalog.csv");
    c.data.holdout_by = "artist";
    c.data.val_items = 0.25;
    validate_config(c);
    o.recipe = c;
    o.seeds = {0, 1};
    o.out_dir = dir.file("quality");
    o.train.backend.device = DeviceChoice::Cpu;
    o.train.backend.threads = 2;
    o.train.prepare_threads = 2;
    o.train.quiet = true;
  }
};

bool in_unit(double x) { return x >= 0.0 && x <= 1.0; }

TEST(Quality, SeedsTrainExportAndScoreTheHeldOutGroups) {
  Tiny t;
  const QualityReport r = run_quality(t.o);
  ASSERT_EQ(r.seeds.size(), 2u);
  EXPECT_EQ(r.holdout_by, "artist");
  const graph::Catalog cat = graph::load_catalog(t.o.recipe.data.catalog);
  const std::vector<std::string> artist = graph::column_values(cat, "artist");
  std::map<std::string, std::string> artist_of;
  for (size_t i = 0; i < cat.items.size(); ++i) artist_of[cat.items[i].id] = artist[i];
  for (const SeedResult& s : r.seeds) {
    SCOPED_TRACE("seed " + std::to_string(s.seed));
    EXPECT_EQ(s.steps, 6);
    EXPECT_GE(s.held_out_groups, 1);
    EXPECT_GT(s.queries, 0);
    for (const Scores* x : {&s.trained, &s.untrained, &s.mel}) {
      EXPECT_TRUE(in_unit(x->recall) && in_unit(x->ndcg) && in_unit(x->ndcg_wide) && in_unit(x->map));
    }
    EXPECT_GT(s.chance_recall, 0.0);
    EXPECT_LT(s.chance_recall, 1.0);
    EXPECT_GT(s.spread_trained.pairs, 0);
    // The run's held-out items are exactly the items of the groups the report names.
    const fs::path run = fs::path(t.o.out_dir) / ("seed-" + std::to_string(s.seed));
    const std::vector<std::string> held = index::read_id_list((run / train::kHeldOutItemsFile).string());
    std::set<std::string> groups;
    for (const std::string& id : held) groups.insert(artist_of.at(id));
    EXPECT_EQ(static_cast<int64_t>(groups.size()), s.held_out_groups);
    for (const std::string& g : groups) EXPECT_NE(s.held_out.find(g), std::string::npos) << g << " not in " << s.held_out;
    EXPECT_TRUE(fs::exists(run / "index.sqlite"));
  }
  EXPECT_NE(r.seeds[0].held_out, r.seeds[1].held_out) << "each seed draws its own groups";
  // The table and the JSON say the same.
  const std::string table = r.format();
  EXPECT_NE(table.find("trained"), std::string::npos);
  EXPECT_NE(table.find("mean log-mel"), std::string::npos);
  EXPECT_NE(table.find("seed 1: recall@10"), std::string::npos) << table;
  std::ifstream jf(fs::path(t.o.out_dir) / "quality.json");
  const Json j = Json::parse(jf);
  ASSERT_EQ(j.at("seeds").size(), 2u);
  EXPECT_DOUBLE_EQ(j.at("seeds")[1].at("trained").at("recall").get<double>(), r.seeds[1].trained.recall);

  // The CPU run is a function of the seed: seed 1 alone again gives the same figures.
  Tiny again;
  again.o.seeds = {1};
  const QualityReport r1 = run_quality(again.o);
  EXPECT_EQ(r1.seeds[0].held_out, r.seeds[1].held_out);
  EXPECT_DOUBLE_EQ(r1.seeds[0].trained.recall, r.seeds[1].trained.recall);
  EXPECT_DOUBLE_EQ(r1.seeds[0].untrained.recall, r.seeds[1].untrained.recall);
  EXPECT_DOUBLE_EQ(r1.seeds[0].mel.recall, r.seeds[1].mel.recall);
}

TEST(Quality, RefusesWhatCannotRun) {
  Tiny t;
  QualityOptions o = t.o;
  o.recipe.data.holdout_by.clear();
  try {
    run_quality(o);
    FAIL() << "ran without a hold-out column";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("--holdout-by"), std::string::npos) << e.what();
  }
  o = t.o;
  o.seeds.clear();
  EXPECT_THROW(run_quality(o), std::invalid_argument);
  // A non-empty folder that is no earlier quality run is left alone.
  o = t.o;
  fs::create_directories(o.out_dir);
  std::ofstream(fs::path(o.out_dir) / "precious.txt") << "keep me\n";
  EXPECT_THROW(run_quality(o), std::invalid_argument);
  EXPECT_TRUE(fs::exists(fs::path(o.out_dir) / "precious.txt"));
  // An unknown column is named with the catalog's columns.
  o = t.o;
  o.out_dir = t.dir.file("quality2");
  o.recipe.data.holdout_by = "label";
  try {
    run_quality(o);
    FAIL() << "ran with an unknown column";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("label"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace mg::quality
