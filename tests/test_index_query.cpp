// Filtered and batched queries (engine/index/index_query.h FilteredSearch,
// engine/index/query_batch.h) on synthetic indexes in memory: every filtered result against a
// float64 brute force that applies the same filter, k results whenever k items qualify (95% of
// the items filtered out included), SQL metacharacters as plain text, a batch equal to its
// queries one at a time, the query-line parser, per-line errors, and the reader's batches.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "engine/index/ann.h"
#include "engine/index/index_format.h"
#include "engine/index/index_query.h"
#include "engine/index/query_batch.h"
#include "tests/test_support.h"

namespace mg::index {
namespace {

using Json = nlohmann::json;
constexpr auto* expect_error = &test::expect_error<IndexInputError>;

// n random unit vectors of dim 16. Artists: "Big" owns 95% of the items (a value shared by more
// than FilteredSearch::kOverfetchLimit items), the rest are spread over "a0".."a4"; the style
// column (in extra) is "keep" on every 20th item (5%) and holds SQL metacharacters on a few.
Index synthetic_index(int64_t n, uint32_t seed) {
  Index x;
  x.dim = 16;
  x.source = "synthetic.sqlite";
  std::mt19937 rng(seed);
  std::normal_distribution<double> g;
  for (int64_t i = 0; i < n; ++i) {
    std::vector<double> v(static_cast<size_t>(x.dim));
    double sq = 0;
    for (double& e : v) {
      e = g(rng);
      sq += e * e;
    }
    for (const double e : v) x.vectors.push_back(static_cast<float>(e / std::sqrt(sq)));
    std::string style = i % 20 == 0 ? "keep" : "other";
    if (i % 97 == 3) style = "x' OR '1'='1";
    if (i % 89 == 5) style = "%";
    const std::string n_text = std::to_string(i), id = std::string("t").append(n_text);
    const std::string artist = i % 20 == 7 ? std::string("a").append(std::to_string(i % 5)) : std::string("Big");
    x.items.push_back(
        {id, id + ".wav", std::string("Title ").append(n_text), artist, -1, Json{{"style", style}}.dump(), ""});
  }
  x.rebuild_lookup();
  return x;
}

// The filter applied by hand, ranked in float64 (ties: the lower row).
std::vector<std::pair<double, int64_t>> brute_force(const Index& x, const float* q, int64_t query_row,
                                                    const QueryFilter& f) {
  std::vector<std::pair<double, int64_t>> all;
  for (int64_t i = 0; i < x.size(); ++i) {
    if (i == query_row) continue;
    const IndexItem& it = x.items[static_cast<size_t>(i)];
    const std::string style = Json::parse(it.extra).at("style");
    bool ok = true;
    for (const auto& [col, val] : f.where) {
      if (col == "style") ok = ok && style == val;
      if (col == "artist") ok = ok && it.artist == val;
    }
    if (f.exclude_same == "artist" && query_row >= 0 && it.artist == x.items[static_cast<size_t>(query_row)].artist)
      ok = false;
    if (!ok) continue;
    double s = 0;
    for (int j = 0; j < x.dim; ++j) s += static_cast<double>(q[j]) * x.vector(i)[j];
    all.emplace_back(s, i);
  }
  std::sort(all.begin(), all.end(),
            [](auto& a, auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
  return all;
}

// Hits against the brute force: the same count (min(k, qualifying)), similarities within 1e-6
// (float32 dot products of unit rows of dim 16 vs float64), the same rows except where two
// similarities are closer than that.
void expect_matches(const std::vector<QueryHit>& got, const std::vector<std::pair<double, int64_t>>& want, int k,
                    const std::string& what) {
  ASSERT_EQ(got.size(), std::min<size_t>(static_cast<size_t>(k), want.size())) << what;
  for (size_t j = 0; j < got.size(); ++j) {
    EXPECT_NEAR(got[j].similarity, want[j].first, 1e-6) << what << " rank " << j;
    const bool tie = (j + 1 < want.size() && want[j].first - want[j + 1].first < 1e-5) ||
                     (j > 0 && want[j - 1].first - want[j].first < 1e-5);
    if (!tie) {
      EXPECT_EQ(got[j].row, want[j].second) << what << " rank " << j;
    }
  }
}

// Item queries of every step-th row: their rows and their vectors [rows, dim].
struct ItemQueries {
  std::vector<int64_t> rows;
  std::vector<float> vectors;
};
ItemQueries every_nth_item(const Index& x, int64_t step) {
  ItemQueries q;
  for (int64_t r = 0; r < x.size(); r += step) {
    q.rows.push_back(r);
    q.vectors.insert(q.vectors.end(), x.vector(r), x.vector(r) + x.dim);
  }
  return q;
}

TEST(FilteredSearch, EveryFilterIsTheBruteForceOfThatFilter) {
  const Index x = synthetic_index(1000, 7);
  const auto be = make_cpu_backend(1);
  const std::vector<QueryFilter> filters = {
      {},
      {{{"style", "keep"}}, ""},                    // 95% of the items filtered out
      {{}, "artist"},                               // "Big" queries lose 95% (a search without that value)
      {{{"style", "keep"}}, "artist"},              // both
      {{{"style", "keep"}, {"artist", "a2"}}, ""},  // two pairs, all must hold
      {{{"style", "x' OR '1'='1"}}, ""},            // SQL metacharacters are text
      {{{"style", "%"}}, ""},
      {{{"style", "no such style"}}, ""},  // nothing qualifies: no results, no error
  };
  for (size_t f = 0; f < filters.size(); ++f) {
    FilteredSearch search(*be, x, filters[f]);
    // "Big" items and a minority artist's (r % 20 == 7: 407).
    auto [rows, queries] = every_nth_item(x, 37);
    rows.push_back(-1);  // a vector query: no row to leave out, no value to exclude
    queries.insert(queries.end(), x.vector(5), x.vector(5) + x.dim);
    for (const int k : {1, 10, 60}) {
      const auto hits = search.search(queries.data(), rows, k);
      ASSERT_EQ(hits.size(), rows.size());
      for (size_t q = 0; q < rows.size(); ++q)
        expect_matches(
            hits[q], brute_force(x, queries.data() + q * static_cast<size_t>(x.dim), rows[q], filters[f]), k,
            "filter " + std::to_string(f) + ", query row " + std::to_string(rows[q]) + ", k " + std::to_string(k));
    }
  }
}

TEST(FilteredSearch, TenResultsWhen95PercentAreFilteredOut) {
  const Index x = synthetic_index(1000, 8);
  const auto be = make_cpu_backend(1);
  FilteredSearch keep(*be, x, {{{"style", "keep"}}, ""});
  auto with_style = [&](const std::string& style) {
    return std::count_if(x.items.begin(), x.items.end(),
                         [&](const IndexItem& it) { return Json::parse(it.extra).at("style") == style; });
  };
  EXPECT_EQ(keep.admitted(), with_style("keep"));
  ASSERT_LT(keep.admitted(), x.size() / 20 + 1) << "at least 95% filtered out";
  // A "Big" item (95% of the collection shares its artist) with exclude_same: 50 items remain.
  FilteredSearch other_artist(*be, x, {{}, "artist"});
  for (FilteredSearch* s : {&keep, &other_artist}) {
    const auto hits = s->search(x.vector(1), {1}, 10);
    ASSERT_EQ(hits.at(0).size(), 10u);
    for (const QueryHit& h : hits[0]) EXPECT_NE(h.row, 1);
  }
  const auto others = other_artist.search(x.vector(1), {1}, 10);
  for (const QueryHit& h : others[0]) EXPECT_NE(x.items[static_cast<size_t>(h.row)].artist, "Big");
  // The metacharacters match only the items that hold them literally.
  FilteredSearch meta(*be, x, {{{"style", "x' OR '1'='1"}}, ""});
  const auto literal = meta.search(x.vector(0), {-1}, 50);
  for (const QueryHit& h : literal[0])
    EXPECT_EQ(Json::parse(x.items[static_cast<size_t>(h.row)].extra).at("style"), "x' OR '1'='1");
  EXPECT_EQ(meta.admitted(), with_style("x' OR '1'='1"));
  EXPECT_GT(meta.admitted(), 5);
}

TEST(FilteredSearch, ABatchIsItsQueriesOneAtATime) {
  const Index x = synthetic_index(600, 9);
  const auto be = make_cpu_backend(2);
  FilteredSearch search(*be, x, {{}, "artist"});
  const auto [rows, queries] = every_nth_item(x, 13);
  const auto batch = search.search(queries.data(), rows, 10);
  for (size_t q = 0; q < rows.size(); ++q) {
    const auto one = search.search(queries.data() + q * static_cast<size_t>(x.dim), {rows[q]}, 10)[0];
    ASSERT_EQ(one.size(), batch[q].size());
    for (size_t j = 0; j < one.size(); ++j) {
      // A lone query is a matrix-vector product, a batch a matrix product: the same up to rounding.
      EXPECT_NEAR(one[j].similarity, batch[q][j].similarity, 1e-6);
      if (j + 1 < one.size() && one[j].similarity - one[j + 1].similarity > 1e-5) {
        EXPECT_EQ(one[j].row, batch[q][j].row);
      }
    }
  }
}

TEST(FilteredSearch, UnknownColumnsAndBadWhereAreNamed) {
  const Index x = synthetic_index(50, 10);
  const auto be = make_cpu_backend(1);
  expect_error(
      [&] {
        FilteredSearch(*be, x, {{{"genre", "rock"}}, ""});
      },
      "synthetic.sqlite: no item has a catalog column 'genre' (the index's columns: artist, id, path, "
      "style, title)");
  expect_error([&] { FilteredSearch(*be, x, {{}, "mood"}); }, "no item has a catalog column 'mood'");
  expect_error([&] { parse_where("artist"); }, "--where 'artist': expected COLUMN=VALUE");
  expect_error([&] { parse_where("=x"); }, "expected COLUMN=VALUE");
  EXPECT_EQ(parse_where("title=a=b"), (std::pair<std::string, std::string>{"title", "a=b"}));
  EXPECT_EQ(parse_where("title="), (std::pair<std::string, std::string>{"title", ""}));
}

TEST(QueryLines, EachFormIsParsedAndEachMistakeNamed) {
  const Index x = synthetic_index(20, 11);
  EXPECT_FALSE(parse_query_line(x, "   \r").has_value());
  EXPECT_FALSE(parse_query_line(x, "# a comment").has_value());
  std::optional<QueryRequest> r = parse_query_line(x, " t3 \r");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->kind, QueryKind::Item);
  EXPECT_EQ(r->text, "t3");
  r = parse_query_line(x, R"({"item": "t4"})");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->kind, QueryKind::Item);
  EXPECT_EQ(r->text, "t4");
  r = parse_query_line(x, R"({"audio": "some/file.wav"})");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->kind, QueryKind::Audio);
  // A vector is normalised here: [3, 4, 0, ...] -> [0.6, 0.8, 0, ...].
  Json v = Json::array();
  for (int i = 0; i < x.dim; ++i) v.push_back(i == 0 ? 3.0 : i == 1 ? 4.0 : 0.0);
  r = parse_query_line(x, Json{{"vector", v}}.dump());
  ASSERT_TRUE(r);
  EXPECT_EQ(r->kind, QueryKind::Vector);
  ASSERT_EQ(r->vector.size(), 16u);
  EXPECT_FLOAT_EQ(r->vector[0], 0.6f);
  EXPECT_FLOAT_EQ(r->vector[1], 0.8f);

