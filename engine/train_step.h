// One training step, as a straight list of calls (the trainer builds on it):
//   zero grads -> forward -> [mining] -> fused loss (triplet or contrastive) -> backward -> clip + Adam
// The batch holds 3 * n_triplets clips: anchors, then positives, then negatives, unless a
// triplet index table says otherwise; with in-batch mining or the contrastive loss it holds
// B anchors then their B positives, with the graph distances between its rows.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "engine/config.h"
#include "engine/dist/comm.h"
#include "engine/model.h"
#include "engine/optimizer.h"

namespace mg {

struct StepStats {
  float loss = 0;
  float active = 0;     // triplets with a positive hinge; contrastive: rows with a positive
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
  // The graph distances [2n, 2n] of a batch of n generated pairs (benchmarks, the smoke test):
  // row i and its positive n + i 1 hop apart, every other pair of rows `far` apart, 0 on the
  // diagonal.
  static std::vector<uint8_t> pair_hops(int n, int far);
  // In-batch mining instead of a fixed table (kernels/mining_cpu.h): the batch is `anchors`
  // anchors, then their positives (2 * anchors clips), and hops [2 * anchors, 2 * anchors] their
  // graph distances, row-major (graph::TripletTables::batch_distance_matrix's values, which fit
  // a byte), uploaded once per call like set_triplets(). From then on every forward pass is
  // followed on the device by Backend::mine_triplets (the loss's margin and eps bound the
  // semi-hard band), and the loss runs over the mined table. set_triplets() switches it off.
  void set_mining(const std::vector<uint8_t>& hops, int anchors, NegativeMining rule, int neg_hops);
  // The contrastive loss over the batch of `anchors` anchors then their positives, hops as for
  // set_mining; positives within pos_hops, negatives at neg_hops or more
  // (kernels/contrastive_loss_cpu.h). The loss given to the step must then be the contrastive
  // one (its temperature). set_triplets() switches it off.
  void set_contrastive(const std::vector<uint8_t>& hops, int anchors, int pos_hops, int neg_hops);

  // Data-parallel over comm's ranks: `batch` in the calls below is then this rank's rows, 1/R of
  // the global batch in every block (rank r holds rows [r n/R, (r+1) n/R) of the anchors, of
  // the positives and of the negatives), while the triplet table or the hops describe the global
  // batch. Each rank runs the mel and the conv stack on its rows; the pooled features of every
  // rank are gathered, and the head (batch norm over the global batch), the mining and the loss
  // run over all of them on every rank alike; each rank backpropagates its own rows through the
  // conv stack, and those gradients are summed over the ranks. The step is then the one process
  // step on the global batch, up to the order of the sums; the model needs
  // head_batch >= R * max_batch. Tables and hops set before or after alike. One rank takes the
  // same path (the gather a copy, the sum nothing), which the tests compare with the plain step.
  void set_data_parallel(dist::Comm& comm);
  // ZeRO-1 on top of set_data_parallel (train.zero = 1): each stage's gradients are summed
  // at the ranks whose slices they fall in rather than on every rank, still a bucket per stage
  // overlapped with the backward (the head's, identical on every rank, need no sum), the
  // optimizer, made with zero_shard(), updates this rank's slice of the parameters with
  // moments for that slice only, and the slices are all-gathered after the update. The
  // model's flat buffers must split into equal slices (Model's flat_multiple: a multiple of
  // 64 R). The gradient norm is the norm of the slices' norms, gathered. With a clip
  // (optim.clip_norm > 0) the summed slices are all-gathered as well, so that every rank
  // measures and clips by the global norm as one process does (one more pass of the buffer).
  void set_zero(const Optimizer& opt);
  // This rank's slice of the model's flat buffer: [rank S, (rank + 1) S), S = size / R.
  static OptimizerShard zero_shard(const Model& model, const dist::Comm& comm);

