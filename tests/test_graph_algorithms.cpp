// PreferenceGraph (CSR storage, degrees, components, BFS), selection, triplet tables, splits.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <queue>
#include <random>
#include <set>
#include <string>

#include "engine/io/safetensors.h"
#include "graph/graph_report.h"
#include "graph/preference_graph.h"
#include "graph/triplet_tables.h"
#include "test_support.h"

namespace mg::graph {
namespace {

// Appending instead of const char* + std::string sidesteps a GCC 12 -Wrestrict false positive.
std::string name(const char* prefix, int i) {
  std::string s = prefix;
  s += std::to_string(i);
  return s;
}

EdgeList make_edges(const std::vector<std::pair<std::string, std::string>>& edges) {
  EdgeList el;
  for (const auto& [s, d] : edges) el.add_edge(s, d);
  return el;
}

int32_t node(const PreferenceGraph& g, const std::string& id) {
  auto v = g.find(id);
  EXPECT_TRUE(v.has_value()) << id;
  return v.value_or(-1);
}

std::vector<int32_t> fresh_bfs(const PreferenceGraph& g, const std::string& src, bool directed, int max_depth = -1) {
  std::vector<int32_t> dist, scratch;
  g.bfs(node(g, src), directed, max_depth, dist, scratch);
  return dist;
}

// Straightforward queue BFS over adjacency lists built from the edge list: the oracle.
std::vector<int32_t> naive_bfs(const EdgeList& el, int32_t src, bool directed, int max_depth) {
  std::vector<std::vector<int32_t>> adj(static_cast<size_t>(el.num_nodes()));
  for (size_t e = 0; e < el.src.size(); ++e) {
    adj[static_cast<size_t>(el.src[e])].push_back(el.dst[e]);
    if (!directed) adj[static_cast<size_t>(el.dst[e])].push_back(el.src[e]);
  }
  std::vector<int32_t> dist(adj.size(), -1);
  std::queue<int32_t> q;
  dist[static_cast<size_t>(src)] = 0;
  q.push(src);
  while (!q.empty()) {
    const int32_t u = q.front();
    q.pop();
    if (max_depth >= 0 && dist[static_cast<size_t>(u)] >= max_depth) continue;
    for (int32_t w : adj[static_cast<size_t>(u)])
      if (dist[static_cast<size_t>(w)] < 0) {
        dist[static_cast<size_t>(w)] = dist[static_cast<size_t>(u)] + 1;
        q.push(w);
      }
  }
  return dist;
}

// Random directed graph with a skewed in-degree (targets drawn from a squared uniform), ids
// "n<number>" in shuffled order, so node index, id order and degree order all differ.
EdgeList random_graph(int n, int m, unsigned seed, bool weights = false) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<int> label(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) label[static_cast<size_t>(i)] = i;
  std::shuffle(label.begin(), label.end(), rng);
  EdgeList el;
  for (int e = 0; e < m; ++e) {
    const int s = static_cast<int>(u(rng) * n);
    const int d = static_cast<int>(u(rng) * u(rng) * n);
    el.add_edge(name("n", label[static_cast<size_t>(s)]), name("n", label[static_cast<size_t>(d)]),
                static_cast<float>(0.25 + u(rng)), weights);
  }
  return el;
}

std::vector<bool> all_audio(const PreferenceGraph& g) { return std::vector<bool>(static_cast<size_t>(g.num_nodes()), true); }

// ---------------------------------------------------------------- graph and BFS

TEST(PreferenceGraph, PathDistancesDirectedAndUndirected) {
  const EdgeList el = make_edges({{"a", "b"}, {"b", "c"}, {"c", "d"}, {"d", "e"}});
  const PreferenceGraph g(el);
  EXPECT_EQ(g.num_nodes(), 5);
  EXPECT_EQ(g.num_edges(), 4);
  EXPECT_EQ(g.id(node(g, "c")), "c");
  EXPECT_FALSE(g.find("zz").has_value());
  auto at = [&](const std::vector<int32_t>& d, const std::string& id) { return d[static_cast<size_t>(node(g, id))]; };
  const auto und_c = fresh_bfs(g, "c", false);
  EXPECT_EQ(at(und_c, "a"), 2);
  EXPECT_EQ(at(und_c, "b"), 1);
  EXPECT_EQ(at(und_c, "c"), 0);
  EXPECT_EQ(at(und_c, "e"), 2);
  const auto dir_c = fresh_bfs(g, "c", true);
  EXPECT_EQ(at(dir_c, "a"), -1);  // against edge direction: unreachable
  EXPECT_EQ(at(dir_c, "b"), -1);
  EXPECT_EQ(at(dir_c, "d"), 1);
  EXPECT_EQ(at(dir_c, "e"), 2);
  const auto dir_e = fresh_bfs(g, "e", true);
  EXPECT_EQ(std::count(dir_e.begin(), dir_e.end(), -1), 4);
  // max_depth cuts the search: a reaches c at 2 but not d.
  const auto cut = fresh_bfs(g, "a", false, 2);
  EXPECT_EQ(at(cut, "c"), 2);
  EXPECT_EQ(at(cut, "d"), -1);
  EXPECT_EQ(at(cut, "e"), -1);
  const auto zero = fresh_bfs(g, "a", false, 0);
  EXPECT_EQ(std::count(zero.begin(), zero.end(), -1), 4);
}

TEST(PreferenceGraph, StarAndTwoComponents) {
  const EdgeList el = make_edges({{"l1", "h"}, {"l2", "h"}, {"l3", "h"}, {"l4", "h"}, {"p", "q"}, {"q", "r"}});
  const PreferenceGraph g(el);
  EXPECT_EQ(g.num_weak_components(), 2);
  EXPECT_EQ(g.in_degree()[static_cast<size_t>(node(g, "h"))], 4);
  EXPECT_EQ(g.in_degree()[static_cast<size_t>(node(g, "l1"))], 0);
  EXPECT_DOUBLE_EQ(g.weighted_in_degree()[static_cast<size_t>(node(g, "h"))], 4.0);
  const auto d = fresh_bfs(g, "l1", false);
  EXPECT_EQ(d[static_cast<size_t>(node(g, "h"))], 1);
  EXPECT_EQ(d[static_cast<size_t>(node(g, "l4"))], 2);
  EXPECT_EQ(d[static_cast<size_t>(node(g, "p"))], -1);  // other component
  EXPECT_EQ(d[static_cast<size_t>(node(g, "r"))], -1);
  const auto dh = fresh_bfs(g, "h", true);  // the hub recommends nothing
  EXPECT_EQ(std::count(dh.begin(), dh.end(), -1), g.num_nodes() - 1);
}

// graph stats' in-degree summary against a sort done here: nearest-rank percentiles and bins
// [0], [1], [2, 3], [4, 7], ... that count every node once.
TEST(GraphReport, InDegreeSummaryMatchesASortAndBinsEveryNode) {
  const EdgeList el = random_graph(300, 1500, 17);
  const PreferenceGraph g(el);
  const graph::InDegreeSummary s = graph::summarize_in_degree(g);
  std::vector<int32_t> deg = g.in_degree();
  std::sort(deg.begin(), deg.end());
  const auto rank = [&](double p) { return deg[static_cast<size_t>(std::ceil(p * static_cast<double>(deg.size())) - 1)]; };
  EXPECT_EQ(s.min, deg.front());
  EXPECT_EQ(s.max, deg.back());
  EXPECT_EQ(s.median, rank(0.5));
  EXPECT_EQ(s.p90, rank(0.9));
  EXPECT_EQ(s.p99, rank(0.99));
  int64_t total = 0;
  for (const auto& b : s.bins) {
    total += b.count;
    EXPECT_EQ(b.count, std::count_if(deg.begin(), deg.end(), [&](int32_t d) { return d >= b.lo && d <= b.hi; }))
        << b.lo << ".." << b.hi;
  }
  EXPECT_EQ(total, g.num_nodes());
  ASSERT_GE(s.bins.size(), 2u);
  EXPECT_EQ(s.bins[1].lo, 1);
  EXPECT_EQ(s.bins[1].hi, 1);
  EXPECT_GE(s.bins.back().hi, s.max);
}

TEST(PreferenceGraph, SelfLoopOnlyNodeIsItsOwnComponent) {
  const EdgeList el = make_edges({{"a", "b"}, {"c", "c"}});
  const PreferenceGraph g(el);
  EXPECT_EQ(g.num_nodes(), 3);
  EXPECT_EQ(g.num_edges(), 1);
  EXPECT_EQ(g.num_weak_components(), 2);
}

TEST(PreferenceGraph, ReusedWorkspaceMatchesNaiveBfs) {
  const EdgeList el = random_graph(311, 900, 7);
  const PreferenceGraph g(el);
  for (bool directed : {false, true})
    for (int max_depth : {-1, 2}) {
      std::vector<int32_t> dist, scratch;  // shared by all sources: exercises the partial reset
      for (int32_t s = 0; s < g.num_nodes(); ++s) {
        g.bfs(s, directed, max_depth, dist, scratch);
        ASSERT_EQ(dist, naive_bfs(el, s, directed, max_depth)) << "source " << s << " directed " << directed;
        // scratch lists exactly the reached nodes, in non-decreasing distance.
        ASSERT_EQ(static_cast<int64_t>(scratch.size()), std::count_if(dist.begin(), dist.end(), [](int32_t x) { return x >= 0; }));
        for (size_t i = 1; i < scratch.size(); ++i)
          ASSERT_LE(dist[static_cast<size_t>(scratch[i - 1])], dist[static_cast<size_t>(scratch[i])]);
      }
    }
  std::vector<int32_t> dist, scratch;
  EXPECT_THROW(g.bfs(g.num_nodes(), false, -1, dist, scratch), std::out_of_range);
}

TEST(PreferenceGraph, WeightedInDegreeSumsWeights) {
  EdgeList el;
  el.add_edge("a", "c", 0.5f, true);
  el.add_edge("b", "c", 2.0f, true);
  el.add_edge("a", "b", 1.5f, true);
  el.add_edge("a", "c", 9.0f, true);  // duplicate: dropped, first weight kept
  const PreferenceGraph g(el);
  EXPECT_DOUBLE_EQ(g.weighted_in_degree()[static_cast<size_t>(node(g, "c"))], 2.5);
  EXPECT_DOUBLE_EQ(g.weighted_in_degree()[static_cast<size_t>(node(g, "b"))], 1.5);
  EXPECT_EQ(g.in_degree()[static_cast<size_t>(node(g, "c"))], 2);
}

// ---------------------------------------------------------------- selection

TEST(Selection, TiesBrokenByIdBytewise) {
  // "B", "a", "c" all have in-degree 2; first appearance order is c, a, B. Byte order: B < a < c.
  const EdgeList el = make_edges({{"x", "c"}, {"y", "c"}, {"x", "a"}, {"y", "a"}, {"x", "B"}, {"y", "B"}, {"c", "y"}});
  const PreferenceGraph g(el);
  const Selection s = select_top_k(g, all_audio(g), 4, false);
  ASSERT_EQ(s.size(), 4);
  EXPECT_EQ(g.id(s.nodes[0]), "B");
  EXPECT_EQ(g.id(s.nodes[1]), "a");
  EXPECT_EQ(g.id(s.nodes[2]), "c");
  EXPECT_EQ(g.id(s.nodes[3]), "y");
  EXPECT_EQ(s.score, (std::vector<double>{2, 2, 2, 1}));
  EXPECT_EQ(s.item_of_node[static_cast<size_t>(node(g, "a"))], 1);
  EXPECT_EQ(s.item_of_node[static_cast<size_t>(node(g, "x"))], -1);
}

TEST(Selection, OnlyItemsWithAudioAndWeighted) {
  EdgeList el;
  el.add_edge("u", "p", 1.0f, true);
  el.add_edge("v", "p", 1.0f, true);
  el.add_edge("u", "q", 5.0f, true);
  el.add_edge("v", "r", 1.0f, true);
  const PreferenceGraph g(el);
  std::vector<bool> audio = all_audio(g);
  const Selection unweighted = select_top_k(g, audio, 2, false);
  EXPECT_EQ(g.id(unweighted.nodes[0]), "p");  // in-degree 2
  const Selection weighted = select_top_k(g, audio, 2, true);
  EXPECT_EQ(g.id(weighted.nodes[0]), "q");  // weight 5 beats 1 + 1
  EXPECT_DOUBLE_EQ(weighted.score[0], 5.0);
  audio[static_cast<size_t>(node(g, "p"))] = false;
  const Selection no_p = select_top_k(g, audio, 2, false);
  EXPECT_EQ(g.id(no_p.nodes[0]), "q");  // q, r tie at 1: q < r
  EXPECT_EQ(g.id(no_p.nodes[1]), "r");
  const Selection thr = select_min_in_degree(g, all_audio(g), 1.0, false);
  EXPECT_EQ(thr.size(), 3);  // p, q, r; u and v have in-degree 0
  EXPECT_EQ(g.id(thr.nodes[0]), "p");
  EXPECT_THROW(select_min_in_degree(g, all_audio(g), 3.0, false), std::invalid_argument);
}

TEST(Selection, BadKGivesClearErrors) {
  const EdgeList el = make_edges({{"a", "b"}, {"b", "c"}});
  const PreferenceGraph g(el);
  std::vector<bool> audio = all_audio(g);
  audio[0] = false;
  try {
    select_top_k(g, audio, 7, false);
    FAIL() << "K > items with audio must throw";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find('7'), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find('2'), std::string::npos) << e.what();
  }
  EXPECT_THROW(select_top_k(g, audio, 0, false), std::invalid_argument);
  EXPECT_THROW(select_top_k(g, audio, -3, false), std::invalid_argument);
  EXPECT_THROW(select_top_k(g, std::vector<bool>(2, true), 1, false), std::invalid_argument);
}