  expect_error([&] { parse_query_line(x, "t999"); }, "'t999' is neither an item of the index nor an audio file");
  expect_error([&] { parse_query_line(x, "{\"item\": "); }, "not valid JSON");
  expect_error([&] { parse_query_line(x, R"({"item": "t1", "audio": "a.wav"})"); }, "one object with one key");
  expect_error([&] { parse_query_line(x, R"({"song": "t1"})"); }, "unknown key \"song\"");
  expect_error([&] { parse_query_line(x, R"({"item": 3})"); }, "\"item\" must be a non-empty string");
  expect_error([&] { parse_query_line(x, R"({"vector": [1, 2]})"); },
               "\"vector\" has 2 numbers; the index holds 16-dimensional vectors");
  Json zero = Json::array();
  for (int i = 0; i < x.dim; ++i) zero.push_back(0);
  expect_error([&] { parse_query_line(x, Json{{"vector", zero}}.dump()); }, "no direction");
  Json text = v;
  text[3] = "x";
  expect_error([&] { parse_query_line(x, Json{{"vector", text}}.dump()); }, "numbers only");
}

TEST(QueryLines, ABatchAnswersEveryLineInOrderAndNamesTheBadOnes) {
  const Index x = synthetic_index(300, 12);
  const auto be = make_cpu_backend(1);
  BatchQuery batch(*be, x, {{}, "artist"}, 5, "");
  Json v = Json::array();
  for (int i = 0; i < x.dim; ++i) v.push_back(x.vector(7)[i]);
  const std::vector<QueryLine> lines = {
      {1, "t7"}, {2, ""}, {3, "nope"}, {4, Json{{"vector", v}}.dump()}, {5, "{\"item\": \"t8\"}"}, {6, "{bad"}};
  const std::vector<std::string> out = batch.run(lines);
  ASSERT_EQ(out.size(), 5u) << "the blank line is skipped";
  EXPECT_EQ(batch.answered(), 3);
  EXPECT_EQ(batch.failed(), 2);
  const Json a = Json::parse(out[0]), bad = Json::parse(out[1]), vec = Json::parse(out[2]), b = Json::parse(out[3]),
             bad_json = Json::parse(out[4]);
  EXPECT_EQ(a.at("line"), 1);
  EXPECT_EQ(a.at("kind"), "item");
  EXPECT_EQ(bad.at("line"), 3);
  EXPECT_EQ(bad.at("query"), "nope");
  EXPECT_NE(bad.at("error").get<std::string>().find("neither an item"), std::string::npos);
  EXPECT_TRUE(vec.at("query").is_null());
  EXPECT_EQ(vec.at("kind"), "vector");
  EXPECT_EQ(b.at("line"), 5);
  EXPECT_EQ(bad_json.at("line"), 6);
  EXPECT_EQ(bad_json.at("error"), "not valid JSON");
  // An item's line is query_item's answer with the same filter; the vector query of the same
  // item finds the item itself first (nothing to leave out, no artist to exclude).
  const QueryResult want = query_item(*be, x, "t7", 5, {{}, "artist"});
  ASSERT_EQ(a.at("results").size(), want.hits.size());
  for (size_t j = 0; j < want.hits.size(); ++j) {
    EXPECT_EQ(a.at("results")[j].at("id"), x.items[static_cast<size_t>(want.hits[j].row)].id);
    EXPECT_EQ(a.at("results")[j].at("rank"), j + 1);
    EXPECT_NE(a.at("results")[j].at("artist"), x.items[7].artist);
  }
  EXPECT_EQ(vec.at("results")[0].at("id"), "t7");
}

TEST(QueryLines, TheReaderBatchesLinesAndKeepsTheirNumbers) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const std::string text = "a\nb\n\nc\r\nd\ne";  // the last line has no newline
  ASSERT_EQ(::write(fds[1], text.data(), text.size()), static_cast<ssize_t>(text.size()));
  ::close(fds[1]);
  std::vector<std::vector<QueryLine>> batches;
  const int64_t n =
      read_query_batches(fds[0], "pipe", 2, [&](const std::vector<QueryLine>& b) { batches.push_back(b); });
  ::close(fds[0]);
  EXPECT_EQ(n, 6);
  std::vector<QueryLine> all;
  for (const auto& b : batches) {
    EXPECT_LE(b.size(), 2u);
    EXPECT_FALSE(b.empty());
    all.insert(all.end(), b.begin(), b.end());
  }
  ASSERT_EQ(all.size(), 6u);
  EXPECT_EQ(all[2].line, 3);
  EXPECT_EQ(all[2].text, "");
  EXPECT_EQ(all[3].text, "c\r");
  EXPECT_EQ(all[5].line, 6);
  EXPECT_EQ(all[5].text, "e");
  EXPECT_THROW(read_query_batches(-1, "nothing", 2, [](const std::vector<QueryLine>&) {}), std::runtime_error);
}

