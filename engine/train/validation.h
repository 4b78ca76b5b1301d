// Validation of a training run: embeds every selected item (kDefaultCrops clips each, as the
// index does; the model in evaluation mode) and scores retrieval of graph neighbours on the three validation sets
// of TrainingData (held-out items, held-out edges, training fit), plus triplet accuracy
// (every (query, relevant, irrelevant candidate) triple of the held-out items: the fraction
// ranked right). The same numbers for the mean-log-mel baseline come from the same pass, and
// chance is what a random ranking scores in expectation (recall@k ~ k / candidates).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/train/training_data.h"
#include "engine/audio/audio_cache.h"
#include "engine/model.h"
#include "engine/retrieval_metrics.h"

namespace mg::train {

struct SetScores {
  std::string name;            // "held-out items", ...
  RetrievalMetrics model, baseline;
  double chance_recall = 0;    // expected recall@k of a random ranking
  double triplet_accuracy = -1, baseline_triplet_accuracy = -1;  // held-out items only
};

struct ValidationReport {
  int k = 10;
  std::vector<SetScores> sets;  // held-out items, held-out edges, training fit
  double seconds = 0;
  // Recall@k of the held-out items set: what best.safetensors is chosen by (falls back to
  // held-out edges when no item is held out).
  double selection_recall() const;
  // "name.metric" -> value, for the metrics table (model numbers; baseline with "baseline.").
  std::vector<std::pair<std::string, double>> metrics(bool with_baseline) const;
};

// cache_index[i]: the cache entry of TrainingData::items[i].
ValidationReport validate(Model& model, const audio::AudioCache& cache, const std::vector<int64_t>& cache_index,
                          const TrainingData& data, int k, bool with_baseline);

// Triplet accuracy of a validation set: over every query and every (relevant, irrelevant) pair
// of its candidates (the query itself is neither), the pairs in which the relevant candidate is
// strictly more similar (a tie is a miss): the queries' AUCs weighted by their pair counts.
// vecs: [items, d] row-major, indexed by the set's item indices; the similarity is the float32
// BLAS dot product (the cosine for unit vectors). Queries are scored a block at a time, the
// block's [queries, candidates] similarities bounded by block_bytes (one query at least).
constexpr size_t kSimilarityBlockBytes = size_t{64} << 20;
TripletAccuracy validation_triplet_accuracy(const std::vector<float>& vecs, int d, const ValidationSet& set,
                                            size_t block_bytes = kSimilarityBlockBytes);

// A small table: one row per set, columns recall@k / nDCG@k / mAP for model (and baseline,
// chance when given).
std::string format_report(const ValidationReport& r, bool with_baseline);

}  // namespace mg::train