TEST(Selection, TopKMatchesFullSort) {
  const EdgeList el = random_graph(500, 2000, 11, true);
  const PreferenceGraph g(el);
  for (bool weighted : {false, true}) {
    const Selection all = select_min_in_degree(g, all_audio(g), -1.0, weighted);
    ASSERT_EQ(all.size(), g.num_nodes());
    for (size_t i = 1; i < all.nodes.size(); ++i) {
      const bool ordered = all.score[i - 1] > all.score[i] ||
                           (all.score[i - 1] == all.score[i] && g.id(all.nodes[i - 1]) < g.id(all.nodes[i]));
      ASSERT_TRUE(ordered) << i;
    }
    const Selection top = select_top_k(g, all_audio(g), 37, weighted);
    EXPECT_EQ(top.nodes, std::vector<int32_t>(all.nodes.begin(), all.nodes.begin() + 37));
  }
}

// ---------------------------------------------------------------- triplet tables

TEST(TripletTables, NearSetsOnPath) {
  // a-b-c-d-e-f, all selected; neg_hops 3: near radius 2.
  const EdgeList el = make_edges({{"a", "b"}, {"b", "c"}, {"c", "d"}, {"d", "e"}, {"e", "f"}});
  const PreferenceGraph g(el);
  const Selection s = select_top_k(g, all_audio(g), 6, false);
  const TripletTables t = TripletTables::build(g, s, DistanceOptions{});
  auto it = [&](const std::string& id) { return s.item_of_node[static_cast<size_t>(node(g, id))]; };
  EXPECT_EQ(t.n_items(), 6);
  EXPECT_EQ(t.distance(it("a"), it("a")), 0);
  EXPECT_EQ(t.distance(it("a"), it("b")), 1);
  EXPECT_EQ(t.distance(it("a"), it("c")), 2);
  EXPECT_EQ(t.distance(it("a"), it("d")), 3);  // capped: far
  EXPECT_EQ(t.distance(it("a"), it("f")), 3);
  EXPECT_EQ(t.distance(it("d"), it("b")), 2);
  EXPECT_EQ(t.near(it("c")).size(), 4u);  // a, b, d, e
  const auto nd = t.near_distance(it("c"));
  EXPECT_TRUE(std::is_sorted(nd.begin(), nd.end()));
  EXPECT_EQ(t.num_positives(it("c")), 2);
  EXPECT_EQ(t.anchors_with_positive(), 6);
  EXPECT_EQ(t.num_negatives(it("a")), 3);  // d, e, f
  EXPECT_EQ(t.memory_bytes(), 7 * 8 + 6 * 4 + static_cast<size_t>(t.total_near()) * 5);

  const std::vector<int32_t> batch{it("a"), it("c"), it("f"), it("b")};
  const std::vector<int32_t> m = t.batch_distance_matrix(batch);
  EXPECT_EQ(m, (std::vector<int32_t>{0, 2, 3, 1,  //
                                     2, 0, 3, 1,  //
                                     3, 3, 0, 3,  //
                                     1, 1, 3, 0}));
  EXPECT_THROW(t.batch_distance_matrix({0, 6}), std::out_of_range);

  // Directed: distances follow a -> b -> ...; nothing reaches a.
  DistanceOptions dir;
  dir.directed = true;
  const TripletTables td = TripletTables::build(g, s, dir);
  EXPECT_EQ(td.distance(it("a"), it("c")), 2);
  EXPECT_EQ(td.distance(it("c"), it("a")), 3);
  EXPECT_FALSE(td.has_positive(it("f")));
  EXPECT_EQ(td.anchors_without_positive(), 1);

  // max_depth 1: distance-2 items become far.
  DistanceOptions shallow;
  shallow.max_depth = 1;
  const TripletTables ts = TripletTables::build(g, s, shallow);
  EXPECT_EQ(ts.distance(it("a"), it("c")), 3);
  EXPECT_EQ(ts.distance(it("a"), it("b")), 1);
}