// n unit vectors around 50 random centres (embeddings cluster; uniform random vectors in 16
// dimensions are the worst case of every ANN method and unlike any embedding).
Index clustered_index(int64_t n, uint32_t seed) {
  Index x = synthetic_index(n, seed);
  std::mt19937 rng(seed + 1);
  std::normal_distribution<double> g;
  std::vector<double> centres(50 * static_cast<size_t>(x.dim));
  for (double& c : centres) c = g(rng);
  for (int64_t i = 0; i < n; ++i) {
    const double* c = centres.data() + static_cast<size_t>(i % 50) * static_cast<size_t>(x.dim);
    std::vector<double> v(static_cast<size_t>(x.dim));
    double sq = 0;
    for (int j = 0; j < x.dim; ++j) {
      v[static_cast<size_t>(j)] = c[j] + 0.4 * g(rng);
      sq += v[static_cast<size_t>(j)] * v[static_cast<size_t>(j)];
    }
    for (int j = 0; j < x.dim; ++j)
      x.vectors[static_cast<size_t>(i * x.dim + j)] = static_cast<float>(v[static_cast<size_t>(j)] / std::sqrt(sq));
  }
  return x;
}

// x as write_index writes it and read_index reads it back (meta vectors_sha256 included).
Index written(const Index& x, const std::string& path) {
  write_index(path, x);
  return read_index(path);
}

