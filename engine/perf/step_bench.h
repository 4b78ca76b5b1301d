// Times the training step on a backend (melgraph bench): the whole step after warm-up, then
// its parts run separately with the same backend ops and shapes, so the split can be printed
// below the total.
//
// The parts issue the ops of Model::forward/backward in the same order with the same shapes
// (step_bench.cpp mirrors them: a change to the model's op sequence belongs in both).
// The split is measured part by part, each with the device synchronised around it, not taken
// from inside the step: parts run alone do not overlap, see other caches and (on a GPU) are not
// replayed as one graph, so their sum need not equal the step.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "engine/backend_factory.h"
#include "engine/config.h"
#include "engine/perf/roofline.h"

namespace mg {

struct StepBenchOptions {
  int warmup = 2;       // untimed steps first (a GPU needs 2: eager, then capture)
  int steps = 10;       // timed steps; the parts are timed as many times each
  bool capture = true;  // replay the step as a CUDA Graph where the backend can
  uint64_t seed = 0;    // weights and the random audio
};

struct PartTime {
  std::string name;
  double seconds = 0;  // median
};

struct StepBenchResult {
  int batch = 0;       // clips per step
  int n_triplets = 0;
  bool replayed = false;              // the timed steps were graph replays
  std::vector<double> step_seconds;   // every timed step, in order
  double step_median = 0;
  // "mel", "conv stack fwd+bwd", "head + loss", "optimizer" (the StepCost parts' names);
  // medians of separate runs.
  std::vector<PartTime> parts;
  double fused_loss_seconds = 0;  // the fused loss (with its gradient) alone, median
  double clips_per_second() const { return step_median > 0 ? batch / step_median : 0; }
};

// Batch = 3 * c.train.batch_triplets clips of c.audio.clip_samples() random samples in offline
// triplets or, with the contrastive loss, 2 * batch_triplets clips (anchors, then their
// positives; every other row far in the graph). In-batch mining is timed as offline triplets.
// Allocates the model, optimizer and part buffers on `be` and frees them on return.
StepBenchResult bench_training_step(Backend& be, const Config& c, const StepBenchOptions& o);

// `melgraph bench`: the step on a backend made from `bo` (bench_training_step), and the
// roofline floor of the step and of each part on that device (measure_cpu_peak with
// bo.threads, or cuda_peak).
struct StepBenchReport {
  StepBenchResult result;
  std::string backend;  // Backend::describe()
  std::string note;     // what make_backend chose and why
  bool gpu = false;
  DevicePeak peak;
  StepCost cost;        // its parts in the order of result.parts
  RooflineFloor floor;  // of the whole step
};
StepBenchReport bench_step_on_device(const Config& c, const BackendOptions& bo, const StepBenchOptions& o);

// The median of a list of times (0 for none).
double median_seconds(std::vector<double> v);

}  // namespace mg
