#include "apps/train/embedder.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace mg::train {

namespace {

void normalize_rows(std::vector<float>& m, int64_t n, int d) {
  for (int64_t i = 0; i < n; ++i) {
    float* row = m.data() + i * d;
    double ss = 0;
    for (int j = 0; j < d; ++j) ss += static_cast<double>(row[j]) * row[j];
    const double inv = ss > 0 ? 1.0 / std::sqrt(ss) : 0.0;
    for (int j = 0; j < d; ++j) row[j] = static_cast<float>(row[j] * inv);
  }
}

// Runs the model over clips [rows, S] (host) that belong to items owner[r]; adds each
// clip's embedding (and mean log-mel) to its item's row of the sums.
class BatchEmbedder {
 public:
  BatchEmbedder(Model& model, bool with_mel, Embeddings& out)
      : model_(model), be_(model.backend()), with_mel_(with_mel), out_(out), was_training_(model.training()) {
    model_.set_training(false);  // embeddings come from the eval-mode model: no dropout
    const ModelPlan& p = model.plan();
    S_ = p.samples;
    max_ = model.max_batch();
    audio_dev_ = be_.alloc<float>(static_cast<int64_t>(max_) * S_);
    if (with_mel_) mel_mean_dev_ = be_.alloc<float>(static_cast<int64_t>(max_) * p.n_mels);
  }
  ~BatchEmbedder() {
    model_.set_training(was_training_);
    be_.free_bytes(audio_dev_);
    be_.free_bytes(mel_mean_dev_);
  }
  BatchEmbedder(const BatchEmbedder&) = delete;
  BatchEmbedder& operator=(const BatchEmbedder&) = delete;

  int64_t clip_samples() const { return S_; }
  int capacity() const { return max_; }

  void run(const float* clips, const std::vector<int64_t>& owner) {
    const int B = static_cast<int>(owner.size());
    if (B == 0) return;
    const ModelPlan& p = model_.plan();
    const int E = p.embedding;
    be_.to_device(audio_dev_, clips, static_cast<size_t>(B) * static_cast<size_t>(S_) * sizeof(float));
    const float* emb = model_.forward(audio_dev_, B);
    host_.resize(static_cast<size_t>(B) * E);
    be_.to_host(host_.data(), emb, host_.size() * sizeof(float));
    for (int r = 0; r < B; ++r) {
      float* dst = out_.emb.data() + owner[static_cast<size_t>(r)] * E;
      for (int j = 0; j < E; ++j) dst[j] += host_[static_cast<size_t>(r) * E + static_cast<size_t>(j)];
    }
    if (with_mel_) {
      // The log-mel the forward pass just computed, averaged over time.
      be_.mean_time_forward(model_.activations().ptr("mel"), mel_mean_dev_, static_cast<int64_t>(B) * p.n_mels,
                            p.frames);
      host_.resize(static_cast<size_t>(B) * p.n_mels);
      be_.to_host(host_.data(), mel_mean_dev_, host_.size() * sizeof(float));
      for (int r = 0; r < B; ++r) {
        float* dst = out_.mel.data() + owner[static_cast<size_t>(r)] * p.n_mels;
        for (int j = 0; j < p.n_mels; ++j) dst[j] += host_[static_cast<size_t>(r) * p.n_mels + static_cast<size_t>(j)];
      }
    }
  }

 private:
  Model& model_;
  Backend& be_;
  bool with_mel_;
  Embeddings& out_;
  bool was_training_;
  int64_t S_ = 0;
  int max_ = 0;
  float* audio_dev_ = nullptr;     // device [max_batch, S]
  float* mel_mean_dev_ = nullptr;  // device [max_batch, n_mels]
  std::vector<float> host_;
};

Embeddings empty_result(const Model& model, int64_t n, bool with_mel) {
  Embeddings r;
  r.n = n;
  r.dim = model.plan().embedding;
  r.emb.assign(static_cast<size_t>(n) * r.dim, 0.0f);
  if (with_mel) {
    r.mel_dim = model.plan().n_mels;
    r.mel.assign(static_cast<size_t>(n) * r.mel_dim, 0.0f);
  }
  return r;
}

void finish(Embeddings& r) {
  normalize_rows(r.emb, r.n, r.dim);
  if (!r.mel.empty()) normalize_rows(r.mel, r.n, r.mel_dim);
}

}  // namespace