TEST(TripletTables, PathsThroughItemsWithoutAudio) {
  // x and y have no audio: a's only neighbour is x, so b (via x) is at distance 2 -> no positive.
  const EdgeList el = make_edges({{"a", "x"}, {"x", "b"}, {"b", "c"}, {"c", "y"}, {"y", "d"}, {"p", "q"}});
  const PreferenceGraph g(el);
  std::vector<bool> audio = all_audio(g);
  audio[static_cast<size_t>(node(g, "x"))] = false;
  audio[static_cast<size_t>(node(g, "y"))] = false;
  const Selection s = select_min_in_degree(g, audio, -1.0, false);  // a, b, c, d, p, q
  ASSERT_EQ(s.size(), 6);
  const TripletTables t = TripletTables::build(g, s, DistanceOptions{});
  auto it = [&](const std::string& id) { return s.item_of_node[static_cast<size_t>(node(g, id))]; };
  EXPECT_FALSE(t.has_positive(it("a")));
  EXPECT_EQ(t.distance(it("a"), it("b")), 2);
  EXPECT_TRUE(t.has_positive(it("b")));
  EXPECT_EQ(t.distance(it("c"), it("d")), 2);
  EXPECT_EQ(t.distance(it("p"), it("a")), 3);  // unreachable
  EXPECT_EQ(t.anchors_with_positive(), 4);     // b, c, p, q
  EXPECT_EQ(t.anchors_without_positive(), 2);  // a, d
  EXPECT_THROW(t.sample(it("a"), 1, 0), std::invalid_argument);
}

