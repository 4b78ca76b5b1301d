// The embedding index (engine/index): SHA-256 against FIPS 180-4, the SQLite file export writes
// (schema, meta, vectors bit-exact against the embedder, failures listed), crash safety of the
// write (the melgraph binary killed mid-write by its test hook leaves the previous index
// byte-identical), read-only queries (bytes and mtime unchanged), query by item and by audio,
// the .npy export read back by NumPy and the index read by Python's sqlite3, eval's metrics on
// a hand-worked example, and every bad-input error.
//
// The fixture: a generated collection (engine/demo/demo_collection.h, 24 clips of 2 s at 8 kHz) plus
// two catalog rows without audio, and an untrained model of tests/test_support.h's small config
// saved as a checkpoint. An untrained model embeds deterministically, which is all these tests
// need: what they check is the plumbing, not the quality of the embedding.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <numbers>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "engine/audio/audio_cache.h"
#include "engine/audio/decode.h"
#include "engine/backend.h"
#include "engine/checkpoint.h"
#include "engine/demo/demo_collection.h"
#include "engine/embed/embedder.h"
#include "engine/index/ann.h"
#include "engine/index/index_eval.h"
#include "engine/index/index_export.h"
#include "engine/index/index_format.h"
#include "engine/index/index_query.h"
#include "engine/index/query_batch.h"
#include "engine/index/sha256.h"
#include "engine/io/atomic_file.h"
#include "engine/io/npy.h"
#include "engine/io/safetensors.h"
#include "engine/model.h"
#include "graph/catalog.h"
#include "graph/edge_list_io.h"
#include "graph/preference_graph.h"
#include "tests/reference_harness.h"
#include "tests/test_support.h"
#include "tests/train_test_support.h"