std::vector<int64_t> crop_starts(int64_t L, int64_t S, int crops) {
  if (crops < 1) throw std::invalid_argument("crop_starts: crops must be >= 1 (got " + std::to_string(crops) + ")");
  if (L <= S) return {0};
  // Evenly spaced starts, the first at 0 and the last at L - S; a single crop is centred.
  if (crops == 1) return {(L - S) / 2};
  std::vector<int64_t> starts(static_cast<size_t>(crops));
  for (int k = 0; k < crops; ++k) starts[static_cast<size_t>(k)] = (L - S) * k / (crops - 1);
  return starts;
}

Embeddings embed_cached(Model& model, const audio::AudioCache& cache, const std::vector<int64_t>& cache_index,
                        int crops, bool with_mel_baseline) {
  if (crops < 1) throw std::invalid_argument("embed_cached: crops must be >= 1");
  const auto n = static_cast<int64_t>(cache_index.size());
  Embeddings r = empty_result(model, n, with_mel_baseline);
  BatchEmbedder be(model, with_mel_baseline, r);
  const int64_t S = be.clip_samples();
  const ShortClip pad = model.config().audio.short_clip;
  std::vector<float> clips(static_cast<size_t>(be.capacity()) * static_cast<size_t>(S));
  std::vector<int64_t> owner;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t ci = cache_index[static_cast<size_t>(i)];
    for (const int64_t start : crop_starts(cache.entry(ci).length, S, crops)) {
      if (static_cast<int>(owner.size()) == be.capacity()) {
        be.run(clips.data(), owner);
        owner.clear();
      }
      cache.read_clip(ci, start, S, pad, clips.data() + owner.size() * static_cast<size_t>(S));
      owner.push_back(i);
    }
  }
  be.run(clips.data(), owner);
  finish(r);
  return r;
}

Embeddings embed_clips(Model& model, const std::vector<float>& audio, int64_t n, bool with_mel_baseline) {
  Embeddings r = empty_result(model, n, with_mel_baseline);
  BatchEmbedder be(model, with_mel_baseline, r);
  const int64_t S = be.clip_samples();
  if (static_cast<int64_t>(audio.size()) != n * S)
    throw std::invalid_argument("embed_clips: audio holds " + std::to_string(audio.size()) + " samples, expected " +
                                std::to_string(n) + " x " + std::to_string(S));
  std::vector<int64_t> owner;
  for (int64_t i0 = 0; i0 < n; i0 += be.capacity()) {
    const int64_t m = std::min<int64_t>(be.capacity(), n - i0);
    owner.resize(static_cast<size_t>(m));
    for (int64_t j = 0; j < m; ++j) owner[static_cast<size_t>(j)] = i0 + j;
    be.run(audio.data() + i0 * S, owner);
  }
  finish(r);
  return r;
}

Embeddings embed_track(Model& model, const std::vector<float>& samples, int crops) {
  if (crops < 1) throw std::invalid_argument("embed_track: crops must be >= 1");
  Embeddings r = empty_result(model, 1, false);
  BatchEmbedder be(model, false, r);
  const int64_t S = be.clip_samples();
  const auto L = static_cast<int64_t>(samples.size());
  const ShortClip pad = model.config().audio.short_clip;
  std::vector<float> clips(static_cast<size_t>(be.capacity()) * static_cast<size_t>(S));
  std::vector<int64_t> owner;
  for (const int64_t start : crop_starts(L, S, crops)) {
    if (static_cast<int>(owner.size()) == be.capacity()) {
      be.run(clips.data(), owner);
      owner.clear();
    }
    // AudioCache::read_clip's padding: past the end, Repeat loops from the start, Zero (or an
    // empty track) gives silence.
    float* dst = clips.data() + owner.size() * static_cast<size_t>(S);
    const int64_t have = std::clamp<int64_t>(L - start, 0, S);
    std::copy_n(samples.data() + start, have, dst);
    for (int64_t j = have; j < S; ++j)
      dst[j] = pad == ShortClip::Zero || L == 0 ? 0.0f : samples[static_cast<size_t>((start + j) % L)];
    owner.push_back(0);
  }
  be.run(clips.data(), owner);
  finish(r);
  return r;
}

}  // namespace mg::train