TEST(TripletTables, MatchesNaiveBfsAndThreadCountIndependent) {
  const EdgeList el = random_graph(700, 1500, 3);
  const PreferenceGraph g(el);
  const Selection s = select_top_k(g, all_audio(g), 123, false);
  for (bool directed : {false, true}) {
    DistanceOptions o;
    o.neg_hops = 4;
    o.pos_hops = 2;
    o.directed = directed;
    o.threads = 1;
    const TripletTables t1 = TripletTables::build(g, s, o);
    o.threads = 2;
    const TripletTables t2 = TripletTables::build(g, s, o);
    for (int32_t a = 0; a < s.size(); ++a) {
      ASSERT_TRUE(std::ranges::equal(t1.near(a), t2.near(a)));
      ASSERT_TRUE(std::ranges::equal(t1.near_distance(a), t2.near_distance(a)));
      const auto ref = naive_bfs(el, s.nodes[static_cast<size_t>(a)], directed, -1);
      int32_t positives = 0;
      for (int32_t b = 0; b < s.size(); ++b) {
        const int32_t d = ref[static_cast<size_t>(s.nodes[static_cast<size_t>(b)])];
        const int32_t expect = (d < 0 || d >= 4) ? 4 : d;
        ASSERT_EQ(t1.distance(a, b), expect) << a << " -> " << b << " directed " << directed;
        if (expect >= 1 && expect <= 2) ++positives;
      }
      ASSERT_EQ(t1.num_positives(a), positives);
    }
    EXPECT_GT(t1.anchors_with_positive(), 0);
    EXPECT_GT(t1.total_near(), 0);
  }
}

