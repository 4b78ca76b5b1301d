// The embedding model on a Backend, with hand-written backward:
//   mel -> [conv -> relu -> (pool)] x stages -> global pooling over time -> (dropout)
//       -> linear -> l2norm
// Global pooling (model.pooling) writes one row per clip, [mean | max | l2] over time of each
// channel of the last stage (mean: [mean] only; mean_max: [mean | max]), each block C_last
// wide; dropout (model.dropout > 0) acts in training mode only.
// Memory (all on the backend's device, allocated once here):
//   params_ / grads_      one TensorBuffer each, same layout (names in param_layout())
//   acts_ / dacts_        the activation arena and its gradient twin, planned for max_batch
//   dropout_rng_          device uint64 [2] = {seed, Philox stream} of the dropout mask
// A smaller batch uses the leading part of every activation tensor.
#pragma once
#include <cstdint>
#include <memory>

#include "engine/backend.h"
#include "engine/config.h"
#include "engine/model_plan.h"
#include "engine/tensor_buffer.h"

namespace mg {

class Model {
 public:
  Model(const Config& c, Backend& be, int max_batch);
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  // Parameter names and shapes (the checkpoint's tensor names):
  //   conv.{i}.weight [C_i, C_{i-1}, K], conv.{i}.bias [C_i]   (C_{-1} = n_mels)
  //   linear.weight [E, k C_last], linear.bias [E]   (k = 1, 2, 3 for model.pooling)
  static TensorLayout param_layout(const Config& c);

  // PyTorch's default Conv1d/Linear init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and
  // biases, drawn with Philox (seed, stream = tensor index), identical on every backend.
  void init_params(uint64_t seed);

  // audio [B, S] (device) -> embeddings [B, E] (device, in the arena: valid until the next
  // forward). B <= max_batch.
  const float* forward(const float* audio, int B);
  // demb [B, E] (device) -> parameter gradients accumulate into grads(); activation
  // gradients are overwritten. Uses the activations of the last forward(B), and takes the
  // path that forward took (with or without dropout).
  void backward(const float* demb, int B);

  // The parts forward() and backward() run, in this order, for callers that time them apart
  // (engine/step_bench.cpp): forward = mel, conv stack, head; backward = head, conv stack.
  // Each reads what the part before it left in the arena; B is not checked here.
  void forward_mel(const float* audio, int B);  // audio [B, S] -> mel [B, n_mels, frames]
  void forward_conv(int B);                     // -> the last stage's output [B, C, T]
  const float* forward_head(int B);             // global pooling, dropout, linear, L2 -> emb [B, E]
  void backward_head(const float* demb, int B);  // -> d(last stage's output), head grads
  void backward_conv(int B);                     // -> conv grads

  // Training mode (the default, as a fresh torch module) applies dropout when model.dropout >
  // 0; eval mode (validation, embedding export) skips it: the linear layer reads the pooled
  // features as they are. Without dropout the two modes compute the same thing.
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
  const TensorBuffer& activations() const { return acts_; }
  Backend& backend() { return be_; }

 private:
  static TensorLayout activation_layout(const ModelPlan& p);
  void check_batch(int B, const char* what) const;
  Conv1dDims stage_dims(size_t i, int B) const;
  const float* stage_input(size_t i) const;
  float* stage_input_grad(size_t i);
  std::string stage_output(size_t i) const;

  Config config_;
  Backend& be_;
  ModelPlan plan_;
  TensorBuffer params_, grads_;
  TensorBuffer acts_, dacts_;
  uint64_t* dropout_rng_ = nullptr;  // device [2] = {seed, stream}
  bool training_ = true;
  bool dropped_ = false;  // whether the last forward applied dropout (its backward must too)
};

}  // namespace mg
