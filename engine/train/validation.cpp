#include "engine/train/validation.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "engine/embed/embedder.h"
#include "engine/timer.h"
#include "kernels/blas.h"
#include "kernels/topk_cpu.h"

namespace mg::train {

namespace {

// Rows `rows` of the matrix m [*, d], gathered into a new [rows.size(), d] matrix.
std::vector<float> gather(const std::vector<float>& m, int d, const std::vector<int32_t>& rows) {
  std::vector<float> out(rows.size() * static_cast<size_t>(d));
  for (size_t i = 0; i < rows.size(); ++i)
    std::copy_n(m.data() + static_cast<size_t>(rows[i]) * d, d, out.data() + i * static_cast<size_t>(d));
  return out;
}

// Query rows per GEMM within a block: one task of the parallel loop. Fixed, not derived from
// the thread count, so that the similarities (and the counts) are the same for any number of
// threads.
constexpr int64_t kRowChunk = 16;

// Per-thread scratch of count_query_pairs.
struct PairScratch {
  std::vector<int32_t> rel_items;
  std::vector<float> rel_sims;
};

// The query's (relevant, irrelevant) candidate pairs, and how many of them put the relevant
// candidate strictly above the irrelevant one; sims: the query's similarity to every candidate.
// Counted per irrelevant candidate against the few sorted relevant similarities, which is
// O(N log |R|) rather than sorting all N.
TripletAccuracy count_query_pairs(const float* sims, const ValidationSet& set, const Query& query, PairScratch& s) {
  const std::vector<int32_t>& cand = set.candidates;
  s.rel_items.assign(query.relevant.begin(), query.relevant.end());  // sorted by hops: re-sort by item
  std::sort(s.rel_items.begin(), s.rel_items.end());
  int64_t n_rel = 0;
  s.rel_sims.clear();
  for (const int32_t item : s.rel_items) {
    const auto it = std::lower_bound(cand.begin(), cand.end(), item);
    if (item == query.item || it == cand.end() || *it != item) continue;
    ++n_rel;
    // A NaN ranks above nothing: its pairs all count as misses, so it takes no place here.
    const float sim = sims[it - cand.begin()];
    if (!std::isnan(sim)) s.rel_sims.push_back(sim);
  }
  TripletAccuracy t;
  if (n_rel == 0) return t;
  std::sort(s.rel_sims.begin(), s.rel_sims.end());
  int64_t n_irr = 0;
  for (size_t c = 0; c < cand.size(); ++c) {
    if (cand[c] == query.item || std::binary_search(s.rel_items.begin(), s.rel_items.end(), cand[c])) continue;
    ++n_irr;
    // Relevant similarities strictly above this one: a tie is a miss, and for a NaN here
    // upper_bound finds none above.
    t.correct += s.rel_sims.end() - std::upper_bound(s.rel_sims.begin(), s.rel_sims.end(), sims[c]);
  }
  t.triplets = n_rel * n_irr;
  return t;
}

// validation_triplet_accuracy on the set's vectors already gathered: queries [Q, d] in the
// set's query order, items [N, d] in candidate order (score_set has both from its top-k).
TripletAccuracy triplet_accuracy_of(const std::vector<float>& queries, const std::vector<float>& items, int d,
                                    const ValidationSet& set, size_t block_bytes) {
  const auto Q = static_cast<int64_t>(set.queries.size());
  const auto N = static_cast<int64_t>(set.candidates.size());
  if (Q == 0 || N < 2) return {};
  const auto rows_in_budget = static_cast<int64_t>(block_bytes / (sizeof(float) * static_cast<size_t>(N)));
  const int64_t block = std::clamp<int64_t>(rows_in_budget, 1, Q);
  std::vector<float> sims(static_cast<size_t>(block * N));  // [block, N]
  int64_t triplets = 0, correct = 0;  // integer sums: the same in any order
  for (int64_t q0 = 0; q0 < Q; q0 += block) {
    const int64_t qb = std::min(block, Q - q0);
    const int64_t chunks = (qb + kRowChunk - 1) / kRowChunk;
    // BLAS inside OpenMP threads, as topk_cosine: OpenBLAS is expected single-threaded here.
#pragma omp parallel reduction(+ : triplets, correct)
    {
      PairScratch scratch;
#pragma omp for schedule(dynamic, 1)
      for (int64_t ch = 0; ch < chunks; ++ch) {
        const int64_t r0 = ch * kRowChunk, rows = std::min(kRowChunk, qb - r0);
        float* out = sims.data() + r0 * N;
        // out [rows, N] = queries[q0 + r0 : +rows] [rows, d] x items^T [d, N]
        gemm(false, true, static_cast<int>(rows), static_cast<int>(N), d, 1.0f, queries.data() + (q0 + r0) * d, d,
             items.data(), d, 0.0f, out, static_cast<int>(N));
        for (int64_t r = 0; r < rows; ++r) {
          const TripletAccuracy t =
              count_query_pairs(out + r * N, set, set.queries[static_cast<size_t>(q0 + r0 + r)], scratch);
          triplets += t.triplets;
          correct += t.correct;
        }
      }
    }
  }
  TripletAccuracy total;
  total.triplets = triplets;
  total.correct = correct;
  return total;
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
  // Scoring runs BLAS inside OpenMP threads (topk_cosine, the triplet count): BLAS itself stays
  // single-threaded, as the CPU backend sets it; with the CUDA backend nobody else would.
  blas_set_threads(1);
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

  std::vector<int32_t> ranked;
  for (int64_t q = 0; q < Q; ++q) {
    const Query& query = set.queries[static_cast<size_t>(q)];
    ranked.clear();
    for (int j = 0; j < kk; ++j) {
      const int32_t c = top[static_cast<size_t>(q) * kk + static_cast<size_t>(j)];
      if (c >= 0) ranked.push_back(set.candidates[static_cast<size_t>(c)]);
    }
    acc.add(ranked, RelevantSet{query.relevant, query.hops});
  }
  s.metrics = acc.overall();
  if (triplets) {
    const TripletAccuracy t = triplet_accuracy_of(queries, items, d, set, kSimilarityBlockBytes);
    if (t.triplets > 0) s.triplet_accuracy = t.fraction();
  }
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

TripletAccuracy validation_triplet_accuracy(const std::vector<float>& vecs, int d, const ValidationSet& set,
                                            size_t block_bytes) {
  if (set.queries.empty() || set.candidates.size() < 2) return {};
  std::vector<int32_t> qrows;
  for (const Query& q : set.queries) qrows.push_back(q.item);
  return triplet_accuracy_of(gather(vecs, d, qrows), gather(vecs, d, set.candidates), d, set, block_bytes);
}

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
  const embed::Embeddings e = embed::embed_cached(model, cache, cache_index, embed::kDefaultCrops, with_baseline);
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
  r.seconds = seconds_since(t0);
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