TEST(TripletTables, SampleIsValidReproducibleAndVaried) {
  const EdgeList el = random_graph(400, 1200, 5);
  const PreferenceGraph g(el);
  const Selection s = select_top_k(g, all_audio(g), 90, false);
  const TripletTables t = TripletTables::build(g, s, DistanceOptions{});
  int checked = 0;
  for (int32_t a = 0; a < t.n_items(); ++a) {
    if (!t.has_positive(a) || t.num_negatives(a) == 0) continue;
    std::set<int32_t> negs, poss;
    for (uint64_t draw = 0; draw < 40; ++draw) {
      const auto [p, n] = t.sample(a, 1234, draw);
      ASSERT_GE(t.distance(a, p), 1);
      ASSERT_LE(t.distance(a, p), t.pos_hops());
      ASSERT_NE(n, a);
      ASSERT_EQ(t.distance(a, n), t.neg_hops());  // never in the near set
      ASSERT_EQ(t.sample(a, 1234, draw), std::make_pair(p, n));
      negs.insert(n);
      poss.insert(p);
    }
    if (t.num_negatives(a) >= 10) {
      EXPECT_GT(negs.size(), 5u) << a;
    }
    if (t.num_positives(a) >= 3) {
      EXPECT_GT(poss.size(), 1u) << a;
    }
    ++checked;
  }
  EXPECT_GT(checked, 20);
  // Another seed gives another sequence.
  int differ = 0;
  for (uint64_t draw = 0; draw < 20; ++draw)
    for (int32_t a = 0; a < t.n_items(); ++a)
      if (t.has_positive(a) && t.num_negatives(a) > 5 && t.sample(a, 1, draw) != t.sample(a, 2, draw)) ++differ;
  EXPECT_GT(differ, 0);
}