#define SKIP_WITHOUT_FAISS()                                                                               \
  do {                                                                                                     \
    if (!ann_built()) GTEST_SKIP() << "this build has no FAISS (libfaiss-dev was not found at configure)"; \
  } while (0)

// Both kinds against the exact search: recall@10 of item queries (each leaving itself out) at
// least 0.95 on clustered vectors, the similarities the exact ones of the rows returned; a
// filtered search ignores the ANN and is exact.
TEST(Ann, BothKindsFindTheExactNeighboursOfClusteredVectors) {
  SKIP_WITHOUT_FAISS();
  const test::TempDir dir;
  const std::string path = dir.file("index.sqlite");
  const Index x = written(clustered_index(3000, 21), path);
  const auto be = make_cpu_backend(1);
  FilteredSearch exact(*be, x, {});
  const auto [rows, queries] = every_nth_item(x, 7);
  const auto want = exact.search(queries.data(), rows, 10);
  for (const AnnKind kind : {AnnKind::Hnsw, AnnKind::Ivf}) {
    AnnOptions o;
    o.kind = kind;
    const AnnSummary s = write_ann(x, path, o);
    EXPECT_EQ(s.path, path + ".ann");
    const std::unique_ptr<AnnSearcher> ann = AnnSearcher::open(x, path);
    ASSERT_TRUE(ann);
    FilteredSearch approx(*be, x, {}, ann.get());
    const auto got = approx.search(queries.data(), rows, 10);
    int64_t found = 0;
    for (size_t q = 0; q < rows.size(); ++q) {
      ASSERT_EQ(got[q].size(), 10u);
      for (const QueryHit& h : got[q]) {
        EXPECT_NE(h.row, rows[q]) << "the query item itself";
        double dot = 0;
        for (int j = 0; j < x.dim; ++j)
          dot += static_cast<double>(x.vector(h.row)[j]) * queries[q * 16 + static_cast<size_t>(j)];
        EXPECT_NEAR(h.similarity, dot, 1e-5);
        for (const QueryHit& w : want[q]) found += w.row == h.row ? 1 : 0;
      }
    }
    const double recall = static_cast<double>(found) / static_cast<double>(10 * rows.size());
    std::printf("%s: recall@10 %.4f against the exact search (%s)\n", kind == AnnKind::Hnsw ? "hnsw" : "ivf", recall,
                ann->describe().c_str());
    EXPECT_GE(recall, 0.95) << ann->describe();
    // Filters search exactly, ANN or not.
    FilteredSearch filtered(*be, x, {{{"style", "keep"}}, ""}, ann.get());
    FilteredSearch filtered_exact(*be, x, {{{"style", "keep"}}, ""});
    const auto a = filtered.search(queries.data(), rows, 10), b = filtered_exact.search(queries.data(), rows, 10);
    for (size_t q = 0; q < rows.size(); ++q) {
      ASSERT_EQ(a[q].size(), b[q].size());
      for (size_t j = 0; j < a[q].size(); ++j) EXPECT_EQ(a[q][j].row, b[q][j].row);
    }
  }
}