namespace mg::index {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

int64_t mtime_ns(const std::string& p) {
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) return -1;
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

std::string melgraph() { return MELGRAPH_EXE; }

// ---- SHA-256 ---------------------------------------------------------------------------------

TEST(Sha256, Fips180_4Vectors) {
  EXPECT_EQ(sha256_hex("", 0), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc", 3), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const std::string two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  EXPECT_EQ(sha256_hex(two_blocks.data(), two_blocks.size()),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  const std::string long_msg =
      "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
  EXPECT_EQ(sha256_hex(long_msg.data(), long_msg.size()),
            "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
  const std::string million(1000000, 'a');
  EXPECT_EQ(sha256_hex(million.data(), million.size()),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, ChunkedUpdatesMatchOneShotAndFiles) {
  std::string msg(1000, '\0');
  for (size_t i = 0; i < msg.size(); ++i) msg[i] = static_cast<char>((i * 131 + 7) & 0xff);
  const std::string whole = sha256_hex(msg.data(), msg.size());
  for (size_t step : {1, 3, 63, 64, 65, 500}) {
    Sha256 h;
    for (size_t i = 0; i < msg.size(); i += step) h.update(msg.data() + i, std::min(step, msg.size() - i));
    EXPECT_EQ(to_hex(h.finish()), whole) << "updates of " << step << " bytes";
  }
  test::TempDir d;
  std::ofstream(d.file("m.bin"), std::ios::binary) << msg;
  EXPECT_EQ(sha256_file_hex(d.file("m.bin")), whole);
  EXPECT_THROW(sha256_file_hex(d.file("absent.bin")), std::runtime_error);
}

// ---- crop rule -------------------------------------------------------------------------------

TEST(CropStarts, EvenlySpacedCentredOrWhole) {
  EXPECT_EQ(embed::crop_starts(16000, 8000, 3), (std::vector<int64_t>{0, 4000, 8000}));
  EXPECT_EQ(embed::crop_starts(16001, 8000, 2), (std::vector<int64_t>{0, 8001}));
  EXPECT_EQ(embed::crop_starts(16000, 8000, 1), (std::vector<int64_t>{4000}));
  EXPECT_EQ(embed::crop_starts(8000, 8000, 3), (std::vector<int64_t>{0}));
  EXPECT_EQ(embed::crop_starts(100, 8000, 3), (std::vector<int64_t>{0}));
  EXPECT_THROW(embed::crop_starts(100, 8000, 0), std::invalid_argument);
}

// A track shorter than a clip is padded as audio.short_clip says, like the cache's read_clip.
TEST(EmbedTrack, ShortTrackIsPaddedLikeTheCache) {
  const auto be = make_cpu_backend(1);
  for (const ShortClip pad : {ShortClip::Repeat, ShortClip::Zero}) {
    Config c = test::small_config();
    c.audio.short_clip = pad;
    Model m(c, *be, 3);
    m.init_params(5);
    m.set_training(false);
    const int64_t S = c.audio.clip_samples(), L = 3000;
    const std::vector<float> a = test::random_audio(1, L, 3);
    std::vector<float> clip(static_cast<size_t>(S));
    for (int64_t j = 0; j < S; ++j)
      clip[static_cast<size_t>(j)] = j < L ? a[static_cast<size_t>(j)] : pad == ShortClip::Zero ? 0.0f : a[static_cast<size_t>(j % L)];
    const embed::Embeddings got = embed::embed_track(m, a, 3), want = embed::embed_clips(m, clip, 1, false);
    ASSERT_EQ(got.emb.size(), want.emb.size());
    for (size_t j = 0; j < got.emb.size(); ++j) EXPECT_EQ(got.emb[j], want.emb[j]) << "element " << j;
  }
}

// ---- the fixture -----------------------------------------------------------------------------

constexpr int kClips = 24;
constexpr int kCrops = 3;

Config fixture_config() {
  Config c = test::small_config();  // 1 s clips at 8 kHz: the 2 s tracks give 3 distinct crops
  c.audio.excerpt = Excerpt::Start;
  return c;
}

class IndexTest : public ::testing::Test {
 protected:
  // A failure here is reported by every test (SetUp), and the directory is still removed.
  static void SetUpTestSuite() {
    dir_ = std::make_unique<test::TempDir>();
    try {
      make_fixture();
    } catch (const std::exception& e) {
      setup_error_ = e.what();
    }
  }
  void SetUp() override {
    if (!setup_error_.empty()) FAIL() << "the fixture could not be made: " << setup_error_;
  }
  static void make_fixture() {
    demo::DemoCollectionOptions o;
    o.clips = kClips;
    o.styles = 3;
    o.clip_seconds = 2.0;
    o.sample_rate = 8000;
    o.seed = 11;
    o.threads = 1;
    coll_ = std::make_unique<demo::DemoCollectionSummary>(make_demo_collection(file("coll"), o));
    // Two more rows whose files give no audio: listed as failures, not fatal.
    std::ofstream(file("notes.txt")) << "not audio\n";
    std::string cat = test::read_bytes(coll_->catalog_path);
    cat += "bad_text," + file("notes.txt") + ",Plain Text,Nobody,none\n";
    cat += "bad_missing," + file("no-such.wav") + ",Missing,Nobody,none\n";
    // Beside the collection's catalog: its paths are relative to the catalog's directory.
    std::ofstream(file("coll/catalog_plus.csv"), std::ios::binary) << cat;
    test::save_untrained(fixture_config(), 3, file("model.safetensors"));
    ExportOptions e;
    e.checkpoint = file("model.safetensors");
    e.catalog = file("coll/catalog_plus.csv");
    e.edges = coll_->edges_path;
    e.out = file("index.sqlite");
    e.crops = kCrops;
    e.prepare_threads = 1;
    e.backend.device = DeviceChoice::Cpu;
    e.backend.threads = 1;
    summary_ = std::make_unique<ExportSummary>(export_index(e));
  }
  static void TearDownTestSuite() {
    summary_.reset();
    coll_.reset();
    dir_.reset();
  }
  static std::string file(const std::string& name) { return dir_->file(name); }
  static std::unique_ptr<Backend> cpu() { return make_cpu_backend(1); }
  // `melgraph export` of the fixture's model over catalog_plus.csv to `out`, reusing the
  // fixture's audio cache (the --ann tests add their options).
  static std::string export_command(const std::string& out) {
    return melgraph() + " export --device cpu --threads 1 --prepare-threads 1 --checkpoint " +
           file("model.safetensors") + " --catalog " + file("coll/catalog_plus.csv") + " --out " + out + " --cache " +
           default_cache_dir(file("index.sqlite"));
  }

  static std::unique_ptr<test::TempDir> dir_;
  static std::unique_ptr<demo::DemoCollectionSummary> coll_;
  static std::unique_ptr<ExportSummary> summary_;
  static std::string setup_error_;
};
std::string IndexTest::setup_error_;
std::unique_ptr<test::TempDir> IndexTest::dir_;
std::unique_ptr<demo::DemoCollectionSummary> IndexTest::coll_;
std::unique_ptr<ExportSummary> IndexTest::summary_;

TEST_F(IndexTest, ExportWritesEveryItemWithAudioAndListsFailures) {
  EXPECT_EQ(summary_->catalog_items, kClips + 2);
  EXPECT_EQ(summary_->indexed, kClips);
  ASSERT_EQ(summary_->failures.size(), 2u);
  const Index x = read_index(file("index.sqlite"));
  ASSERT_EQ(x.size(), kClips);
  EXPECT_EQ(x.dim, fixture_config().model.embedding);
  ASSERT_EQ(x.failures.size(), 2u);
  std::vector<std::string> failed{x.failures[0].id, x.failures[1].id};
  std::sort(failed.begin(), failed.end());
  EXPECT_EQ(failed, (std::vector<std::string>{"bad_missing", "bad_text"}));
  for (const IndexFailure& f : x.failures) EXPECT_FALSE(f.reason.empty()) << f.id;

  // Items in catalog order, with the catalog's columns and the graph's in-degree.
  const graph::Catalog cat = graph::load_catalog(coll_->catalog_path);
  const graph::PreferenceGraph g(graph::load_edge_list(coll_->edges_path));
  for (int64_t i = 0; i < x.size(); ++i) {
    const IndexItem& it = x.items[static_cast<size_t>(i)];
    const auto& c = cat.items[static_cast<size_t>(i)];
    EXPECT_EQ(it.id, c.id);
    EXPECT_EQ(it.path, fs::absolute(c.path).lexically_normal().string());
    ASSERT_TRUE(it.title && it.artist);
    EXPECT_EQ(*it.title, c.extra[0]);
    EXPECT_EQ(*it.artist, c.extra[1]);
    EXPECT_EQ(Json::parse(it.extra), (Json{{"style", c.extra[2]}}));
    const auto node = g.find(it.id);
    EXPECT_EQ(it.in_degree, node ? g.in_degree()[static_cast<size_t>(*node)] : 0) << it.id;
    EXPECT_EQ(x.find(it.id), i);
  }

  // Meta: the model and how the vectors were made.
  EXPECT_EQ(x.meta_value("format"), "melgraph-index");
  EXPECT_EQ(x.meta_value("schema_version"), "2");
  EXPECT_EQ(x.meta_value("dim"), std::to_string(x.dim));
  EXPECT_EQ(x.meta_value("items"), std::to_string(kClips));
  EXPECT_EQ(x.meta_value("metric"), "cosine");
  EXPECT_EQ(x.meta_value("normalized"), "true");
  EXPECT_EQ(x.meta_value("crops"), std::to_string(kCrops));
  EXPECT_EQ(x.meta_value("checkpoint_sha256"), sha256_file_hex(file("model.safetensors")));
  EXPECT_EQ(x.meta_value("checkpoint"), fs::absolute(file("model.safetensors")).lexically_normal().string());
  EXPECT_EQ(to_toml(parse_config(x.meta_value("config"), "meta")), to_toml(fixture_config()));
  EXPECT_EQ(Json::parse(x.meta_value("mel")).at("n_mels"), fixture_config().mel.n_mels);
  for (const char* key : {"created_at", "melgraph_version", "git_commit", "device", "catalog", "edges", "cache"})
    EXPECT_FALSE(x.meta_value(key).empty()) << key;
  EXPECT_THROW(x.meta_value("no-such-key"), IndexInputError);
}

// The stored vectors are the embedder's, bit for bit (float32 LE BLOBs), and unit rows.
TEST_F(IndexTest, VectorsAreTheEmbeddersBitForBit) {
  const Index x = read_index(file("index.sqlite"));
  const auto be = cpu();
  Model m(fixture_config(), *be, 64);
  load_checkpoint(file("model.safetensors"), m, nullptr);
  m.set_training(false);
  const audio::AudioCache cache = audio::AudioCache::open(default_cache_dir(file("index.sqlite")));
  std::vector<int64_t> ci;
  for (const IndexItem& it : x.items) ci.push_back(cache.find(it.id));
  const embed::Embeddings e = embed::embed_cached(m, cache, ci, kCrops, false);
  ASSERT_EQ(e.emb.size(), x.vectors.size());
  EXPECT_EQ(std::memcmp(e.emb.data(), x.vectors.data(), e.emb.size() * sizeof(float)), 0);
  for (int64_t i = 0; i < x.size(); ++i) {
    double ss = 0;
    for (int j = 0; j < x.dim; ++j) ss += std::pow(static_cast<double>(x.vector(i)[j]), 2);
    EXPECT_NEAR(std::sqrt(ss), 1.0, 1e-6) << "row " << i;
  }
  // The schema's own bookkeeping, read with plain SQLite.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2(file("index.sqlite").c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  auto one_int = [&](const char* sql) {
    sqlite3_stmt* st = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db, sql, -1, &st, nullptr), SQLITE_OK) << sql;
    int64_t v = -1;
    if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
  };
  EXPECT_EQ(one_int("PRAGMA user_version"), kIndexSchemaVersion);
  EXPECT_EQ(one_int("PRAGMA application_id"), kIndexApplicationId);
  EXPECT_EQ(one_int("SELECT count(*) FROM embeddings WHERE length(vector) = 4 * 8"), kClips);
  EXPECT_EQ(one_int("SELECT count(*) FROM items JOIN embeddings USING (item)"), kClips);
  sqlite3_close(db);
}

// embed_track on an item's samples (as the cache holds them) gives embed_cached's vector.
TEST_F(IndexTest, EmbedTrackAgreesWithEmbedCached) {
  const auto be = cpu();
  Model m(fixture_config(), *be, kCrops);
  load_checkpoint(file("model.safetensors"), m, nullptr);
  m.set_training(false);
  const audio::AudioCache cache = audio::AudioCache::open(default_cache_dir(file("index.sqlite")));
  for (const int64_t i : {int64_t{0}, int64_t{7}}) {
    const int64_t L = cache.entry(i).length;
    ASSERT_GT(L, fixture_config().audio.clip_samples()) << "the tracks must be longer than a clip to have crops";
    std::vector<float> samples(static_cast<size_t>(L));
    cache.read_clip(i, 0, L, ShortClip::Repeat, samples.data());
    const embed::Embeddings a = embed::embed_track(m, samples, kCrops),
                            b = embed::embed_cached(m, cache, {i}, kCrops, false);
    ASSERT_EQ(a.emb.size(), b.emb.size());
    // The same clips in the same batch positions: the same bits.
    for (size_t j = 0; j < a.emb.size(); ++j) EXPECT_EQ(a.emb[j], b.emb[j]) << "item " << i << " element " << j;
  }
}

// The float64 reference ranking of one row against all others.
std::vector<std::pair<double, int32_t>> brute_force(const Index& x, const float* q, int64_t exclude) {
  std::vector<std::pair<double, int32_t>> all;
  for (int64_t i = 0; i < x.size(); ++i) {
    if (i == exclude) continue;
    double s = 0;
    for (int j = 0; j < x.dim; ++j) s += static_cast<double>(q[j]) * x.vector(i)[j];
    all.emplace_back(s, static_cast<int32_t>(i));
  }
  std::sort(all.begin(), all.end(), [](auto& a, auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
  return all;
}

TEST_F(IndexTest, QueryByItemIsTheExactTopKWithoutItself) {
  const Index x = read_index(file("index.sqlite"));
  const auto be = cpu();
  for (const int64_t row : {int64_t{0}, int64_t{5}, int64_t{kClips - 1}}) {
    const QueryResult r = query_item(*be, x, x.items[static_cast<size_t>(row)].id, 5);
    EXPECT_EQ(r.query_row, row);
    ASSERT_EQ(r.hits.size(), 5u);
    const auto want = brute_force(x, x.vector(row), row);
    for (size_t j = 0; j < r.hits.size(); ++j) {
      EXPECT_NE(r.hits[j].row, row);
      // float32 dot products of unit rows vs float64: 1e-6 absolute; the ranks agree unless two
      // similarities are closer than that (not the case for these vectors, checked first).
      EXPECT_NEAR(r.hits[j].similarity, want[j].first, 1e-6);
      if (j + 1 < want.size() && want[j].first - want[j + 1].first > 1e-5) {
        EXPECT_EQ(r.hits[j].row, want[j].second);
      }
    }
  }
  // k beyond the index: every other item once.
  EXPECT_EQ(query_item(*be, x, x.items[0].id, 100).hits.size(), static_cast<size_t>(kClips - 1));
}

TEST_F(IndexTest, QueryByAudioOfAnIndexedFileRanksThatItemFirst) {
  const Index x = read_index(file("index.sqlite"));
  const auto be = cpu();
  for (const int64_t row : {int64_t{2}, int64_t{13}}) {
    const IndexItem& it = x.items[static_cast<size_t>(row)];
    const QueryResult r = query_audio(*be, x, it.path, 3, "");
    ASSERT_FALSE(r.hits.empty());
    EXPECT_EQ(r.hits[0].row, row) << it.path;
    // The file decoded afresh vs the cache's int16 copy: nearly the same vector.
    EXPECT_GT(r.hits[0].similarity, 0.9999f);
  }
}

// --exclude-same with a query by audio: the file is an item of the index (its SHA-256), so its
// artist is known and excluded, the item too; the same query through a batch agrees; a file
// that is no item's is refused, naming the file and the column, instead of excluding nothing.
TEST_F(IndexTest, ExcludeSameOfAnAudioQueryTakesTheFilesItem) {
  const Index x = read_index(file("index.sqlite"));
  const auto be = cpu();
  QueryFilter f;
  f.exclude_same = "artist";
  const IndexItem& it = x.items[5];
  const QueryResult r = query_audio(*be, x, it.path, 10, "", f);
  ASSERT_EQ(r.hits.size(), 10u);
  for (const QueryHit& h : r.hits) {
    EXPECT_NE(h.row, 5);
    EXPECT_NE(x.items[static_cast<size_t>(h.row)].artist, it.artist) << x.items[static_cast<size_t>(h.row)].id;
  }
  BatchQuery batch(*be, x, f, 10, "");
  const std::vector<std::string> lines = batch.run({QueryLine{1, it.path}});
  ASSERT_EQ(lines.size(), 1u);
  const nlohmann::json j = nlohmann::json::parse(lines[0]);
  ASSERT_EQ(j["results"].size(), 10u) << lines[0];
  for (size_t i = 0; i < 10; ++i) EXPECT_EQ(j["results"][i]["id"], x.items[static_cast<size_t>(r.hits[i].row)].id);

  const std::string outside = file("outside.wav");
  fs::copy_file(it.path, outside);
  std::ofstream(outside, std::ios::app) << '\0';  // another file, another SHA-256
  test::expect_error<IndexInputError>([&] { query_audio(*be, x, outside, 3, "", f); },
                                      "--exclude-same artist: " + outside + " is not the audio of any item of ");
}

TEST_F(IndexTest, QueriesNeverModifyTheIndex) {
  const std::string path = file("index.sqlite");
  const std::string before = test::read_bytes(path);
  const int64_t t_before = mtime_ns(path);
  std::vector<std::string> listing_before;
  for (const auto& e : fs::directory_iterator(dir_->path)) listing_before.push_back(e.path().filename().string());
  std::sort(listing_before.begin(), listing_before.end());

  std::string out;
  ASSERT_EQ(test::run_command(melgraph() + " query --device cpu --index " + path + " --item " + coll_->ids[3] + " -k 4", &out), 0) << out;
  ASSERT_EQ(test::run_command(melgraph() + " query --device cpu --json --index " + path + " --audio " +
                                  read_index(path).items[4].path,
                              &out),
            0)
      << out;
  const Json j = Json::parse(out);
  EXPECT_EQ(j.at("results").at(0).at("id"), coll_->ids[4]);
  EXPECT_EQ(j.at("results").size(), 10u);
  ASSERT_EQ(test::run_command(melgraph() + " eval --device cpu --index " + path + " --edges " + coll_->edges_path, &out), 0) << out;

  EXPECT_TRUE(test::read_bytes(path) == before) << "the index file's bytes changed";
  EXPECT_EQ(mtime_ns(path), t_before);
  std::vector<std::string> listing_after;
  for (const auto& e : fs::directory_iterator(dir_->path)) listing_after.push_back(e.path().filename().string());
  std::sort(listing_after.begin(), listing_after.end());
  EXPECT_EQ(listing_after, listing_before) << "a query left a file beside the index (journal, -wal, -shm)";
}

// The melgraph binary killed mid-write (its test hook: _exit(137) after N embedding rows, before
// the commit) leaves the previous index byte for byte; the next export replaces it whole.
TEST_F(IndexTest, InterruptedExportLeavesThePreviousIndexIntact) {
  const std::string path = file("crash.sqlite");
  fs::copy_file(file("index.sqlite"), path, fs::copy_options::overwrite_existing);
  const std::string before = test::read_bytes(path);
  const std::string args = " export --device cpu --threads 1 --prepare-threads 1 --checkpoint " + file("model.safetensors") +
                           " --catalog " + coll_->catalog_path + " --crops 1 --cache " + file("index.cache") + " --out " + path;
  std::string out;
  const int rc = test::run_command("MELGRAPH_EXPORT_CRASH_AFTER=5 " + melgraph() + args, &out);
  EXPECT_EQ(rc, 137) << out;
  EXPECT_TRUE(test::read_bytes(path) == before) << "the interrupted export changed the previous index";
  auto temps = [&] {
    int n = 0;
    for (const auto& e : fs::directory_iterator(dir_->path))
      n += e.path().filename().string().rfind("crash.sqlite.tmp-", 0) == 0;
    return n;
  };
  EXPECT_GT(temps(), 0) << "the hook fires mid-write, after the temporary file was started";
  EXPECT_EQ(read_index(path).meta_value("crops"), std::to_string(kCrops));

  ASSERT_EQ(test::run_command(melgraph() + args, &out), 0) << out;
  EXPECT_EQ(temps(), 0) << "the killed export's temporary file was not removed";
  const Index x = read_index(path);
  EXPECT_EQ(x.meta_value("crops"), "1");
  EXPECT_EQ(x.size(), kClips);
  EXPECT_TRUE(x.failures.empty());
  EXPECT_EQ(x.items[0].in_degree, -1) << "no --edges: in-degree NULL";
}

// export-npy: the vectors bit-exact as .npy, the ids in the same order; then Python reads the
// index with sqlite3 + NumPy and compares its BLOBs with the .npy byte for byte.
TEST_F(IndexTest, NpyExportAndPythonReadTheSameBits) {
  const std::string prefix = file("npy/emb");
  std::string out;
  ASSERT_EQ(test::run_command(melgraph() + " export-npy --index " + file("index.sqlite") + " --out " + prefix, &out), 0) << out;
  const Index x = read_index(file("index.sqlite"));
  const NpyArray a = read_npy(prefix + ".npy");
  EXPECT_EQ(a.shape, (std::vector<int64_t>{kClips, x.dim}));
  ASSERT_EQ(a.data.size(), x.vectors.size());
  EXPECT_EQ(std::memcmp(a.data.data(), x.vectors.data(), x.vectors.size() * sizeof(float)), 0);
  std::ifstream ids(prefix + ".ids.txt");
  std::string line;
  for (const IndexItem& it : x.items) {
    ASSERT_TRUE(std::getline(ids, line));
    EXPECT_EQ(line, it.id);
  }
  EXPECT_FALSE(std::getline(ids, line));

  MG_REQUIRE_REFERENCE_LIBS(test::python_import_problem("numpy", "python3-numpy"));
  test::run_reference("read_index.py", file("index.sqlite") + " " + prefix);
}

// ---- bad input -------------------------------------------------------------------------------

constexpr auto* expect_error = &test::expect_error<IndexInputError>;

TEST_F(IndexTest, ForeignMissingAndNewerFilesAreRefused) {
  expect_error([] { read_index(file("absent.sqlite")); }, "no such index file");
  expect_error([] { read_index(file("notes.txt")); }, "not a melgraph index (not an SQLite database)");
  expect_error([] { read_index(dir_->path.string()); }, "is a directory");
  // Another program's SQLite file (here: the audio cache's index).
  expect_error([] { read_index(default_cache_dir(file("index.sqlite")) + "/index.sqlite"); },
               "not a melgraph index (an SQLite file without melgraph's application_id");
  // A newer schema.
  const std::string newer = file("newer.sqlite");
  fs::copy_file(file("index.sqlite"), newer, fs::copy_options::overwrite_existing);
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(newer.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "PRAGMA user_version = 3", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  expect_error([&] { read_index(newer); },
               "written by a newer melgraph (index schema version 3, this melgraph reads up to 2)");
}

// Issue 17, D7: a damaged index is refused on open, naming the file and what is wrong,
// instead of answering with NaN similarities or running out of memory.
TEST_F(IndexTest, DamagedDimOrVectorsAreRefusedOnOpen) {
  auto damaged = [&](const std::string& name, const std::string& sql) {
    std::string p = file(name);
    fs::copy_file(file("index.sqlite"), p, fs::copy_options::overwrite_existing);
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open(p.c_str(), &db), SQLITE_OK);
    char* err = nullptr;
    EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK) << (err ? err : "");
    sqlite3_free(err);
    sqlite3_close(db);
    return p;
  };
  expect_error([&] { read_index(damaged("dim_text.sqlite", "UPDATE meta SET value = '8abc' WHERE key = 'dim'")); },
               "meta dim '8abc' is not a whole number in [1, 65536]");
  expect_error(
      [&] { read_index(damaged("dim_huge.sqlite", "UPDATE meta SET value = '2000000000' WHERE key = 'dim'")); },
      "meta dim '2000000000' is not a whole number");
  // Item 2's first float made NaN, then a row of zeros: the CHECK on the BLOB's length still
  // holds, so only the reader's own check can see it.
  auto damaged_vector = [&](const std::string& name, int item, float first, float rest) {
    std::string p = file(name);
    fs::copy_file(file("index.sqlite"), p, fs::copy_options::overwrite_existing);
    std::vector<float> v(static_cast<size_t>(read_index(p, false).dim), rest);
    v[0] = first;
    sqlite3* db = nullptr;
    sqlite3_stmt* st = nullptr;
    EXPECT_EQ(sqlite3_open(p.c_str(), &db), SQLITE_OK);
    EXPECT_EQ(sqlite3_prepare_v2(db, "UPDATE embeddings SET vector = ? WHERE item = ?", -1, &st, nullptr), SQLITE_OK);
    sqlite3_bind_blob(st, 1, v.data(), static_cast<int>(v.size() * sizeof(float)), SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 2, item);
    EXPECT_EQ(sqlite3_step(st), SQLITE_DONE) << sqlite3_errmsg(db);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return p;
  };
  const std::string nan_vec = damaged_vector("nan.sqlite", 2, std::numeric_limits<float>::quiet_NaN(), 0.0f);
  expect_error([&] { read_index(nan_vec); }, "the vector of item 2 ('" + read_index(nan_vec, false).items[2].id + "')");
  expect_error([&] { read_index(nan_vec); }, "has norm nan, not 1");
  const std::string zero = damaged_vector("zero.sqlite", 0, 0.0f, 0.0f);
  expect_error([&] { read_index(zero); }, "the vector of item 0");
  // Without vectors (melgraph eval --queries reads ids only) the file still opens.
  EXPECT_EQ(read_index(zero, false).items.size(), read_index(file("index.sqlite")).items.size());
}

// Issue 17, D14: sizes have bounds, checked before any work: -k beyond kMaxK and --crops
// beyond kMaxCrops are refused; a k deeper than the index returns the whole index.
TEST_F(IndexTest, KAndCropsHaveBounds) {
  const Index x = read_index(file("index.sqlite"));
  const auto be = cpu();
  expect_error([&] { query_item(*be, x, x.items[0].id, 1000000000); }, "-k must be in [1, 1000000] (got 1000000000)");
  expect_error([&] { query_audio(*be, x, file("absent.wav"), 0, ""); }, "-k must be in [1, 1000000] (got 0)");
  EXPECT_EQ(query_item(*be, x, x.items[0].id, kMaxK).hits.size(), x.items.size() - 1);
  EvalOptions o;
  o.k = 1000000000;
  const graph::PreferenceGraph g(graph::load_edge_list(coll_->edges_path));
  expect_error([&] { evaluate_index(*be, x, g, o); }, "-k must be in [1, 1000000]");
  o.k = kMaxK;
  EXPECT_GT(evaluate_index(*be, x, g, o).overall.queries, 0);
  ExportOptions e;
  e.checkpoint = file("model.safetensors");
  e.catalog = coll_->catalog_path;
  e.out = file("never.sqlite");
  e.crops = 1000000;
  expect_error([&] { export_index(e); }, "--crops must be in [1, 256] (got 1000000)");
  EXPECT_FALSE(fs::exists(e.out));
}

// Issue 17, D4: export --out refuses, before any work, to replace what is not an index of its
// own: a directory, another file, or one of its inputs.
TEST_F(IndexTest, ExportOutMustBeAnIndexOrNew) {
  ExportOptions e;
  e.checkpoint = file("model.safetensors");
  e.catalog = coll_->catalog_path;
  e.edges = coll_->edges_path;
  const std::string ckpt_sha = sha256_file_hex(e.checkpoint);
  e.out = e.checkpoint;
  expect_error([&] { export_index(e); }, "is the input file " + e.checkpoint);
  EXPECT_EQ(sha256_file_hex(e.checkpoint), ckpt_sha);
  e.out = coll_->catalog_path;
  expect_error([&] { export_index(e); }, "is the input file");
  e.out = file("notes.txt");
  const std::string notes = test::read_bytes(e.out);
  expect_error([&] { export_index(e); }, "exists and is not a melgraph index");
  EXPECT_EQ(test::read_bytes(e.out), notes);
  e.out = dir_->path.string();
  expect_error([&] { export_index(e); }, "is a directory; --out names the index file to write");
}

// Issue 17, D13: a checkpoint whose tensors do not fit its own config is refused before any
// audio is decoded (it used to fail only after the whole catalog was decoded).
TEST_F(IndexTest, ACheckpointThatDoesNotLoadIsRefusedBeforeDecoding) {
  StFile f = read_safetensors(file("model.safetensors"));
  Config other = fixture_config();
  other.model.embedding += 4;  // the stored tensors stay those of the fixture's width
  f.metadata["config"] = to_toml(other);
  write_safetensors(file("mismatch.safetensors"), f);
  ExportOptions e;
  e.checkpoint = file("mismatch.safetensors");
  e.catalog = coll_->catalog_path;
  e.out = file("mismatch.sqlite");
  e.cache_dir = file("mismatch.cache");
  expect_error([&] { export_index(e); }, "mismatch.safetensors");
  EXPECT_FALSE(fs::exists(e.cache_dir)) << "audio was decoded before the checkpoint was checked";
  EXPECT_FALSE(fs::exists(e.out));
}

// Issue 17, D5 and D11: every write has its own temporary name, and the temporary files of
// killed writers (whose process is gone) are removed by the next write; a live writer's stay.
TEST_F(IndexTest, TemporaryFilesAreUniqueAndStaleOnesAreRemoved) {
  const std::string target = file("temps.sqlite");
  EXPECT_NE(temp_path_for(target), temp_path_for(target));
  // pid 999999999 is above any Linux pid_max: no such process. pid 1 always exists.
  for (const char* tail : {".tmp-999999999-0", ".tmp-999999999-3-journal", ".tmp-1-0", ".tmp"})
    std::ofstream(target + tail) << "left behind";
  Index y;
  y.dim = 4;
  y.items.push_back({"a", "a.wav", std::nullopt, std::nullopt, -1, "{}", ""});
  y.vectors = {0.5f, 0.5f, 0.5f, 0.5f};
  write_index(target, y);
  EXPECT_FALSE(fs::exists(target + ".tmp-999999999-0"));
  EXPECT_FALSE(fs::exists(target + ".tmp-999999999-3-journal"));
  EXPECT_FALSE(fs::exists(target + ".tmp"));
  EXPECT_TRUE(fs::exists(target + ".tmp-1-0")) << "a live process's temporary file was removed";
  EXPECT_EQ(read_index(target).items.size(), 1u);
  // The same for every file written atomically (config.toml, checkpoints, npy).
  const std::string text = file("temps.txt");
  std::ofstream(text + ".tmp-999999999") << "left behind";
  write_file_atomic(text, std::string("new"));
  EXPECT_FALSE(fs::exists(text + ".tmp-999999999"));
  EXPECT_EQ(test::read_bytes(text), "new");
}

TEST_F(IndexTest, UnknownItemSuggestsCloseIds) {
  const Index x = read_index(file("index.sqlite"));
  const auto be = cpu();
  const std::string id = coll_->ids[5];
  const std::string typo = id + "x";  // one edit from id, two or more from every other id
  expect_error([&] { query_item(*be, x, typo, 3); }, "no item '" + typo + "' in the index");
  expect_error([&] { query_item(*be, x, typo, 3); }, "did you mean '");
  const std::vector<std::string> near = similar_ids(x, typo);
  ASSERT_FALSE(near.empty());
  EXPECT_EQ(near[0], id);
  expect_error([&] { query_item(*be, x, "zzzzzzzzzzzzzzzzzzzzzz", 3); }, "in the index (24 items)");
}

TEST_F(IndexTest, AnotherCheckpointOrWidthIsRefused) {
  const Index x = read_index(file("index.sqlite"));
  const auto be = cpu();
  test::save_untrained(fixture_config(), 4, file("other.safetensors"));  // same architecture, other weights
  expect_error([&] { query_audio(*be, x, x.items[0].path, 3, file("other.safetensors")); }, "has SHA-256 ");
  expect_error([&] { query_audio(*be, x, x.items[0].path, 3, file("absent.safetensors")); }, "no such file");
  // An index whose recorded hash is this checkpoint's but whose vectors are 4-d.
  Index y;
  y.dim = 4;
  y.items.push_back({"a", "a.wav", std::nullopt, std::nullopt, -1, "{}", ""});
  y.vectors = {0.5f, 0.5f, 0.5f, 0.5f};
  y.meta = {{"checkpoint", file("model.safetensors")}, {"checkpoint_sha256", sha256_file_hex(file("model.safetensors"))}, {"crops", "1"}};
  write_index(file("dim4.sqlite"), y);
  const Index z = read_index(file("dim4.sqlite"));
  expect_error([&] { check_index_checkpoint(z, ""); }, "embeds into 8 dimensions, the index");
}

TEST_F(IndexTest, UndecodableQueryAudioNamesTheFile) {
  const Index x = read_index(file("index.sqlite"));
  const auto be = cpu();
  try {
    query_audio(*be, x, file("notes.txt"), 3, "");
    ADD_FAILURE() << "no error";
  } catch (const audio::AudioError& e) {
    EXPECT_EQ(std::string(e.what()).rfind(file("notes.txt") + ": ", 0), 0u) << e.what();
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << "one line";
  }
}

TEST_F(IndexTest, CliExitCodes) {
  std::string out;
  const std::string idx = " --index " + file("index.sqlite");
  EXPECT_EQ(test::run_command(melgraph() + " query --device cpu" + idx + " --item nope", &out), 2) << out;
  EXPECT_NE(out.find("melgraph: error: "), std::string::npos) << out;
  EXPECT_EQ(test::run_command(melgraph() + " query --device cpu" + idx + " --audio " + file("notes.txt"), &out), 1) << out;
  EXPECT_NE(out.find(file("notes.txt") + ": "), std::string::npos) << out;
  EXPECT_EQ(test::run_command(melgraph() + " query --device cpu" + idx + " --audio " + file("a.wav") + " --checkpoint " +
                                  file("other.safetensors"),
                              &out),
            2)
      << out;
  EXPECT_EQ(test::run_command(melgraph() + " query --device cpu --index " + file("notes.txt") + " --item x", &out), 2) << out;
  EXPECT_NE(out.find("not a melgraph index"), std::string::npos) << out;
  EXPECT_EQ(test::run_command(melgraph() + " eval --device cpu" + idx + " --edges " + file("absent.csv"), &out), 2) << out;
  EXPECT_EQ(test::run_command(melgraph() + " export --checkpoint " + file("absent.safetensors") + " --catalog " +
                                  file("coll/catalog_plus.csv") + " --out " + file("x.sqlite"),
                              &out),
            2)
      << out;
  EXPECT_NE(out.find("no such checkpoint"), std::string::npos) << out;
  // The eval JSON of the fixture: every clip is in the graph.
  ASSERT_EQ(test::run_command(melgraph() + " eval --device cpu --json -k 5" + idx + " --edges " + coll_->edges_path, &out), 0) << out;
  const Json j = Json::parse(out);
  EXPECT_EQ(j.at("items"), kClips);
  EXPECT_EQ(j.at("not_in_graph"), 0);
  EXPECT_EQ(j.at("k"), 5);
  EXPECT_EQ(j.at("overall").at("queries").get<int64_t>() + j.at("overall").at("skipped").get<int64_t>(), kClips);
}

// export --update: after adding 5 items and removing 3, only the 5 are embedded and the index
// equals a full export of the new catalog; a changed file is embedded again; another
// checkpoint or crop count is refused (the index would mix models); an index of schema 1 (no
// content hashes) is read, and updating it embeds everything again.
TEST_F(IndexTest, UpdateEmbedsOnlyNewAndChangedItems) {
  // A copy of 20 of the fixture's clips: this test changes a file.
  const std::vector<std::string> lines = [] {
    std::vector<std::string> l;
    std::istringstream in(test::read_bytes(coll_->catalog_path));
    for (std::string s; std::getline(in, s);) l.push_back(s);
    return l;
  }();
  fs::create_directories(file("upd/audio"));
  for (size_t i = 1; i <= 20; ++i) {
    const std::string rel =
        lines[i].substr(lines[i].find(',') + 1, lines[i].find(',', lines[i].find(',') + 1) - lines[i].find(',') - 1);
    fs::copy_file(fs::path(coll_->dir) / rel, file("upd/" + rel), fs::copy_options::overwrite_existing);
  }
  auto catalog = [&](size_t first, size_t last, const std::string& name) {  // data rows [first, last]
    std::string text = lines[0] + "\n";
    for (size_t i = first; i <= last; ++i) text += lines[i] + "\n";
    std::ofstream(file("upd/" + name)) << text;
    return file("upd/" + name);
  };
  auto options = [&](const std::string& cat, const std::string& out, bool update) {
    ExportOptions e;
    e.checkpoint = file("model.safetensors");
    e.catalog = cat;
    e.out = file("upd/" + out);
    e.cache_dir = file("upd/cache");
    e.crops = kCrops;
    e.prepare_threads = 1;
    e.backend.device = DeviceChoice::Cpu;
    e.backend.threads = 1;
    e.update = update;
    return e;
  };
  const ExportSummary first = export_index(options(catalog(1, 15, "a.csv"), "index.sqlite", true));
  EXPECT_FALSE(first.updated) << "no index yet: a full export";
  EXPECT_EQ(first.embedded, 15);
  // Rows 1-3 removed, 16-20 added.
  const ExportSummary s = export_index(options(catalog(4, 20, "b.csv"), "index.sqlite", true));
  EXPECT_TRUE(s.updated);
  EXPECT_EQ(s.embedded, 5);
  EXPECT_EQ(s.reused, 12);
  EXPECT_EQ(s.removed, 3);
  EXPECT_NE(s.describe().find("update: 5 embedded (new or changed), 12 kept from the previous index, 3 removed"),
            std::string::npos)
      << s.describe();
  export_index(options(file("upd/b.csv"), "full.sqlite", false));
  auto expect_same = [&](const std::string& a_path, const std::string& b_path) {
    const Index a = read_index(a_path), b = read_index(b_path);
    ASSERT_EQ(a.size(), b.size());
    for (int64_t i = 0; i < a.size(); ++i) {
      const IndexItem &x = a.items[static_cast<size_t>(i)], &y = b.items[static_cast<size_t>(i)];
      EXPECT_EQ(x.id, y.id);
      EXPECT_EQ(x.path, y.path);
      EXPECT_EQ(x.title, y.title);
      EXPECT_EQ(x.extra, y.extra);
      EXPECT_EQ(x.content_sha256, y.content_sha256);
      EXPECT_EQ(x.content_sha256.size(), 64u);
      // The same clips embedded in other batch positions: equal up to the products' rounding.
      for (int j = 0; j < a.dim; ++j) EXPECT_NEAR(a.vector(i)[j], b.vector(i)[j], 1e-5) << x.id;
    }
  };
  expect_same(file("upd/index.sqlite"), file("upd/full.sqlite"));

  // A changed file (another clip's audio under the same path) is embedded again.
  const Index before = read_index(file("upd/index.sqlite"));
  fs::copy_file(before.items[1].path, before.items[0].path, fs::copy_options::overwrite_existing);
  const ExportSummary changed = export_index(options(file("upd/b.csv"), "index.sqlite", true));
  EXPECT_EQ(changed.embedded, 1);
  EXPECT_EQ(changed.reused, 16);
  EXPECT_EQ(changed.removed, 0);
  const Index after = read_index(file("upd/index.sqlite"));
  EXPECT_EQ(after.items[0].content_sha256, after.items[1].content_sha256);
  for (int j = 0; j < after.dim; ++j) EXPECT_NEAR(after.vector(0)[j], after.vector(1)[j], 1e-5);

  // Another checkpoint or crop count: refused, the index untouched.
  const std::string bytes = test::read_bytes(file("upd/index.sqlite"));
  test::save_untrained(fixture_config(), 4, file("upd/other.safetensors"));
  ExportOptions other = options(file("upd/b.csv"), "index.sqlite", true);
  other.checkpoint = file("upd/other.safetensors");
  expect_error([&] { export_index(other); }, "an index holds one model's vectors. Export without --update");
  ExportOptions crops = options(file("upd/b.csv"), "index.sqlite", true);
  crops.crops = kCrops + 1;
  expect_error([&] { export_index(crops); }, "was exported with --crops 3, not 4");
  EXPECT_EQ(test::read_bytes(file("upd/index.sqlite")), bytes);

  // Schema 1: no hash columns. Read as before; an update embeds every item again.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(file("upd/index.sqlite").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db,
                         "ALTER TABLE items DROP COLUMN content_sha256; ALTER TABLE embeddings DROP COLUMN "
                         "checkpoint_sha256; PRAGMA user_version = 1;",
                         nullptr, nullptr, nullptr),
            SQLITE_OK)
      << sqlite3_errmsg(db);
  sqlite3_close(db);
  const Index old = read_index(file("upd/index.sqlite"));
  EXPECT_EQ(old.size(), 17);
  EXPECT_TRUE(old.items[0].content_sha256.empty());
  EXPECT_EQ(export_index(options(file("upd/b.csv"), "index.sqlite", true)).embedded, 17);
  export_index(options(file("upd/b.csv"), "full.sqlite", false));  // item 0's file has changed since
  expect_same(file("upd/index.sqlite"), file("upd/full.sqlite"));
  // The command: nothing changed, nothing embedded.
  std::string out;
  ASSERT_EQ(
      test::run_command(melgraph() + " export --update --device cpu --threads 1 --prepare-threads 1 --checkpoint " +
                            file("model.safetensors") + " --catalog " + file("upd/b.csv") + " --out " +
                            file("upd/index.sqlite") + " --cache " + file("upd/cache"),
                        &out),
      0)
      << out;
  EXPECT_NE(out.find("update: 0 embedded (new or changed), 17 kept from the previous index, 0 removed"),
            std::string::npos)
      << out;
}

