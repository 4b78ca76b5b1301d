// The run config of `melgraph demo` for a collection from make_demo_collection (paths relative
// to the demo's folder: collection/edges.csv, collection/catalog.csv, run/).
#pragma once
#include <cstdint>

#include "engine/config.h"

namespace mg::demo {

// The demo's model: the seed architecture with the default recipe, made small enough to train
// in under a minute on two CPU cores (16 kHz, 3 s crops of the 10 s clips, 64 mels, 64
// channels, 64-d projection, 128-d embedding), at lr 1e-3, negatives from 2 hops. On
// collection seed 0: lr 2e-3 reached 0.397, 1e-3 0.424, 5e-4 0.408; 48 or 64 anchors a
// step, 3000 steps, 5 s crops, 128 channels, temperature 0.1 or the linear projection as
// the embedding did not beat 0.424 against 0.307 untrained (docs/performance.md, "Learning
// quality").
// clip_seconds: the collection's clip length (each one cached whole); steps and seed as
// `melgraph demo --steps --seed` give them. Validated.
Config demo_run_config(double clip_seconds, int steps, uint64_t seed);

}  // namespace mg::demo
