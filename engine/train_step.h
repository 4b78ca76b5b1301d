// One training step on triplets, as a straight list of calls (the trainer builds on it):
//   zero grads -> forward -> fused triplet loss -> backward -> clip + Adam
// The batch holds 3 * n_triplets clips: anchors, then positives, then negatives, unless a
// triplet index table says otherwise (in-batch mining).
#pragma once
#include <cstdint>
#include <vector>

#include "engine/model.h"
#include "engine/optimizer.h"

namespace mg {

struct StepStats {
  float loss = 0;
  float active = 0;     // triplets with a positive hinge
  float grad_norm = 0;  // before clipping
};

class TrainStep {
 public:
  // Owns the device-side triplet table and scalars for batches up to model.max_batch().
  explicit TrainStep(Model& model);
  ~TrainStep();
  TrainStep(const TrainStep&) = delete;
  TrainStep& operator=(const TrainStep&) = delete;

  // Triplet table on the host, [n, 3] row indices into the batch; uploaded once per call.
  void set_triplets(const std::vector<int32_t>& table);
  // The offline layout: triplet i = (i, n + i, 2n + i).
  static std::vector<int32_t> offline_triplets(int n);

  // Forward + loss + backward; gradients end up in model.grads() (zeroed first).
  // Returns nothing to the host: stats stay on the device until read_stats().
  void forward_backward(const float* audio, int batch, const TripletLossParams& loss);
  // forward_backward, then the optimizer step. With capture on (the default) and a backend
  // that supports it, the first call runs eagerly (so libraries pick their algorithms), the
  // second records the whole step as one graph, and later calls with the same audio buffer,
  // batch, triplet table and optimizer only upload {lr, step} and replay it.
  void step(const float* audio, int batch, const TripletLossParams& loss, Optimizer& opt, double lr);
  void set_capture(bool on) { capture_on_ = on; captured_.reset(); }
  bool replaying() const { return captured_ != nullptr; }
  // Synchronises and copies the last step's loss, active count and gradient norm.
  StepStats read_stats(const Optimizer* opt = nullptr);

 private:
  Model& model_;
  Backend& be_;
  int32_t* triplets_ = nullptr;  // device [max_batch, 3] (at most max_batch triplets)
  int n_triplets_ = 0;
  float* stats_ = nullptr;  // device [2]

  // What the captured graph was recorded for; any change invalidates it.
  bool capture_on_ = true;
  int eager_steps_ = 0;
  std::unique_ptr<Backend::Captured> captured_;
  const float* captured_audio_ = nullptr;
  int captured_batch_ = 0;
  const Optimizer* captured_opt_ = nullptr;
  TripletLossParams captured_loss_;
};

}  // namespace mg