// An ANN file is used only beside the vectors it was built from: a re-exported index, a
// damaged file and an index too small for IVF are refused with what to do.
TEST(Ann, StaleOrDamagedFilesAreRefused) {
  SKIP_WITHOUT_FAISS();
  const test::TempDir dir;
  const std::string path = dir.file("index.sqlite");
  const Index x = written(clustered_index(200, 22), path);
  const AnnSummary written_ann = write_ann(x, path, {});
  EXPECT_EQ(written_ann.bytes, static_cast<int64_t>(std::filesystem::file_size(path + ".ann")));
  EXPECT_TRUE(AnnSearcher::open(x, path));
  // FAISS reads its part straight from the file: a file cut short anywhere in it, or with
  // bytes after it, is refused as damaged, never read as a smaller or another index.
  const std::string whole = test::read_bytes(path + ".ann");
  for (const size_t keep : {size_t{10}, size_t{14}, whole.size() / 2, whole.size() - 1}) {
    std::ofstream(path + ".ann", std::ios::binary) << whole.substr(0, keep);
    expect_error([&] { AnnSearcher::open(x, path); }, "not a melgraph ANN file, or damaged");
  }
  std::ofstream(path + ".ann", std::ios::binary) << whole + "x";
  expect_error([&] { AnnSearcher::open(x, path); }, "not a melgraph ANN file, or damaged");
  std::ofstream(path + ".ann", std::ios::binary) << whole;
  EXPECT_TRUE(AnnSearcher::open(x, path));
  // A file from before the header recorded FAISS's length: padding is still found, by where
  // FAISS stops reading. (A cut one is too, by FAISS, which then leaks what it read: not run.)
  uint32_t len = 0;
  std::memcpy(&len, whole.data() + 8, sizeof len);
  nlohmann::json head = nlohmann::json::parse(whole.substr(12, len));
  ASSERT_TRUE(head.contains("index_bytes"));
  EXPECT_EQ(head["index_bytes"].get<size_t>(), whole.size() - 12 - len);
  head.erase("index_bytes");
  const std::string old_head = head.dump();
  const uint32_t old_len = static_cast<uint32_t>(old_head.size());
  const std::string old_file =
      whole.substr(0, 8) + std::string(reinterpret_cast<const char*>(&old_len), 4) + old_head + whole.substr(12 + len);
  std::ofstream(path + ".ann", std::ios::binary) << old_file;
  EXPECT_TRUE(AnnSearcher::open(x, path));
  std::ofstream(path + ".ann", std::ios::binary) << old_file + "x";
  expect_error([&] { AnnSearcher::open(x, path); }, "not a melgraph ANN file, or damaged");
  std::ofstream(path + ".ann", std::ios::binary) << whole;
  // The index exported again with one vector changed.
  Index changed = x;
  std::swap(changed.vectors[0], changed.vectors[1]);
  const Index y = written(changed, path);
  EXPECT_NE(y.meta_value("vectors_sha256"), x.meta_value("vectors_sha256"));
  expect_error([&] { AnnSearcher::open(y, path); }, "was built for other vectors than");
  // Damaged.
  std::ofstream(path + ".ann", std::ios::binary) << "MGANN";
  expect_error([&] { AnnSearcher::open(y, path); }, "not a melgraph ANN file, or damaged");
  std::filesystem::remove(path + ".ann");
  EXPECT_FALSE(AnnSearcher::open(y, path)) << "no file: no ANN";
  // IVF needs 39 items a list, at least one list.
  const Index small = written(clustered_index(20, 23), path);
  AnnOptions ivf;
  ivf.kind = AnnKind::Ivf;
  expect_error([&] { write_ann(small, path, ivf); }, "--ann ivf needs at least 39 items");
  expect_error([&] { parse_ann_kind("pq"); }, "--ann 'pq': expected ivf or hnsw");
}

}  // namespace
}  // namespace mg::index
