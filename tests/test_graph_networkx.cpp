// The preference graph against networkx (tests/reference/ref_graph.py), on random directed graphs
// written as messy files (comments, blank lines, a header or not, comma or tab, self-loops and
// repeated lines, a weight column in one case) with a catalog covering ~70% of the nodes plus a
// few items without edges. The script runs once for the whole binary (importing networkx and
// computing ~90k BFS pairs takes about a second) and writes the files and expected.json; every
// comparison here is exact (integers, and weight sums of multiples of 1/4, which are exact).
//
// Checked per case, through the project's loaders (load_edge_list, load_catalog):
//   node/edge counts and the dropped self-loops and duplicates; every node's in-degree (and
//   weighted in-degree); select_top_k (ranking and tie order, plain and weighted) and
//   select_min_in_degree; PreferenceGraph::bfs among the selected items, undirected and directed,
//   no depth limit; and TripletTables (distance(), num_positives, batch_distance_matrix) against
//   the networkx distances capped at neg_hops.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "graph/catalog.h"
#include "graph/edge_list_io.h"
#include "graph/preference_graph.h"
#include "graph/triplet_tables.h"
#include "tests/reference_harness.h"
#include "tests/test_support.h"

namespace mg::graph {
namespace {

using nlohmann::json;

class GraphNetworkx : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!test::networkx_unavailable_reason().empty()) return;
    dir_ = new test::TempDir();
    std::string out;
    const std::string cmd = test::python_exe() + " " + test::reference_script("ref_graph.py") + " " +
                            dir_->path.string();
    script_rc_ = test::run_command(cmd, &out);
    script_out_ = cmd + "\n" + out;
    if (script_rc_ != 0) return;
    std::ifstream f(dir_->file("expected.json"));
    expected_ = new json(json::parse(f));
  }
  static void TearDownTestSuite() {
    delete expected_;
    expected_ = nullptr;
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    MG_REQUIRE_NETWORKX();
    ASSERT_EQ(script_rc_, 0) << "reference script failed: " << script_out_;
    ASSERT_NE(expected_, nullptr);
    ASSERT_EQ((*expected_)["cases"].size(), 3u);
  }
  static const json& cases() { return (*expected_)["cases"]; }

  static inline test::TempDir* dir_ = nullptr;
  static inline json* expected_ = nullptr;
  static inline int script_rc_ = -1;
  static inline std::string script_out_;
};

std::vector<std::string> ids_of(const PreferenceGraph& g, const Selection& s) {
  std::vector<std::string> out;
  for (int32_t v : s.nodes) out.push_back(g.id(v));
  return out;
}

// Loads one case's files the way the CLI does (delimiter and header detected).
struct Loaded {
  EdgeList edges;
  Catalog catalog;
  AudioCoverage coverage;
};
Loaded load_case(const json& c) {
  Loaded l;
  l.edges = load_edge_list(c["edges"].get<std::string>());
  l.catalog = load_catalog(c["catalog"].get<std::string>());
  l.coverage = audio_coverage(l.edges, l.catalog);
  return l;
}

