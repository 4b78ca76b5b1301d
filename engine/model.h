// The embedding model on a Backend, with hand-written backward:
//   mel -> [conv -> relu -> (pool)] x stages -> global pooling over time -> (batch norm)
//       -> (dropout) -> linear -> l2norm
// Global pooling (model.pooling) writes one row per clip, [mean | max | l2] over time of each
// channel of the last stage (mean: [mean] only; mean_max: [mean | max]), each block C_last
// wide, or one such block per stage in stage order (model.pool_stages = all); dropout
// (model.dropout > 0) acts in training mode only. The conv and linear layers compute in
// train.precision (bf16: kernels/bf16_cpu.h), in every mode: a bf16 run's
// validation, index and queries embed as it trained. Tensors and parameters are float32.
// Memory (all on the backend's device, allocated once here):
//   params_ / grads_      one TensorBuffer each, same layout (names in param_layout())
//   state_                what is not trained by gradients but saved with them
//                         (state_layout(): input statistics, batch norm's running statistics)
//   acts_ / dacts_        the activation arena and its gradient twin, planned for max_batch
//   dropout_rng_          device uint64 [2] = {seed, Philox stream} of the dropout mask
// A smaller batch uses the leading part of every activation tensor.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "engine/backend.h"
#include "engine/config.h"
#include "engine/model_plan.h"
#include "engine/tensor_buffer.h"

namespace mg {

class Model {
 public:
  // head_batch: rows of the head's tensors when more than max_batch (0: max_batch), for a
  // data-parallel step that runs the head over every rank's rows (engine/train_step.h).
  // flat_multiple: the parameter and gradient buffers padded to a multiple of this many floats
  // (ZeRO-1 splits them into one equal slice per rank); their layout is then params().layout(),
  // param_layout(c) with the padding.
  Model(const Config& c, Backend& be, int max_batch, int head_batch = 0, int64_t flat_multiple = 1);
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  // Parameter names and shapes (the checkpoint's tensor names):
  //   conv.{i}.weight [C_i, C_{i-1}, K], conv.{i}.bias [C_i]   (C_{-1} = n_mels)
  //   linear.weight [E, k C_last], linear.bias [E]   (k = 1, 2, 3 for model.pooling)
  //   head_norm.weight [D], head_norm.bias [D]                   (model.head_norm = batch; D = k C_last)
  static TensorLayout param_layout(const Config& c);
  // The non-trained state (checkpointed beside the parameters):
  //   input_norm.mean [n_mels], input_norm.std [n_mels]         (model.input_norm = band)
  //   head_norm.running_mean [D], head_norm.running_var [D]      (model.head_norm = batch)
  static TensorLayout state_layout(const Config& c);
  // The input statistics (model.input_norm = band), measured on the training set: mean and std
  // [n_mels] of the log-mel per band. Until set they are 0 and 1 (no change).
  void set_input_stats(const std::vector<float>& mean, const std::vector<float>& std);

  // PyTorch's default Conv1d/Linear init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and
  // biases, drawn with Philox (seed, stream = tensor index), identical on every backend; batch
  // norm's scale 1 and shift 0, and its running statistics reset (mean 0, variance 1), as
  // torch's BatchNorm1d starts.
  void init_params(uint64_t seed);

  // audio [B, S] (device) -> embeddings [B, E] (device, in the arena: valid until the next
  // forward). B <= max_batch.
  const float* forward(const float* audio, int B);
  // The item embedding of audio [B, S] (device): forward(), then, with model.embedding_from =
  // features, the L2-normalised pooled features -> [B, output_dim()]; else forward's output.
  // Validation, the index and queries embed with it (in eval mode).
  const float* embed(const float* audio, int B);
  int output_dim() const { return plan_.output_dim(); }
  // demb [B, E] (device) -> parameter gradients accumulate into grads(); activation
  // gradients are overwritten. Uses the activations of the last forward(B), and takes the
  // path that forward took (with or without dropout).
  void backward(const float* demb, int B);