  // Forward + loss + backward; gradients end up in model.grads() (zeroed first).
  // Returns nothing to the host: stats stay on the device until read_stats().
  void forward_backward(const float* audio, int batch, const LossConfig& loss);
  // forward_backward, then the optimizer step. With capture on (the default) and a backend
  // that supports it, the first call runs eagerly (so libraries pick their algorithms), the
  // second records the whole step as one graph, and later calls with the same audio buffer,
  // batch, triplet count, loss and optimizer only upload {lr, step} and replay it.
  void step(const float* audio, int batch, const LossConfig& loss, Optimizer& opt, double lr);
  void set_capture(bool on) {
    capture_on_ = on;
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
  void gradients(const float* audio, int batch, const LossConfig& loss, Optimizer& opt);
  void update(Optimizer& opt, double lr);
  bool replaying() const { return replaying_; }  // the last step or phase replayed a graph
  // Synchronises and copies the last step's loss, active count and gradient norm.
  StepStats read_stats(const Optimizer* opt = nullptr);

 private:
  Model& model_;
  Backend& be_;
  int32_t* triplets_ = nullptr;  // device [max_batch, 3] (at most max_batch triplets)
  int n_triplets_ = 0;
  float* stats_ = nullptr;  // device [2]

  // In-batch mining (set_mining) or the contrastive loss (set_contrastive); n_triplets_ =
  // anchors. The rule and the hop bounds are baked into captured graphs, the hops are read from
  // hops_ at each replay.
  enum class Mode { Table, Mining, Contrastive };
  Mode mode_ = Mode::Table;
  NegativeMining mining_rule_ = NegativeMining::BatchHard;
  int pos_hops_ = 0, neg_hops_ = 0;
  uint8_t* hops_ = nullptr;     // device [max_batch, max_batch], allocated by the first in-batch call
  float* mine_counts_ = nullptr;  // device [2] = {valid, candidates}
  void* contrastive_ws_ = nullptr;  // device contrastive_workspace_bytes(max_batch)
  void set_in_batch(const std::vector<uint8_t>& hops, int anchors, const char* who);
  void forget_captures();

  // Data-parallel (set_data_parallel); null: one process.
  dist::Comm* comm_ = nullptr;
  float* gathered_ = nullptr;  // device [head_batch, D]: the allgather's rows, then this rank's dpooled
  const float* gather_and_forward_head(int batch, int blocks);
  void backward_own_rows(const float* demb, int batch, int blocks);
  void sum_stage_gradients(size_t stage);
  bool collective() const;  // whether the ranks' collectives run (more than one, or device memory)

  // ZeRO-1 (set_zero): this rank's slice; every rank's slice norm, device [R].
  OptimizerShard zero_{};
  bool zero_whole_grads_ = false;  // ZeRO-1 with a clip: the summed gradients all-gathered too
  float* zero_norms_ = nullptr;
  bool zero_slice_norms() const { return zero_.count > 0 && !zero_whole_grads_; }
  void share_slice_norms(const Optimizer& opt);
  void share_parameters();

  // The one cache of captured graphs: the whole step (step()) and the trainer's two phases,
  // each keyed by what it was recorded for, so a change of any of these records a new one
  // (after one eager run) and alternating audio buffers replay a graph each.
  enum class PhaseKind { Whole, Gradients, Update };
  struct Phase {
    PhaseKind kind = PhaseKind::Whole;
    const void* audio = nullptr;  // null for the update phase
    int batch = 0, n_triplets = 0;
    const Optimizer* opt = nullptr;
    LossConfig loss;
    int eager_runs = 0;
    std::unique_ptr<Backend::Captured> graph;
  };
  bool capture_on_ = true;
  bool replaying_ = false;
  std::vector<Phase> phases_;
  // Launches the phase (launch_phase: eager, captured or replayed), then has a data-parallel
  // run's communicator watch that the work completes (dist::Comm::watch_enqueued_work).
  void run_phase(PhaseKind kind, const void* audio, int batch, const LossConfig& loss, const Optimizer* opt,
                 const std::function<void()>& work);
  void launch_phase(PhaseKind kind, const void* audio, int batch, const LossConfig& loss, const Optimizer* opt,
                    const std::function<void()>& work);
};

}  // namespace mg