// export --skip-bad-lines: a malformed catalog row stops an export with a message that
// suggests the flag; with it the row is skipped and counted, and the rest indexed.
TEST_F(IndexTest, ExportSkipBadLinesSkipsAndCountsMalformedRows) {
  std::string cat = test::read_bytes(file("coll/catalog_plus.csv"));
  cat += "row-without-a-path\n";
  std::ofstream(file("coll/catalog_bad.csv"), std::ios::binary) << cat;
  ExportOptions e;
  e.checkpoint = file("model.safetensors");
  e.catalog = file("coll/catalog_bad.csv");
  e.out = file("skip/index.sqlite");
  e.cache_dir = default_cache_dir(file("index.sqlite"));
  e.crops = kCrops;
  e.prepare_threads = 1;
  e.backend.device = DeviceChoice::Cpu;
  e.backend.threads = 1;
  try {
    export_index(e);
    ADD_FAILURE() << "no error for a malformed catalog row";
  } catch (const graph::GraphInputError& err) {
    EXPECT_NE(std::string(err.what()).find("(use --skip-bad-lines to skip such lines)"), std::string::npos)
        << err.what();
  }
  e.skip_bad_lines = true;
  const ExportSummary s = export_index(e);
  EXPECT_EQ(s.indexed, kClips);
  EXPECT_NE(s.describe().find("skipped 1 malformed rows and 0 repeated ids (--skip-bad-lines)"), std::string::npos)
      << s.describe();
}