  // The parts forward() and backward() run, in this order, for callers that time them apart
  // (engine/step_bench.cpp): forward = mel, conv stack, head; backward = head, conv stack.
  // Each reads what the part before it left in the arena; B is not checked here.
  void forward_mel(const float* audio, int B);  // audio [B, S] -> mel [B, n_mels, frames] (-> band)
  void forward_conv(int B);                     // -> the last stage's output [B, C, T]
  const float* forward_head(int B);             // global pooling, dropout, linear, L2 -> emb [B, E]
  void backward_head(const float* demb, int B);  // -> d(last stage's output), head grads
  void backward_conv(int B);                     // -> conv grads: backward_stage(i) for i = last .. 0
  // One stage's backward (max-pool, ReLU, conv): its conv gradients are final after it, and
  // the gradient of its input is ready for stage i - 1.
  void backward_stage(size_t i, int B);
  // The floats [first, first + count) of the flat gradient buffer that hold stage i's conv
  // weight and bias (and the padding up to stage i + 1's): over every stage, contiguous, they
  // cover [0, trunk_param_floats()). A data-parallel step sums each as soon as it is final.
  struct Span {
    int64_t first, count;
  };
  Span stage_param_span(size_t i) const;
  // The head split at the pooled features, for a data-parallel step: forward_head(B) is
  // forward_pool(B) then forward_from_pooled(B), backward_head(demb, B) is
  // backward_to_pooled(demb, B) then backward_pool(dpooled(), B). Between them the step gathers
  // every rank's rows of pooled() and hands each rank its rows of dpooled() back; the head
  // takes up to plan().head_batch rows.
  // With model.pool_stages = all the pooling reads every stage: backward_pool then computes
  // the last stage's part, and backward_stage(i) adds stage i's from the same dpooled, which
  // must stay valid until then.
  void forward_pool(int B);                           // pooled stages' outputs -> pooled [B, D]
  const float* forward_from_pooled(int B);            // pooled [B, D] -> emb [B, E]
  void backward_to_pooled(const float* demb, int B);  // -> dpooled [B, D], head grads
  void backward_pool(const float* dpooled, int B);    // dpooled [B, D] -> d(last stage's output)
  float* pooled() { return acts_.ptr("pooled"); }     // [head_batch, D]
  float* dpooled() { return dacts_.ptr("pooled"); }   // [head_batch, D]
  // The conv stack's parameters lead the flat buffer: params().data()[0, trunk_param_floats())
  // (padding included). A data-parallel step sums their gradients over the ranks; the head's
  // are the same on every rank already.
  int64_t trunk_param_floats() const;

  // Training mode (the default, as a fresh torch module) applies dropout when model.dropout >
  // 0 and normalises the pooled features with the batch's statistics (updating the running
  // ones); eval mode (validation, embedding export) skips dropout and uses the running
  // statistics. Without dropout and batch norm the two modes compute the same thing.
  // backward() needs a training-mode forward when the model has batch norm.
  void set_training(bool on) { training_ = on; }
  bool training() const { return training_; }
  // The dropout mask of the following forward passes: Philox key `seed`, stream
  // dropout_stream(step) (kernels/dropout_cpu.h), element b * k C_last + j. Uploads the pair to
  // device memory, where the dropout kernel reads it, so a step captured once (a CUDA graph)
  // draws each step's mask when this is called before each replay, as Optimizer::set_scalars
  // is. The trainer calls it once per step before the forward, with train.seed and the
  // optimizer's step count: masks are then reproducible for a seed, identical on CPU and
  // CUDA, and continue unchanged across a resume. Set at construction to (train.seed, 0).
  void set_dropout_step(uint64_t seed, uint64_t step);
  void zero_grad() { grads_.zero(); }

  // The arena slot for dloss/demb [max_batch, E], so a loss can write there directly.
  float* demb_buffer() { return dacts_.ptr("emb"); }

  const Config& config() const { return config_; }
  const ModelPlan& plan() const { return plan_; }  // at max_batch
  int max_batch() const { return plan_.batch; }
  TensorBuffer& params() { return params_; }
  const TensorBuffer& params() const { return params_; }
  TensorBuffer& grads() { return grads_; }
  const TensorBuffer& grads() const { return grads_; }
  TensorBuffer& state() { return state_; }
  const TensorBuffer& state() const { return state_; }
  const TensorBuffer& activations() const { return acts_; }
  Backend& backend() { return be_; }

 private:
  static ModelPlan plan_with_head(ModelPlan p, int head_batch);
  static TensorLayout padded_param_layout(const Config& c, int64_t flat_multiple);
  static TensorLayout activation_layout(const ModelPlan& p);
  void reset_running_stats();
  void check_batch(int B, const char* what, bool head = false) const;
  Conv1dDims stage_dims(size_t i, int B) const;
  void pool_stage_forward(size_t i, int B);
  void pool_stage_backward(size_t i, int B, bool accumulate);
  const float* stage_input(size_t i) const;
  float* stage_input_grad(size_t i);
  std::string stage_output(size_t i) const;

  Config config_;
  Backend& be_;
  ModelPlan plan_;
  TensorBuffer params_, grads_, state_;
  TensorBuffer acts_, dacts_;
  uint64_t* dropout_rng_ = nullptr;  // device [2] = {seed, stream}
  bool training_ = true;
  bool dropped_ = false;  // whether the last forward applied dropout (its backward must too)
  bool batch_stats_ = false;  // whether the last forward normalised with batch statistics
  const float* dpooled_ = nullptr;  // [head_batch, D]: the last backward_pool's input
};

}  // namespace mg
