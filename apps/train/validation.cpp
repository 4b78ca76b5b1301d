#include "apps/train/validation.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "apps/train/embedder.h"

namespace mg::train {

namespace {

// Rows `rows` of the matrix m [*, d], gathered into a new [rows.size(), d] matrix.
std::vector<float> gather(const std::vector<float>& m, int d, const std::vector<int32_t>& rows) {
  std::vector<float> out(rows.size() * static_cast<size_t>(d));
  for (size_t i = 0; i < rows.size(); ++i)
    std::copy_n(m.data() + static_cast<size_t>(rows[i]) * d, d, out.data() + i * static_cast<size_t>(d));
  return out;
}

struct Scored {
  RetrievalMetrics metrics;
  double triplet_accuracy = -1;
};

// Ranks the set's candidates for every query by cosine similarity (exact top-k) and scores
// them; with `triplets`, also the fraction of (query, relevant, irrelevant) candidate triples
// in which the relevant item is the more similar (the query's AUC, averaged over queries
// weighted by their triple counts).
Scored score_set(const std::vector<float>& vecs, int d, const ValidationSet& set, int k, bool triplets) {
  Scored s;
  RetrievalAccumulator acc(k);
  if (set.queries.empty() || set.candidates.size() < 2) {
    s.metrics = acc.overall();
    return s;
  }
  const std::vector<float> items = gather(vecs, d, set.candidates);
  std::vector<int32_t> qrows, exclude;
  for (const Query& q : set.queries) {
    qrows.push_back(q.item);
    const auto it = std::lower_bound(set.candidates.begin(), set.candidates.end(), q.item);
    exclude.push_back(it != set.candidates.end() && *it == q.item ? static_cast<int32_t>(it - set.candidates.begin())
                                                                  : -1);
  }
  const std::vector<float> queries = gather(vecs, d, qrows);
  const auto Q = static_cast<int64_t>(qrows.size());
  const auto N = static_cast<int64_t>(set.candidates.size());
  const int kk = static_cast<int>(std::min<int64_t>(k, N));
  std::vector<int32_t> top(static_cast<size_t>(Q) * kk);
  std::vector<float> sims(top.size());
  topk_cosine(queries.data(), Q, items.data(), N, d, kk, exclude, top.data(), sims.data());

  int64_t pairs = 0, correct = 0;
  std::vector<int32_t> ranked, rel_items;
  for (int64_t q = 0; q < Q; ++q) {
    const Query& query = set.queries[static_cast<size_t>(q)];
    ranked.clear();
    for (int j = 0; j < kk; ++j) {
      const int32_t c = top[static_cast<size_t>(q) * kk + static_cast<size_t>(j)];
      if (c >= 0) ranked.push_back(set.candidates[static_cast<size_t>(c)]);
    }
    acc.add(ranked, RelevantSet{query.relevant, query.hops});
    if (!triplets) continue;
    // Similarity of the query to every candidate; relevant vs the rest.
    const float* qv = vecs.data() + static_cast<size_t>(query.item) * d;
    rel_items.assign(query.relevant.begin(), query.relevant.end());  // sorted by hops: re-sort by item
    std::sort(rel_items.begin(), rel_items.end());
    std::vector<float> rel_sims, irr_sims;
    for (int64_t c = 0; c < N; ++c) {
      const int32_t item = set.candidates[static_cast<size_t>(c)];
      if (item == query.item) continue;
      const float* v = items.data() + static_cast<size_t>(c) * d;
      double dot = 0;
      for (int j = 0; j < d; ++j) dot += static_cast<double>(qv[j]) * v[j];
      const bool rel = std::binary_search(rel_items.begin(), rel_items.end(), item);
      (rel ? rel_sims : irr_sims).push_back(static_cast<float>(dot));
    }
    std::sort(irr_sims.begin(), irr_sims.end());
    for (const float r : rel_sims) {
      // Irrelevant candidates strictly less similar than this relevant one: a tie is a miss.
      correct += std::lower_bound(irr_sims.begin(), irr_sims.end(), r) - irr_sims.begin();
      pairs += static_cast<int64_t>(irr_sims.size());
    }
  }
  s.metrics = acc.overall();
  if (triplets && pairs > 0) s.triplet_accuracy = static_cast<double>(correct) / static_cast<double>(pairs);
  return s;
}

double chance_recall(const ValidationSet& set, int k) {
  // A random ranking of N - 1 candidates puts each relevant item in the top k with
  // probability k / (N - 1); capped recall divides the expected hits by min(k, |R|).
  if (set.queries.empty() || set.candidates.size() < 2) return 0;
  double sum = 0;
  const double n = static_cast<double>(set.candidates.size()) - 1;
  for (const Query& q : set.queries) {
    const double r = static_cast<double>(q.relevant.size());
    sum += std::min(1.0, r * std::min<double>(k, n) / n / std::min<double>(k, r));
  }
  return sum / static_cast<double>(set.queries.size());
}

}  // namespace

double ValidationReport::selection_recall() const {
  for (const SetScores& s : sets)
    if (s.model.queries > 0 && s.name != "training fit") return s.model.recall;
  return -1;
}

std::vector<std::pair<std::string, double>> ValidationReport::metrics(bool with_baseline) const {
  std::vector<std::pair<std::string, double>> out;
  std::string at("@");
  at += std::to_string(k);
  for (const SetScores& s : sets) {
    std::string prefix = s.name;
    std::replace(prefix.begin(), prefix.end(), ' ', '_');
    auto put = [&](const std::string& who, const RetrievalMetrics& m, double acc) {
      if (m.queries == 0) return;
      out.emplace_back(who + prefix + ".recall" + at, m.recall);
      out.emplace_back(who + prefix + ".ndcg" + at, m.ndcg);
      out.emplace_back(who + prefix + ".map" + at, m.map);
      out.emplace_back(who + prefix + ".hit" + at, m.hit_rate);
      if (acc >= 0) out.emplace_back(who + prefix + ".triplet_accuracy", acc);
    };
    put("val.", s.model, s.triplet_accuracy);
    if (with_baseline) {
      put("baseline.", s.baseline, s.baseline_triplet_accuracy);
      if (s.model.queries > 0) out.emplace_back("chance." + prefix + ".recall" + at, s.chance_recall);
    }
  }
  return out;
}

ValidationReport validate(Model& model, const audio::AudioCache& cache, const std::vector<int64_t>& cache_index,
                          const TrainingData& data, int k, bool with_baseline) {
  const auto t0 = std::chrono::steady_clock::now();
  ValidationReport r;
  r.k = k;
  const Embeddings e = embed_cached(model, cache, cache_index, 1, with_baseline);
  for (const ValidationSet* set : {&data.val_items_set, &data.val_edges_set, &data.train_fit_set}) {
    SetScores s;
    s.name = set->name;
    const bool triplets = set == &data.val_items_set;
    const Scored m = score_set(e.emb, e.dim, *set, k, triplets);
    s.model = m.metrics;
    s.triplet_accuracy = m.triplet_accuracy;
    if (with_baseline) {
      const Scored b = score_set(e.mel, e.mel_dim, *set, k, triplets);
      s.baseline = b.metrics;
      s.baseline_triplet_accuracy = b.triplet_accuracy;
      s.chance_recall = chance_recall(*set, k);
    }
    r.sets.push_back(s);
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

std::string format_report(const ValidationReport& r, bool with_baseline) {
  std::ostringstream o;
  char line[256];
  std::string at("@");
  at += std::to_string(r.k);
  std::snprintf(line, sizeof line, "  %-16s %7s %10s %8s %8s %8s\n", "", "queries", ("recall" + at).c_str(),
                ("nDCG" + at).c_str(), ("mAP" + at).c_str(), "triplet");
  o << line;
  for (const SetScores& s : r.sets) {
    if (s.model.queries == 0) continue;
    auto row = [&](const std::string& who, const RetrievalMetrics& m, double acc) {
      char accs[16] = "-";
      if (acc >= 0) std::snprintf(accs, sizeof accs, "%.3f", acc);
      std::snprintf(line, sizeof line, "  %-16s %7lld %10.3f %8.3f %8.3f %8s\n", who.c_str(),
                    static_cast<long long>(m.queries), m.recall, m.ndcg, m.map, accs);
      o << line;
    };
    o << s.name << "\n";
    row("model", s.model, s.triplet_accuracy);
    if (with_baseline) {
      row("mean log-mel", s.baseline, s.baseline_triplet_accuracy);
      std::snprintf(line, sizeof line, "  %-16s %7s %10.3f\n", "chance", "", s.chance_recall);
      o << line;
    }
  }
  return o.str();
}

}  // namespace mg::train