TEST(TripletTables, NegativeFallbackScanAndNoNegativeError) {
  // A star of 600 selected leaves around a selected hub: a leaf's near set holds the hub and
  // every other leaf, so rejection fails most of the time (600/602 per attempt) and the scan
  // must find the two far items p, q.
  EdgeList el;
  for (int i = 0; i < 600; ++i) el.add_edge(name("leaf", i), "hub");
  el.add_edge("p", "q");
  const PreferenceGraph g(el);
  const Selection s = select_top_k(g, all_audio(g), g.num_nodes(), false);
  const TripletTables t = TripletTables::build(g, s, DistanceOptions{});
  const int32_t leaf = s.item_of_node[static_cast<size_t>(node(g, "leaf17"))];
  const int32_t p = s.item_of_node[static_cast<size_t>(node(g, "p"))];
  const int32_t q = s.item_of_node[static_cast<size_t>(node(g, "q"))];
  ASSERT_EQ(t.num_negatives(leaf), 2);
  std::set<int32_t> negs;
  for (uint64_t draw = 0; draw < 200; ++draw) {
    const auto [pos, neg] = t.sample(leaf, 99, draw);
    EXPECT_EQ(t.distance(leaf, pos), 1);
    EXPECT_TRUE(neg == p || neg == q) << neg;
    negs.insert(neg);
  }
  EXPECT_EQ(negs.size(), 2u);

  // Without p -> q every item is near every leaf: no negative exists.
  EdgeList star;
  for (int i = 0; i < 30; ++i) star.add_edge(name("leaf", i), "hub");
  const PreferenceGraph gs(star);
  const Selection ss = select_top_k(gs, all_audio(gs), gs.num_nodes(), false);
  const TripletTables ts = TripletTables::build(gs, ss, DistanceOptions{});
  EXPECT_THROW(ts.sample(1, 5, 0), std::invalid_argument);
}

TEST(TripletTables, BadOptions) {
  const EdgeList el = make_edges({{"a", "b"}});
  const PreferenceGraph g(el);
  const Selection s = select_top_k(g, all_audio(g), 2, false);
  DistanceOptions o;
  o.neg_hops = 1;
  EXPECT_THROW(TripletTables::build(g, s, o), std::invalid_argument);
  o = DistanceOptions{};
  o.pos_hops = 0;
  EXPECT_THROW(TripletTables::build(g, s, o), std::invalid_argument);
  o = DistanceOptions{};
  o.neg_hops = 300;
  EXPECT_THROW(TripletTables::build(g, s, o), std::invalid_argument);
  o = DistanceOptions{};
  o.max_depth = 0;
  EXPECT_THROW(TripletTables::build(g, s, o), std::invalid_argument);
}