// export --ann: the ANN file beside the index, used by query (said on stderr) unless --exact;
// an export without --ann removes it, since it was built for the replaced vectors.
TEST_F(IndexTest, ExportAnnIsUsedByQueryAndRemovedByAPlainExport) {
  if (!ann_built()) GTEST_SKIP() << "this build has no FAISS (libfaiss-dev was not found at configure)";
  const std::string out = file("ann/index.sqlite");
  const std::string export_cmd = export_command(out);
  std::string text;
  ASSERT_EQ(test::run_command(export_cmd + " --ann hnsw", &text), 0) << text;
  EXPECT_NE(text.find("ann: " + out + ".ann (hnsw "), std::string::npos) << text;
  ASSERT_TRUE(fs::exists(out + ".ann"));
  const Index x = read_index(out);
  const std::string query = melgraph() + " query --device cpu --json -k 5 --index " + out + " --item " + x.items[0].id;
  ASSERT_EQ(test::run_command(query, &text), 0) << text;
  EXPECT_NE(text.find("melgraph: query: approximate search (hnsw"), std::string::npos) << text;
  const Json approx = Json::parse(text.substr(text.find('\n') + 1));  // after the stderr line
  ASSERT_EQ(test::run_command(query + " --exact", &text), 0) << text;
  EXPECT_EQ(text.find("approximate"), std::string::npos) << text;
  const Json exact = Json::parse(text);
  // 24 items: HNSW's search is exhaustive at this size.
  ASSERT_EQ(approx.at("results").size(), exact.at("results").size());
  for (size_t j = 0; j < exact.at("results").size(); ++j)
    EXPECT_EQ(approx["results"][j].at("id"), exact["results"][j].at("id"));
  ASSERT_EQ(test::run_command(export_cmd, &text), 0) << text;
  EXPECT_NE(text.find("ann: removed " + out + ".ann"), std::string::npos) << text;
  EXPECT_FALSE(fs::exists(out + ".ann"));
}

