// Shared fixtures for engine tests: a small model config that builds in milliseconds,
// random audio, and a temporary directory.
#pragma once
#include <stdlib.h>

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "engine/config.h"

namespace mg::test {

// The seed model's head and loss: mean pooling, no normalisation, the linear layer's output as
// the embedding, the triplet loss with negatives beyond 3 hops. Most unit tests exercise these
// paths (op by op, offline triplets); the default recipe (engine/config.h) has tests of its own
// on small_recipe_config().
inline Config with_seed_head(Config c) {
  c.model.input_norm = InputNorm::None;
  c.model.pooling = GlobalPool::Mean;
  c.model.head_norm = HeadNorm::None;
  c.model.embedding_from = EmbeddingFrom::Linear;
  c.loss.name = LossKind::Triplet;
  c.train.neg_hops = 3;
  return c;
}

// The seed model exactly: default_config()'s architecture with the seed's head and loss and its
// 10 s clips (220500 samples, 431 frames), the shapes the plan and layout tests work out by hand.
inline Config seed_defaults() {
  Config c = with_seed_head(default_config());
  c.audio.clip_seconds = 10.0;
  return c;
}

// 1 s at 8 kHz, 16 mels, three stages of 8 channels: frames 126 -> 123 -> 30 -> 27 -> 6 -> 3.
// With the seed's head and loss (with_seed_head).
inline Config small_config() {
  Config c = default_config();
  c.audio.sample_rate = 8000;
  c.audio.clip_seconds = 1.0;
  c.mel.sample_rate = 8000;
  c.mel.n_fft = 256;
  c.mel.hop = 64;
  c.mel.n_mels = 16;
  c.model.channels = {8, 8, 8};
  c.model.embedding = 8;
  return with_seed_head(c);
}

// c with the default recipe's head and loss, as default_config() has them (the undoing of
// with_seed_head).
inline Config with_recipe_head(Config c) {
  const Config d = default_config();
  c.model.input_norm = d.model.input_norm;
  c.model.pooling = d.model.pooling;
  c.model.head_norm = d.model.head_norm;
  c.model.embedding_from = d.model.embedding_from;
  c.loss = d.loss;
  c.train.neg_hops = d.train.neg_hops;
  return c;
}

// The small model with the default recipe's options.
inline Config small_recipe_config() { return with_recipe_head(small_config()); }

// Noise plus a few partials, so mel bands differ from clip to clip.
inline std::vector<float> random_audio(int B, int64_t S, unsigned seed, int sample_rate = 8000) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::uniform_real_distribution<float> f(50.f, static_cast<float>(sample_rate) * 0.45f);
  std::vector<float> a(static_cast<size_t>(B) * S);
  for (int b = 0; b < B; ++b) {
    const float f1 = f(rng), f2 = f(rng);
    for (int64_t i = 0; i < S; ++i) {
      const float t = static_cast<float>(i) / static_cast<float>(sample_rate);
      a[static_cast<size_t>(b * S + i)] =
          0.3f * u(rng) + 0.4f * std::sin(6.2831853f * f1 * t) + 0.2f * std::sin(6.2831853f * f2 * t);
    }
  }
  return a;
}

// A fresh directory under the system temp dir, removed at scope exit.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "melgraph-test-XXXXXX").string();
    path = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

// A file's bytes ("" when it cannot be read).
inline std::string read_bytes(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// f() must throw an E whose message contains `part` (another exception fails the test by
// escaping it).
template <class E>
void expect_error(const std::function<void()>& f, const std::string& part) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one containing: " << part;
  } catch (const E& e) {
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

}  // namespace mg::test