TEST(TripletTables, SaveLoadRoundTripAndCorruption) {
  const EdgeList el = random_graph(300, 800, 9);
  const PreferenceGraph g(el);
  const Selection s = select_top_k(g, all_audio(g), 71, false);
  DistanceOptions o;
  o.directed = true;
  o.neg_hops = 4;
  const TripletTables t = TripletTables::build(g, s, o);
  mg::test::TempDir dir;
  const std::string path = dir.file("tables.safetensors");
  t.save(path);
  const TripletTables r = TripletTables::load(path);
  EXPECT_EQ(r.n_items(), t.n_items());
  EXPECT_EQ(r.pos_hops(), t.pos_hops());
  EXPECT_EQ(r.neg_hops(), 4);
  EXPECT_EQ(r.max_depth(), 3);
  EXPECT_TRUE(r.directed());
  EXPECT_EQ(r.anchors_with_positive(), t.anchors_with_positive());
  for (int32_t a = 0; a < t.n_items(); ++a) {
    ASSERT_TRUE(std::ranges::equal(r.near(a), t.near(a)));
    ASSERT_TRUE(std::ranges::equal(r.near_distance(a), t.near_distance(a)));
    if (t.has_positive(a) && t.num_negatives(a) > 0) {
      ASSERT_EQ(r.sample(a, 3, 4), t.sample(a, 3, 4));
    }
  }

  // Empty near sets survive too.
  const EdgeList two = make_edges({{"a", "b"}, {"c", "d"}});
  const PreferenceGraph g2(two);
  const Selection s2 = select_top_k(g2, std::vector<bool>{true, false, true, false}, 2, false);
  const TripletTables t2 = TripletTables::build(g2, s2, DistanceOptions{});
  t2.save(dir.file("empty.safetensors"));
  EXPECT_EQ(TripletTables::load(dir.file("empty.safetensors")).total_near(), 0);

  // Truncated file.
  {
    std::ofstream out(dir.file("bad.safetensors"), std::ios::binary);
    out << "\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":";
  }
  EXPECT_THROW(TripletTables::load(dir.file("bad.safetensors")), GraphInputError);
  EXPECT_THROW(TripletTables::load(dir.file("missing.safetensors")), GraphInputError);

  // A valid safetensors file that is not a table, and a table with an out-of-range item.
  StFile f = read_safetensors(path);
  f.metadata["format"] = "something.else";
  write_safetensors(dir.file("tag.safetensors"), f);
  try {
    TripletTables::load(dir.file("tag.safetensors"));
    FAIL() << "wrong format tag must throw";
  } catch (const GraphInputError& e) {
    EXPECT_NE(std::string(e.what()).find("format"), std::string::npos) << e.what();
  }
  f = read_safetensors(path);
  std::vector<int32_t> items = f.at("near_items").to_i32();
  ASSERT_FALSE(items.empty());
  items[items.size() / 2] = t.n_items() + 5;
  f.put_i32("near_items", {static_cast<int64_t>(items.size())}, items.data());
  write_safetensors(dir.file("range.safetensors"), f);
  EXPECT_THROW(TripletTables::load(dir.file("range.safetensors")), GraphInputError);
  f = read_safetensors(path);
  std::vector<int32_t> counts = f.at("near_count").to_i32();
  counts[0] += 1;
  f.put_i32("near_count", {static_cast<int64_t>(counts.size())}, counts.data());
  write_safetensors(dir.file("count.safetensors"), f);
  EXPECT_THROW(TripletTables::load(dir.file("count.safetensors")), GraphInputError);
}

// ---------------------------------------------------------------- splits

TEST(Split, ItemsReproducibleAndExactFraction) {
  const HeldOutSplit a = split_items(1003, 0.2, 42), b = split_items(1003, 0.2, 42), c = split_items(1003, 0.2, 43);
  EXPECT_EQ(a.held_out, b.held_out);
  EXPECT_EQ(a.train, b.train);
  EXPECT_NE(a.held_out, c.held_out);
  EXPECT_EQ(a.held_out.size(), 201u);  // round(0.2 * 1003)
  EXPECT_EQ(a.train.size(), 802u);
  std::vector<int32_t> all(a.train);
  all.insert(all.end(), a.held_out.begin(), a.held_out.end());
  std::sort(all.begin(), all.end());
  for (int32_t i = 0; i < 1003; ++i) ASSERT_EQ(all[static_cast<size_t>(i)], i);
  EXPECT_TRUE(std::is_sorted(a.held_out.begin(), a.held_out.end()));
  // Held-out items spread over the range (a shuffle, not a prefix).
  EXPECT_LT(a.held_out.front(), 100);
  EXPECT_GT(a.held_out.back(), 900);
  EXPECT_TRUE(split_items(50, 0.0, 1).held_out.empty());
  EXPECT_EQ(split_items(50, 1.0, 1).held_out.size(), 50u);
  EXPECT_THROW(split_items(50, 1.5, 1), std::invalid_argument);
  EXPECT_THROW(split_items(50, std::nan(""), 1), std::invalid_argument);
}

