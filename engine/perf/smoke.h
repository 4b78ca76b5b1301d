// `melgraph-smoke`: a few training steps on generated triplets, needing no files. It builds
// the model from a config, generates triplets of synthetic audio (synth_triplet_batch), and
// runs forward, fused loss, backward and Adam for a few steps, printing shapes, loss and time
// per step. The loss falls when the whole chain is right, so it is a smoke test a user can
// read. It links the engine only (no FFmpeg, no SQLite), so that its binary travels in the GPU
// bundle (scripts/gpu-check) to machines without those libraries.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/config.h"

namespace mg {

struct SmokeOptions {
  std::string config_path;  // empty: the built-in defaults
  int triplets = 8;         // per step (with the contrastive loss: pairs)
  int steps = 5;
  int threads = 0;
  std::string device = "auto";
  bool deterministic = false;
  bool tf32 = false;
  bool no_graph = false;
  uint64_t seed = 0;
  std::string save;  // a checkpoint after the last step, when set
};

// Each generated "item" is a timbre: the amplitudes of 6 harmonics, drawn with Philox from
// (seed, item). A clip plays its item's timbre at some pitch, with random phase, gain and
// noise. Triplet i: the anchor and the positive are item i at two different pitches; the
// negative is another item at the anchor's pitch. So at first the negative looks closer
// (same pitch), and the loss falls only as the model learns to key on timbre.
// Layout of TrainStep::offline_triplets: anchors [0, n), positives [n, 2n), negatives
// [2n, 3n); rows = 2 n leaves the negatives out (the contrastive layout, TrainStep::pair_hops:
// every other pair's clips are its negatives). Returns audio [rows, clip_samples].
std::vector<float> synth_triplet_batch(const Config& c, int n, int rows, uint64_t seed);

// The smoke run: prints the setup, one line per step and the mean step time to stdout.
void run_smoke(const SmokeOptions& o);

}  // namespace mg