// export --ann ivf over fewer than the 39 items IVF needs fails before anything is written
// (it used to fail after the index was written, leaving a new index and exit status 2).
TEST_F(IndexTest, ExportAnnTooSmallForIvfWritesNothing) {
  if (!ann_built()) GTEST_SKIP() << "this build has no FAISS (libfaiss-dev was not found at configure)";
  const std::string out = file("ivf/index.sqlite");
  std::string text;
  EXPECT_EQ(test::run_command(export_command(out) + " --ann ivf", &text), 2) << text;
  EXPECT_NE(text.find("--ann ivf needs at least 39 items to train its lists (the index has "), std::string::npos)
      << text;
  EXPECT_FALSE(fs::exists(out)) << text;
  EXPECT_FALSE(fs::exists(out + ".ann")) << text;
}

// `query --queries`: one JSON line per query, in order, each the answer of the same query made
// alone; a bad line is answered with its error and makes the exit status 2; standard input
// works as a file does; filters apply to every query.
TEST_F(IndexTest, BatchQueriesAnswerAsTheSingleQueriesDo) {
  const Index x = read_index(file("index.sqlite"));
  const std::string cmd = melgraph() + " query --device cpu --threads 1 -k 4 --index " + file("index.sqlite");
  std::string lines;
  for (const IndexItem& it : x.items) lines += it.id + "\n";
  lines += x.items[3].path + "\n";  // an audio query by path
  std::ofstream(file("queries.txt")) << lines;
  std::string out;
  ASSERT_EQ(test::run_command(cmd + " --queries " + file("queries.txt") + " 2>&1", &out), 0) << out;
  std::vector<Json> answers;
  std::istringstream in(out);
  for (std::string l; std::getline(in, l);) answers.push_back(Json::parse(l));
  ASSERT_EQ(answers.size(), x.items.size() + 1);
  for (size_t i = 0; i < x.items.size(); ++i) {
    ASSERT_EQ(test::run_command(cmd + " --json --item " + x.items[i].id, &out), 0) << out;
    const Json one = Json::parse(out), &batch = answers[i];
    EXPECT_EQ(batch.at("line"), i + 1);
    EXPECT_EQ(batch.at("query"), x.items[i].id);
    ASSERT_EQ(batch.at("results").size(), one.at("results").size());
    for (size_t j = 0; j < one.at("results").size(); ++j) {
      // A lone query's similarities are a matrix-vector product's, a batch's a matrix product's.
      EXPECT_NEAR(batch["results"][j].at("similarity").get<double>(), one["results"][j].at("similarity").get<double>(),
                  1e-6);
      EXPECT_EQ(batch["results"][j].at("id"), one["results"][j].at("id")) << "query " << i << " rank " << j;
    }
  }
  EXPECT_EQ(answers.back().at("kind"), "audio");
  EXPECT_EQ(answers.back().at("results")[0].at("id"), x.items[3].id);

  // A bad line: answered with its error, the others still answered, exit status 2.
  ASSERT_EQ(test::run_command("printf '%s\\nno-such-id\\n' " + x.items[0].id + " | " + cmd + " --queries -", &out), 2)
      << out;
  std::istringstream two(out);
  std::string first, second;
  std::getline(two, first);
  std::getline(two, second);
  EXPECT_EQ(Json::parse(first).at("results").size(), 4u) << out;
  EXPECT_NE(Json::parse(second).at("error").get<std::string>().find("'no-such-id' is neither an item"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("melgraph: error: 1 of 2 queries from standard input could not be answered"), std::string::npos)
      << out;

  // Filters on the command line: every result has the query's style and another artist.
  const IndexItem& q = x.items[0];
  const std::string style = Json::parse(q.extra).at("style");
  ASSERT_EQ(
      test::run_command(cmd + " --json --item " + q.id + " --where style=" + style + " --exclude-same artist", &out), 0)
      << out;
  const Json filtered = Json::parse(out);
  EXPECT_FALSE(filtered.at("results").empty());
  for (const Json& h : filtered.at("results")) {
    const IndexItem& it = x.items[static_cast<size_t>(x.find(h.at("id")))];
    EXPECT_EQ(Json::parse(it.extra).at("style"), style);
    EXPECT_NE(it.artist, q.artist);
  }
  EXPECT_EQ(test::run_command(cmd + " --item " + q.id + " --where genre=rock", &out), 2);
  EXPECT_NE(out.find("no item has a catalog column 'genre'"), std::string::npos) << out;
  EXPECT_EQ(test::run_command(cmd + " --item " + q.id + " --queries " + file("queries.txt"), &out), 2);
  EXPECT_NE(out.find("give exactly one of --audio FILE, --item ID and --queries FILE|-"), std::string::npos) << out;
}

// ---- eval on a hand-worked example -----------------------------------------------------------

// Unit vectors at angles (degrees) in the plane.
Index plane_index(const std::vector<std::pair<std::string, double>>& items) {
  Index x;
  x.dim = 2;
  for (const auto& [id, deg] : items) {
    x.items.push_back({id, id + ".wav", std::nullopt, std::nullopt, -1, "{}", ""});
    const double r = deg * std::numbers::pi / 180.0;
    x.vectors.push_back(static_cast<float>(std::cos(r)));
    x.vectors.push_back(static_cast<float>(std::sin(r)));
  }
  x.rebuild_lookup();
  return x;
}

graph::PreferenceGraph graph_of(const std::string& csv) {
  std::istringstream in(csv);
  return graph::PreferenceGraph(graph::parse_edge_list(in, "edges"));
}

TEST(IndexEval, HandWorkedRecallAndBuckets) {
  // a 0, b 10, c 25, d 90 degrees; e is not in the graph. Edges a -> b, c -> d.
  // Nearest (k = 1): a -> b (relevant), b -> a (relevant), c -> b (relevant is d: miss),
  // d -> c (relevant). e at 200 degrees is nobody's nearest.
  const Index x = plane_index({{"a", 0}, {"b", 10}, {"c", 25}, {"d", 90}, {"e", 200}});
  const graph::PreferenceGraph g = graph_of("a,b\nc,d\n");
  const auto be = make_cpu_backend(1);
  EvalOptions o;
  o.k = 1;
  const EvalReport r = evaluate_index(*be, x, g, o);
  EXPECT_EQ(r.items, 5);
  EXPECT_EQ(r.not_in_graph, 1);
  EXPECT_EQ(r.overall.queries, 4);
  EXPECT_EQ(r.overall.skipped, 0);
  EXPECT_DOUBLE_EQ(r.overall.recall, 0.75);
  EXPECT_DOUBLE_EQ(r.overall.hit_rate, 0.75);
  EXPECT_DOUBLE_EQ(r.overall.map, 0.75);
  EXPECT_DOUBLE_EQ(r.overall.ndcg, 0.75);
  // In-degree: a 0, c 0 (bucket "0": a hit, c a miss); b 1, d 1 (bucket "1": both hits).
  ASSERT_EQ(r.buckets.size(), 2u);
  EXPECT_EQ(r.buckets[0].label, "0");
  EXPECT_EQ(r.buckets[0].metrics.queries, 2);
  EXPECT_DOUBLE_EQ(r.buckets[0].metrics.recall, 0.5);
  EXPECT_EQ(r.buckets[1].label, "1");
  EXPECT_DOUBLE_EQ(r.buckets[1].metrics.recall, 1.0);
  // Chance: one relevant among 4 candidates, k = 1: 1/4.
  EXPECT_DOUBLE_EQ(r.chance_recall, 0.25);
  const Json j = Json::parse(eval_json(r));
  EXPECT_EQ(j.at("buckets").size(), 2u);
  EXPECT_NE(format_eval(r).find("all"), std::string::npos);
}

// A Linux file name need not be UTF-8 (here Latin-1 "caf\xe9"): the --json answers of query
// and eval carry it as U+FFFD instead of failing after the search (nlohmann::json throws on
// such a string unless told to replace it; engine/io/json_text.h).
TEST(IndexEval, JsonAnswersSurviveAPathThatIsNotUtf8) {
  Index x = plane_index({{"a", 0}, {"b", 10}, {"c", 25}});
  x.items[1].path = "caf\xe9/b.wav";
  x.source = "idx-\xff.sqlite";
  QueryResult q;
  q.query = "audio/caf\xe9.wav";
  q.hits = {{1, 0.98f}, {2, 0.9f}};
  const Json hits = Json::parse(hits_json(x, q, 2));
  EXPECT_EQ(hits.at("query"), "audio/caf\xef\xbf\xbd.wav");
  EXPECT_EQ(hits.at("index"), "idx-\xef\xbf\xbd.sqlite");
  EXPECT_EQ(hits.at("results").at(0).at("path"), "caf\xef\xbf\xbd/b.wav");
  EXPECT_EQ(hits.at("results").at(1).at("path"), "c.wav");
  const auto be = make_cpu_backend(1);
  EvalReport r = evaluate_index(*be, x, graph_of("a,b\n"), EvalOptions{});
  r.index_path = x.source;
  EXPECT_EQ(Json::parse(eval_json(r)).at("index"), "idx-\xef\xbf\xbd.sqlite");
}

TEST(IndexEval, HopsWidenTheRelevantSetAndWeighNdcg) {
  // A chain a -> b -> c -> d, vectors in chain order at 0, 30, 60, 90 degrees.
  const Index x = plane_index({{"a", 0}, {"b", 30}, {"c", 60}, {"d", 90}});
  const graph::PreferenceGraph g = graph_of("a,b\nb,c\nc,d\n");
  const auto be = make_cpu_backend(1);
  EvalOptions o;
  o.k = 2;
  o.hops = 2;
  const EvalReport r = evaluate_index(*be, x, g, o);
  // a: top 2 = b (1 hop), c (2 hops); relevant {b:1, c:2}: recall 1, nDCG 1 (ideal order).
  // b: top 2 = a, c (both 30 degrees away, in either order: their float32 dot products differ
  //    in the last bits); relevant {a:1, c:1, d:2}: recall 2/2, nDCG 1 (equal gains). c
  //    likewise: b, d, both 1 hop. d: top 2 = c (1 hop), b (2 hops): the ideal order.
  EXPECT_EQ(r.overall.queries, 4);
  EXPECT_NEAR(r.overall.recall, 1.0, 1e-12);
  EXPECT_NEAR(r.overall.ndcg, 1.0, 1e-12);
  // With 1 hop, a's relevant set is {b}: k = 2 still finds it; nothing is skipped.
  o.hops = 1;
  EXPECT_EQ(evaluate_index(*be, x, g, o).overall.skipped, 0);
  // Bad options.
  o.hops = 0;
  EXPECT_THROW(evaluate_index(*be, x, g, o), IndexInputError);
  o.hops = 1;
  o.k = 0;
  EXPECT_THROW(evaluate_index(*be, x, g, o), IndexInputError);
  EXPECT_THROW(evaluate_index(*be, x, graph_of("p,q\n"), EvalOptions{}), IndexInputError);
}

// --queries: only the listed ids are queried (against every item), unknown ids are counted;
// --wide-k scores the same queries at a second cut-off; the spread covers the whole index.
TEST(IndexEval, ListedQueriesWideCutOffAndSpread) {
  // a 0, b 10, c 25, d 90 degrees; edges a -> b, a -> d, c -> d.
  const Index x = plane_index({{"a", 0}, {"b", 10}, {"c", 25}, {"d", 90}});
  const graph::PreferenceGraph g = graph_of("a,b\na,d\nc,d\n");
  const auto be = make_cpu_backend(1);
  EvalOptions o;
  o.k = 1;
  o.wide_k = 3;
  o.queries = {"a", "nobody"};
  const EvalReport r = evaluate_index(*be, x, g, o);
  // Only a is queried: its nearest is b (relevant), d (relevant) comes third.
  EXPECT_EQ(r.overall.queries, 1);
  EXPECT_EQ(r.queries_listed, 2);
  EXPECT_EQ(r.queries_not_found, 1);
  EXPECT_DOUBLE_EQ(r.overall.recall, 1.0);  // 1 of min(k, 2) = 1
  EXPECT_EQ(r.wide_k, 3);
  EXPECT_DOUBLE_EQ(r.wide.recall, 1.0);     // b and d within the top 3
  // nDCG@3 of b, c, d with b and d relevant: (1 + 1/log2 4) / (1 + 1/log2 3).
  EXPECT_NEAR(r.wide.ndcg, (1.0 + 0.5) / (1.0 + 1.0 / std::log2(3.0)), 1e-12);
  // The spread: all 6 pairs of the 4 items.
  EXPECT_EQ(r.spread.pairs, 6);
  EXPECT_FALSE(r.spread.sampled);
  EXPECT_NE(format_eval(r).find("spread: cosine similarity of all 6 item pairs"), std::string::npos) << format_eval(r);
  const Json j = Json::parse(eval_json(r));
  EXPECT_EQ(j.at("wide").at("k"), 3);
  // A list none of whose ids is queryable is an error naming the list.
  o.queries = {"nobody"};
  o.queries_source = "held.txt";
  try {
    evaluate_index(*be, x, g, o);
    FAIL() << "an empty query set was accepted";
  } catch (const IndexInputError& e) {
    EXPECT_NE(std::string(e.what()).find("held.txt"), std::string::npos) << e.what();
  }
}

// The id list the trainer writes (held_out_items.txt): one id per line, comments and blank
// lines skipped, spaces trimmed; an empty or missing file is an error naming it.
TEST(IndexEval, ReadIdListSkipsCommentsAndNamesBadFiles) {
  test::TempDir dir;
  const std::string p = dir.file("ids.txt");
  {
    std::ofstream f(p);
    f << "# held out by album\n t0001 \n\nt0002\r\n";
  }
  EXPECT_EQ(read_id_list(p), (std::vector<std::string>{"t0001", "t0002"}));
  {
    std::ofstream f(p);
    f << "# nothing\n\n";
  }
  EXPECT_THROW(read_id_list(p), IndexInputError);
  try {
    read_id_list(dir.file("absent.txt"));
    FAIL();
  } catch (const IndexInputError& e) {
    EXPECT_NE(std::string(e.what()).find("absent.txt"), std::string::npos) << e.what();
  }
}

TEST(IndexEval, InDegreeBucketsAreLog2) {
  EXPECT_EQ(in_degree_bucket(0), 0);
  EXPECT_EQ(in_degree_bucket(1), 1);
  EXPECT_EQ(in_degree_bucket(2), 2);
  EXPECT_EQ(in_degree_bucket(3), 2);
  EXPECT_EQ(in_degree_bucket(4), 3);
  EXPECT_EQ(in_degree_bucket(1023), 10);
  EXPECT_EQ(in_degree_bucket(1024), 11);
}

// ---- the writer's contract -------------------------------------------------------------------

TEST(IndexWriter, RefusesInconsistentContents) {
  test::TempDir d;
  Index x;
  x.dim = 2;
  x.items.push_back({"a", "a.wav", std::nullopt, std::nullopt, -1, "{}", ""});
  x.vectors = {1.0f, 0.0f};
  EXPECT_NO_THROW(write_index(d.file("ok.sqlite"), x));
  Index bad = x;
  bad.vectors = {1.0f, 1.0f};
  EXPECT_THROW(write_index(d.file("bad.sqlite"), bad), std::invalid_argument);  // not unit
  bad = x;
  bad.items.push_back(x.items[0]);
  bad.vectors = {1.0f, 0.0f, 0.0f, 1.0f};
  EXPECT_THROW(write_index(d.file("bad.sqlite"), bad), std::invalid_argument);  // duplicate id
  bad = x;
  bad.vectors = {1.0f};
  EXPECT_THROW(write_index(d.file("bad.sqlite"), bad), std::invalid_argument);  // wrong length
  EXPECT_FALSE(fs::exists(d.file("bad.sqlite")));
  const Index back = read_index(d.file("ok.sqlite"));
  EXPECT_EQ(back.items[0].in_degree, -1);
  EXPECT_FALSE(back.items[0].title.has_value());
}

// Found by fuzzing (tests/fuzz/fuzz_index): a file whose unique index on items.id was damaged
// read with one id on two rows, and find() answered for the first only. Here the table is
// rebuilt without UNIQUE (what a damaged or hand-edited file can hold) and an id repeated.
TEST(IndexReader, RepeatedIdIsRefused) {
  test::TempDir d;
  Index x;
  x.dim = 2;
  x.items.push_back({"a", "a.wav", std::nullopt, std::nullopt, -1, "{}", ""});
  x.items.push_back({"b", "b.wav", std::nullopt, std::nullopt, -1, "{}", ""});
  x.vectors = {1.0f, 0.0f, 0.0f, 1.0f};
  const std::string path = d.file("repeated.sqlite");
  write_index(path, x);
  ASSERT_EQ(read_index(path).find("b"), 1);
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  char* err = nullptr;
  EXPECT_EQ(sqlite3_exec(db,
                         "CREATE TABLE plain AS SELECT * FROM items; DROP TABLE items; "
                         "ALTER TABLE plain RENAME TO items; UPDATE items SET id = 'a' WHERE item = 1",
                         nullptr, nullptr, &err),
            SQLITE_OK)
      << (err ? err : "");
  sqlite3_free(err);
  sqlite3_close(db);
  for (bool with_vectors : {true, false}) {
    try {
      read_index(path, with_vectors);
      ADD_FAILURE() << "read an index with a repeated id";
    } catch (const IndexInputError& e) {
      EXPECT_NE(std::string(e.what()).find("item id 'a' appears twice (items 0 and 1)"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace mg::index