// Groups (albums) held out whole: every item of a held-out group and none of the others, the
// named fraction of the groups (at least one), reproducible for a seed and the same whatever
// order the items come in.
TEST(Split, GroupsHeldOutWholeReproducibly) {
  std::vector<std::string> group_of;  // 40 groups of 1..5 items, interleaved
  std::mt19937 rng(3);
  for (int g = 0; g < 40; ++g)
    for (int k = 0; k <= g % 5; ++k) group_of.push_back("album" + std::to_string(g));
  std::shuffle(group_of.begin(), group_of.end(), rng);
  std::vector<std::string> held_a, held_b, held_c;
  const HeldOutSplit a = split_groups(group_of, 0.25, 7, &held_a), b = split_groups(group_of, 0.25, 7, &held_b),
                     c = split_groups(group_of, 0.25, 8, &held_c);
  EXPECT_EQ(a.held_out, b.held_out);
  EXPECT_EQ(held_a, held_b);
  EXPECT_NE(held_a, held_c);
  ASSERT_EQ(held_a.size(), 10u);  // round(0.25 * 40)
  EXPECT_TRUE(std::is_sorted(held_a.begin(), held_a.end()));
  const std::set<std::string> held(held_a.begin(), held_a.end());
  for (const int32_t i : a.held_out) EXPECT_TRUE(held.count(group_of[static_cast<size_t>(i)])) << i;
  for (const int32_t i : a.train) EXPECT_FALSE(held.count(group_of[static_cast<size_t>(i)])) << i;
  EXPECT_EQ(a.held_out.size() + a.train.size(), group_of.size());
  EXPECT_TRUE(std::is_sorted(a.held_out.begin(), a.held_out.end()));
  EXPECT_TRUE(std::is_sorted(a.train.begin(), a.train.end()));
  // The groups drawn depend on the keys, not on where their items stand.
  std::vector<std::string> reordered(group_of.rbegin(), group_of.rend());
  std::vector<std::string> held_r;
  split_groups(reordered, 0.25, 7, &held_r);
  EXPECT_EQ(held_r, held_a);
  // A small fraction still holds one group out; none for 0; bad fractions are refused.
  std::vector<std::string> held_one;
  EXPECT_FALSE(split_groups(group_of, 0.001, 7, &held_one).held_out.empty());
  EXPECT_EQ(held_one.size(), 1u);
  EXPECT_TRUE(split_groups(group_of, 0.0, 7).held_out.empty());
  EXPECT_THROW(split_groups(group_of, -0.1, 7), std::invalid_argument);
  EXPECT_THROW(split_groups(group_of, std::nan(""), 7), std::invalid_argument);
}

TEST(Split, EdgesAmongSelectedItems) {
  EdgeList el = random_graph(300, 3000, 21);
  el.add_edge("n0", "n1");
  el.add_edge("n1", "n0");  // both directions: one undirected pair
  const PreferenceGraph g(el);
  const Selection s = select_top_k(g, all_audio(g), 150, false);
  const EdgeSplit a = split_edges(g, s, 0.3, 8), b = split_edges(g, s, 0.3, 8);
  EXPECT_EQ(a.held_out, b.held_out);
  EXPECT_EQ(a.train, b.train);
  // Expected pairs: every edge with both ends selected, as (min, max) items.
  std::set<std::pair<int32_t, int32_t>> expect;
  for (size_t e = 0; e < el.src.size(); ++e) {
    const int32_t x = s.item_of_node[static_cast<size_t>(el.src[e])], y = s.item_of_node[static_cast<size_t>(el.dst[e])];
    if (x >= 0 && y >= 0) expect.emplace(std::min(x, y), std::max(x, y));
  }
  std::set<std::pair<int32_t, int32_t>> got(a.train.begin(), a.train.end());
  for (const auto& p : a.held_out) EXPECT_TRUE(got.insert(p).second) << "pair in both lists";
  EXPECT_EQ(got, expect);
  // Each pair is held out independently with p = 0.3: the count stays within 5 standard deviations.
  const double n = static_cast<double>(expect.size()), mean = 0.3 * n, sd = std::sqrt(n * 0.3 * 0.7);
  ASSERT_GT(n, 200);
  EXPECT_NEAR(static_cast<double>(a.held_out.size()), mean, 5 * sd);
  EXPECT_TRUE(split_edges(g, s, 0.0, 8).held_out.empty());
  EXPECT_TRUE(split_edges(g, s, 1.0, 8).train.empty());
  EXPECT_NE(split_edges(g, s, 0.3, 9).held_out, a.held_out);
}

}  // namespace
}  // namespace mg::graph