TEST_F(GraphNetworkx, CountsAndInDegree) {
  for (const json& c : cases()) {
    SCOPED_TRACE(c["name"].get<std::string>());
    const Loaded l = load_case(c);
    const PreferenceGraph g(l.edges);
    EXPECT_EQ(g.num_nodes(), c["num_nodes"].get<int64_t>());
    EXPECT_EQ(g.num_edges(), c["num_edges"].get<int64_t>());
    const int64_t lines = c["num_lines_with_edges"].get<int64_t>();
    const int64_t loops = c["self_loops"].get<int64_t>();
    EXPECT_EQ(l.edges.stats.edges_read, lines);
    EXPECT_EQ(l.edges.stats.self_loops, loops);
    EXPECT_EQ(l.edges.stats.duplicates, lines - loops - c["num_edges"].get<int64_t>());
    EXPECT_EQ(l.edges.stats.delimiter, c["delimiter"].get<std::string>()[0]);
    EXPECT_EQ(l.edges.stats.bad_lines, 0);

    const json& indeg = c["in_degree"];
    ASSERT_EQ(indeg.size(), static_cast<size_t>(g.num_nodes()));
    int mismatches = 0;
    for (const auto& [id, d] : indeg.items()) {
      const auto v = g.find(id);
      ASSERT_TRUE(v.has_value()) << id << " missing from the graph";
      const int32_t got = g.in_degree()[static_cast<size_t>(*v)];
      if (got != d.get<int32_t>() && ++mismatches <= 5) ADD_FAILURE() << id << ": in-degree " << got << ", networkx " << d;
    }
    EXPECT_EQ(mismatches, 0);
    if (c["weighted"].get<bool>()) {
      for (const auto& [id, w] : c["w_in_degree"].items())
        ASSERT_EQ(g.weighted_in_degree()[static_cast<size_t>(*g.find(id))], w.get<double>()) << id;
    }

    // Catalog: every catalog id is either a graph node with audio or counted as not in the graph.
    int64_t with_audio = 0;
    for (bool b : l.coverage.has_audio) with_audio += b ? 1 : 0;
    EXPECT_EQ(with_audio + l.coverage.items_not_in_graph, static_cast<int64_t>(l.catalog.items.size()));
    EXPECT_EQ(with_audio + l.coverage.nodes_without_audio, g.num_nodes());
  }
}

TEST_F(GraphNetworkx, Selection) {
  for (const json& c : cases()) {
    SCOPED_TRACE(c["name"].get<std::string>());
    const Loaded l = load_case(c);
    const PreferenceGraph g(l.edges);
    const int64_t K = c["K"].get<int64_t>();
    const Selection top = select_top_k(g, l.coverage.has_audio, K, false);
    EXPECT_EQ(ids_of(g, top), c["selected"].get<std::vector<std::string>>());
    for (int32_t i = 0; i < top.size(); ++i) {
      EXPECT_EQ(top.score[static_cast<size_t>(i)], g.in_degree()[static_cast<size_t>(top.nodes[static_cast<size_t>(i)])]);
      EXPECT_EQ(top.item_of_node[static_cast<size_t>(top.nodes[static_cast<size_t>(i)])], i);
    }
    const Selection min = select_min_in_degree(g, l.coverage.has_audio, c["min_in_degree"].get<double>(), false);
    EXPECT_EQ(ids_of(g, min), c["selected_min"].get<std::vector<std::string>>());
    if (c["weighted"].get<bool>()) {
      const Selection w = select_top_k(g, l.coverage.has_audio, K, true);
      EXPECT_EQ(ids_of(g, w), c["selected_weighted"].get<std::vector<std::string>>());
      // The weighted and plain rankings must differ, or this case would not test the option.
      EXPECT_NE(ids_of(g, w), ids_of(g, top));
    }
  }
}

// K x K hop distances among the selected items by PreferenceGraph::bfs (no depth limit).
std::vector<int32_t> bfs_matrix(const PreferenceGraph& g, const Selection& s, bool directed) {
  const size_t K = static_cast<size_t>(s.size());
  std::vector<int32_t> out(K * K), dist, scratch;
  for (size_t a = 0; a < K; ++a) {
    g.bfs(s.nodes[a], directed, -1, dist, scratch);
    for (size_t b = 0; b < K; ++b) out[a * K + b] = dist[static_cast<size_t>(s.nodes[b])];
  }
  return out;
}

void expect_same_matrix(const std::vector<int32_t>& got, const std::vector<int32_t>& want,
                        const std::vector<std::string>& ids, const char* what) {
  ASSERT_EQ(got.size(), want.size());
  const size_t K = ids.size();
  int64_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i] == want[i]) continue;
    if (++bad <= 5)
      ADD_FAILURE() << what << " distance " << ids[i / K] << " -> " << ids[i % K] << ": " << got[i] << ", networkx "
                    << want[i];
  }
  EXPECT_EQ(bad, 0) << what;
}

