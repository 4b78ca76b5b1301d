// The embedding model on a Backend, with hand-written backward:
//   mel -> [conv -> relu -> (pool)] x stages -> mean over time -> linear -> l2norm
// Memory (all on the backend's device, allocated once here):
//   params_ / grads_      one TensorBuffer each, same layout (names in param_layout())
//   acts_ / dacts_        the activation arena and its gradient twin, planned for max_batch
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

  // Parameter names and shapes (the checkpoint's tensor names):
  //   conv.{i}.weight [C_i, C_{i-1}, K], conv.{i}.bias [C_i]   (C_{-1} = n_mels)
  //   linear.weight [E, C_last], linear.bias [E]
  static TensorLayout param_layout(const Config& c);

  // PyTorch's default Conv1d/Linear init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and
  // biases, drawn with Philox (seed, stream = tensor index), identical on every backend.
  void init_params(uint64_t seed);

  // audio [B, S] (device) -> embeddings [B, E] (device, in the arena: valid until the next
  // forward). B <= max_batch.
  const float* forward(const float* audio, int B);
  // demb [B, E] (device) -> parameter gradients accumulate into grads(); activation
  // gradients are overwritten. Uses the activations of the last forward(B).
  void backward(const float* demb, int B);
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
  Conv1dDims stage_dims(size_t i, int B) const;
  const float* stage_input(size_t i) const;
  float* stage_input_grad(size_t i);
  std::string stage_output(size_t i) const;

  Config config_;
  Backend& be_;
  ModelPlan plan_;
  TensorBuffer params_, grads_;
  TensorBuffer acts_, dacts_;
};

}  // namespace mg
