// One training step on triplets, as a straight list of calls (the trainer builds on it):
//   zero grads -> forward -> fused triplet loss -> backward -> clip + Adam
// The batch holds 3 * n_triplets clips: anchors, then positives, then negatives, unless a
// triplet index table says otherwise (in-batch mining).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "engine/model.h"
#include "engine/optimizer.h"

namespace mg {

struct StepStats {
  float loss = 0;
  float active = 0;     // triplets with a positive hinge
  float grad_norm = 0;  // before clipping
  // In-batch mining only (set_mining; 0 otherwise): anchors that got a negative (the loss
  // averages over these) and the (anchor, row) pairs that passed the graph mask.
  float mined = 0;
  float candidates = 0;
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
  // In-batch mining instead of a fixed table (kernels/mining_cpu.h): the batch is `anchors`
  // anchors, then their positives (2 * anchors clips), and hops [2 * anchors, 2 * anchors] their
  // graph distances, row-major (graph::TripletTables::batch_distance_matrix's values, which fit
  // a byte), uploaded once per call like set_triplets(). From then on every forward pass is
  // followed on the device by Backend::mine_triplets (the loss's margin and eps bound the
  // semi-hard band), and the loss runs over the mined table. set_triplets() switches it off.
  void set_mining(const std::vector<uint8_t>& hops, int anchors, NegativeMining rule, int neg_hops);

  // Forward + loss + backward; gradients end up in model.grads() (zeroed first).
  // Returns nothing to the host: stats stay on the device until read_stats().
  void forward_backward(const float* audio, int batch, const TripletLossParams& loss);
  // forward_backward, then the optimizer step. With capture on (the default) and a backend
  // that supports it, the first call runs eagerly (so libraries pick their algorithms), the
  // second records the whole step as one graph, and later calls with the same audio buffer,
  // batch, triplet table and optimizer only upload {lr, step} and replay it.
  void step(const float* audio, int batch, const TripletLossParams& loss, Optimizer& opt, double lr);
  void set_capture(bool on) {
    capture_on_ = on;
    captured_.reset();
    phases_.clear();
  }

  // The trainer's step, in two phases with a host check between them, so a non-finite loss
  // or gradient never reaches the parameters:
  //   gradients(): zero grads, forward, loss, backward, and the global gradient norm (not
  //                clipped) into opt.norm_device();
  //   read_stats(&opt) synchronises: the caller checks that loss and norm are finite;
  //   update():    clip + Adam/AdamW with learning rate lr.
  // Each phase is captured as a CUDA graph after one eager run, gradients() once per audio
  // buffer (the trainer alternates two, so uploads overlap compute).
  void gradients(const float* audio, int batch, const TripletLossParams& loss, Optimizer& opt);
  void update(Optimizer& opt, double lr);
  bool replaying() const { return captured_ != nullptr; }
  // Synchronises and copies the last step's loss, active count and gradient norm.
  StepStats read_stats(const Optimizer* opt = nullptr);

 private:
  Model& model_;
  Backend& be_;
  int32_t* triplets_ = nullptr;  // device [max_batch, 3] (at most max_batch triplets)
  int n_triplets_ = 0;
  float* stats_ = nullptr;  // device [2]

  // In-batch mining (set_mining); n_triplets_ = anchors. The rule and neg_hops are baked into
  // captured graphs, the hops are read from hops_ at each replay.
  bool mining_ = false;
  NegativeMining mining_rule_ = NegativeMining::BatchHard;
  int mining_neg_hops_ = 0;
  uint8_t* hops_ = nullptr;     // device [max_batch, max_batch], allocated by the first set_mining
  float* mine_counts_ = nullptr;  // device [2] = {valid, candidates}
  void forget_captures();

  // What the captured graph was recorded for; any change invalidates it.
  bool capture_on_ = true;
  int eager_steps_ = 0;
  std::unique_ptr<Backend::Captured> captured_;
  const float* captured_audio_ = nullptr;
  int captured_batch_ = 0;
  const Optimizer* captured_opt_ = nullptr;
  TripletLossParams captured_loss_;

  // Captured phases of the two-phase step, keyed by what they were recorded for.
  struct Phase {
    const void* audio = nullptr;  // null for the update phase
    int batch = 0, n_triplets = 0;
    const Optimizer* opt = nullptr;
    TripletLossParams loss;
    int eager_runs = 0;
    std::unique_ptr<Backend::Captured> graph;
  };
  std::vector<Phase> phases_;
  void run_phase(const void* audio, int batch, const TripletLossParams& loss, const Optimizer* opt,
                 const std::function<void()>& work);
};

}  // namespace mg