TEST_F(GraphNetworkx, BfsDistancesAmongSelected) {
  for (const json& c : cases()) {
    SCOPED_TRACE(c["name"].get<std::string>());
    const Loaded l = load_case(c);
    const PreferenceGraph g(l.edges);
    const Selection s = select_top_k(g, l.coverage.has_audio, c["K"].get<int64_t>(), false);
    const auto ids = ids_of(g, s);
    const auto und = c["dist_undirected"].get<std::vector<int32_t>>();
    const auto dir = c["dist_directed"].get<std::vector<int32_t>>();
    expect_same_matrix(bfs_matrix(g, s, false), und, ids, "undirected");
    expect_same_matrix(bfs_matrix(g, s, true), dir, ids, "directed");
    // The cases must exercise unreachable pairs and long paths, or the comparison is weak.
    EXPECT_GT(std::count(dir.begin(), dir.end(), -1), 0);
    EXPECT_GT(*std::max_element(dir.begin(), dir.end()), 4);
  }
}

// The tables keep exact distances below neg_hops and report neg_hops for everything farther or
// unreachable; positives are the items at 1..pos_hops.
TEST_F(GraphNetworkx, TripletTablesMatchCappedDistances) {
  for (const json& c : cases()) {
    for (const bool directed : {false, true}) {
      for (const auto& [pos, neg] : {std::pair{1, 3}, std::pair{2, 4}}) {
        SCOPED_TRACE(c["name"].get<std::string>() + (directed ? " directed" : " undirected") + " pos " +
                     std::to_string(pos) + " neg " + std::to_string(neg));
        const Loaded l = load_case(c);
        const PreferenceGraph g(l.edges);
        const Selection s = select_top_k(g, l.coverage.has_audio, c["K"].get<int64_t>(), false);
        DistanceOptions opt;
        opt.pos_hops = pos;
        opt.neg_hops = neg;
        opt.directed = directed;
        opt.threads = 2;
        const TripletTables t = TripletTables::build(g, s, opt);
        const auto want = c[directed ? "dist_directed" : "dist_undirected"].get<std::vector<int32_t>>();
        const int32_t K = s.size();
        ASSERT_EQ(t.n_items(), K);
        std::vector<int32_t> capped(want.size());
        for (size_t i = 0; i < want.size(); ++i) capped[i] = (want[i] < 0 || want[i] >= neg) ? neg : want[i];
        std::vector<int32_t> got(want.size());
        int32_t with_pos = 0;
        for (int32_t a = 0; a < K; ++a) {
          int32_t npos = 0;
          for (int32_t b = 0; b < K; ++b) {
            const size_t k = static_cast<size_t>(a) * static_cast<size_t>(K) + static_cast<size_t>(b);
            got[k] = t.distance(a, b);
            if (a != b && want[k] >= 1 && want[k] <= pos) ++npos;
          }
          EXPECT_EQ(t.num_positives(a), npos) << "anchor " << ids_of(g, s)[static_cast<size_t>(a)];
          with_pos += npos > 0 ? 1 : 0;
        }
        expect_same_matrix(got, capped, ids_of(g, s), "tables");
        EXPECT_EQ(t.anchors_with_positive(), with_pos);

        std::vector<int32_t> batch(static_cast<size_t>(K));
        for (int32_t i = 0; i < K; ++i) batch[static_cast<size_t>(i)] = (i * 7 + 3) % K;  // a permutation (K % 7 != 0)
        const auto m = t.batch_distance_matrix(batch);
        for (size_t i = 0; i < batch.size(); ++i)
          for (size_t j = 0; j < batch.size(); ++j)
            ASSERT_EQ(m[i * batch.size() + j],
                      capped[static_cast<size_t>(batch[i]) * static_cast<size_t>(K) + static_cast<size_t>(batch[j])]);
      }
    }
  }
}

}  // namespace
}  // namespace mg::graph
