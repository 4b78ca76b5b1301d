// Adam / AdamW over the flat parameter buffer, with optional clipping by global norm first.
// The moments m and v are TensorBuffers with the parameters' layout, so the checkpoint can
// name them per tensor (optim.m.<param>, optim.v.<param>).
#pragma once
#include <cstdint>

#include "engine/backend.h"
#include "engine/config.h"
#include "engine/tensor_buffer.h"

namespace mg {

// ZeRO-1: the moments of the parameters [first, first + count) of the flat buffer only, one
// rank's slice; enqueue() then updates that slice of the parameters from the same slice of the
// gradients, and the caller shares the slices (engine/train_step.h). count 0: every parameter.
struct OptimizerShard {
  int64_t first = 0, count = 0;
};

class Optimizer {
 public:
  Optimizer(Backend& be, const TensorLayout& layout, const OptimConfig& cfg, OptimizerShard shard = {});
  ~Optimizer();
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // Clips grads in place when cfg.clip_norm > 0, then updates params. The gradient norm
  // (before clipping) is left in norm_device() without a host synchronisation. Sharded: the
  // update covers the shard's slice only, and so does the norm, unless cfg.clip_norm > 0: then
  // grads must hold the whole summed gradient (TrainStep all-gathers it), whose global norm
  // decides the clip as in one process.
  void step(TensorBuffer& params, TensorBuffer& grads, double lr);
  // step() split for capture: set_scalars() advances the step count and uploads {lr, step};
  // enqueue() issues the device work, which reads them from device memory. A captured
  // enqueue() is replayed after each set_scalars().
  void set_scalars(double lr);
  void enqueue(TensorBuffer& params, TensorBuffer& grads);
  void step(TensorBuffer& params, TensorBuffer& grads) { step(params, grads, cfg_.adam.lr); }

  int64_t step_count() const { return step_; }
  void set_step_count(int64_t s) { step_ = s; }
  const float* norm_device() const { return norm_; }
  float* norm_device() { return norm_; }
  const OptimConfig& config() const { return cfg_; }
  // Sharded: m() and v() hold the slice, as one tensor "shard" [count].
  bool sharded() const { return shard_.count > 0; }
  const OptimizerShard& shard() const { return shard_; }
  TensorBuffer& m() { return m_; }
  TensorBuffer& v() { return v_; }
  const TensorBuffer& m() const { return m_; }
  const TensorBuffer& v() const { return v_; }

 private:
  Backend& be_;
  OptimConfig cfg_;
  OptimizerShard shard_;
  TensorBuffer m_, v_;
  float* norm_ = nullptr;      // device scalar
  double* scalars_ = nullptr;  // device [2] = {lr, step} for adam_step
  int64_t step_ = 0;
};

}  // namespace mg
