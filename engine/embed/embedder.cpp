#include "engine/embed/embedder.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <stdexcept>

#include "engine/io/progress_line.h"
#include "engine/io/stop_point.h"

namespace mg::embed {

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
    const int E = model_.output_dim();
    be_.to_device(audio_dev_, clips, static_cast<size_t>(B) * static_cast<size_t>(S_) * sizeof(float));
    const float* emb = model_.embed(audio_dev_, B);
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
  r.dim = model.output_dim();
  r.emb.assign(static_cast<size_t>(n) * r.dim, 0.0f);
  if (with_mel) {
    r.mel_dim = model.plan().n_mels;
    r.mel.assign(static_cast<size_t>(n) * r.mel_dim, 0.0f);
  }
  return r;
}

// Subtracts the mean row: the collection's average spectrum says nothing about any one item,
// and left in it dominates every cosine (all mean log-mel vectors point nearly the same way).
void centre_rows(std::vector<float>& m, int64_t n, int d) {
  if (n == 0) return;
  std::vector<double> mean(static_cast<size_t>(d), 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int j = 0; j < d; ++j) mean[static_cast<size_t>(j)] += m[static_cast<size_t>(i * d + j)];
  for (double& v : mean) v /= static_cast<double>(n);
  for (int64_t i = 0; i < n; ++i)
    for (int j = 0; j < d; ++j)
      m[static_cast<size_t>(i * d + j)] = static_cast<float>(m[static_cast<size_t>(i * d + j)] - mean[static_cast<size_t>(j)]);
}

void finish(Embeddings& r) {
  normalize_rows(r.emb, r.n, r.dim);
  if (!r.mel.empty()) {
    centre_rows(r.mel, r.n, r.mel_dim);
    normalize_rows(r.mel, r.n, r.mel_dim);
  }
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
                        int crops, bool with_mel_baseline, FILE* progress) {
  if (crops < 1) throw std::invalid_argument("embed_cached: crops must be >= 1");
  const auto n = static_cast<int64_t>(cache_index.size());
  ProgressLine line(progress);
  const auto t0 = std::chrono::steady_clock::now();
  auto show = [&](int64_t done) {
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    line.update(
        "embed: " + std::to_string(done) + "/" + std::to_string(n) + " items, " + rate_and_eta(done, n, s, "items"),
        done == n);
  };
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
        show(owner.front());  // the items before the batch's first are done
        owner.clear();
        stop_point("embed.batch");  // kill tests: mid-embedding
      }
      cache.read_clip(ci, start, S, pad, clips.data() + owner.size() * static_cast<size_t>(S));
      owner.push_back(i);
    }
  }
  be.run(clips.data(), owner);
  show(n);
  line.finish();
  finish(r);
  return r;
}

BandStats band_statistics(Model& model, const audio::AudioCache& cache, const std::vector<int64_t>& cache_index,
                          int crops) {
  if (crops < 1) throw std::invalid_argument("band_statistics: crops must be >= 1");
  Backend& be = model.backend();
  const ModelPlan& p = model.plan();
  const int64_t S = p.samples, per_clip = static_cast<int64_t>(p.n_mels) * p.frames;
  const int cap = model.max_batch();
  const ShortClip pad = model.config().audio.short_clip;
  std::vector<float> clips(static_cast<size_t>(cap) * static_cast<size_t>(S)), mel;
  std::vector<double> sum(static_cast<size_t>(p.n_mels), 0.0), sum_sq(sum.size(), 0.0);
  const DeviceArray<float> audio_buf(be, static_cast<int64_t>(cap) * S);
  float* audio = audio_buf.p;  // [cap, S]
  BandStats st;
  int n = 0;
  auto flush = [&] {
    if (n == 0) return;
    be.to_device(audio, clips.data(), static_cast<size_t>(n) * static_cast<size_t>(S) * sizeof(float));
    model.forward_mel(audio, n);
    mel.resize(static_cast<size_t>(n * per_clip));
    be.to_host(mel.data(), model.activations().ptr("mel"), mel.size() * sizeof(float));
    for (int b = 0; b < n; ++b)
      for (int c = 0; c < p.n_mels; ++c) {
        const float* row = mel.data() + b * per_clip + static_cast<int64_t>(c) * p.frames;
        for (int t = 0; t < p.frames; ++t) {
          sum[static_cast<size_t>(c)] += row[t];
          sum_sq[static_cast<size_t>(c)] += static_cast<double>(row[t]) * row[t];
        }
      }
    st.frames += static_cast<int64_t>(n) * p.frames;
    n = 0;
  };
  for (const int64_t ci : cache_index) {
    for (const int64_t start : crop_starts(cache.entry(ci).length, S, crops)) {
      if (n == cap) flush();
      cache.read_clip(ci, start, S, pad, clips.data() + static_cast<size_t>(n) * static_cast<size_t>(S));
      ++n;
    }
  }
  flush();
  if (st.frames == 0) throw std::invalid_argument("band_statistics: no items to measure");
  for (size_t c = 0; c < sum.size(); ++c) {
    const double m = sum[c] / static_cast<double>(st.frames);
    const double var = std::max(0.0, sum_sq[c] / static_cast<double>(st.frames) - m * m);
    st.mean.push_back(static_cast<float>(m));
    st.std.push_back(static_cast<float>(std::max(std::sqrt(var), kMinBandStd)));
  }
  return st;
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

}  // namespace mg::embed
