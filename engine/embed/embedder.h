// Embedding cached items with a model in evaluation mode (no dropout), in batches of the
// model's max_batch clips on its backend. Used by validation and by the index export.
//
// Crops: an item of L samples gives `crops` clips of S = audio.clip_samples samples, evenly
// spaced over the item (one crop: the centre); an item shorter than a clip gives one clip,
// padded as audio.short_clip says. The item's embedding is the L2-normalised mean of its
// crops' embeddings.
//
// Alongside, the trivial baseline the validation compares against: the mean over time of the
// log-mel spectrogram (the model's own front end), averaged over the crops, centred (the mean
// over the items embedded together subtracted) and L2-normalised.
#pragma once
#include <cstdint>
#include <cstdio>
#include <vector>

#include "engine/audio/audio_cache.h"
#include "engine/model.h"

namespace mg::embed {

// Clips per item wherever the project embeds whole items (the index, validation, the input
// statistics, the quality benchmark), so that they all see an item the same way: evenly
// spaced over the cached excerpt (crop_starts).
constexpr int kDefaultCrops = 3;

struct Embeddings {
  int64_t n = 0;
  int dim = 0;                 // E
  std::vector<float> emb;      // [n, E], unit rows
  int mel_dim = 0;             // n_mels
  std::vector<float> mel;      // [n, n_mels], centred, unit rows (empty unless asked for)
};

// cache_index[i] is item i's entry in the cache. The model's parameters are used as they are.
// progress: a progress line ("embed: 1200/5000 items, 85 items/s, ETA 45s") there; null: none.
Embeddings embed_cached(Model& model, const audio::AudioCache& cache, const std::vector<int64_t>& cache_index,
                        int crops, bool with_mel_baseline, FILE* progress = nullptr);

// The same for clips already in memory: audio [n, S] host. One crop per row.
Embeddings embed_clips(Model& model, const std::vector<float>& audio, int64_t n, bool with_mel_baseline);

// The input statistics of model.input_norm = band (Model::set_input_stats): the mean and
// standard deviation per mel band of the raw log-mel over every frame of `crops` clips of each
// item (the crop rule below), summed in double on the host. The std is floored at
// kMinBandStd (a silent or constant band would otherwise divide by zero).
struct BandStats {
  std::vector<float> mean, std;
  int64_t frames = 0;  // frames measured per band
};
constexpr double kMinBandStd = 1e-2;
BandStats band_statistics(Model& model, const audio::AudioCache& cache, const std::vector<int64_t>& cache_index,
                          int crops);

// The crop rule above: where the clips of an item of L samples start, for clips of S samples
// (one start, 0, when L <= S). Shared by embed_cached and embed_track.
std::vector<int64_t> crop_starts(int64_t L, int64_t S, int crops);

// One decoded track in memory (samples [L] at the model's rate, e.g. decode_audio with
// decode_request(cfg.audio): what the cache holds, before its int16/float16 rounding), with the
// crop rule and padding (audio.short_clip) of embed_cached. Returns n = 1, emb [1, E].
Embeddings embed_track(Model& model, const std::vector<float>& samples, int crops);

}  // namespace mg::embed
