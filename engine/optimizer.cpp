#include "engine/optimizer.h"

namespace mg {

Optimizer::Optimizer(Backend& be, const TensorLayout& layout, const OptimConfig& cfg)
    : be_(be), cfg_(cfg), m_(be, layout), v_(be, layout) {
  norm_ = be_.alloc<float>(1);
  be_.fill(norm_, 1, 0.0f);
}

Optimizer::~Optimizer() { be_.free_bytes(norm_); }

void Optimizer::step(TensorBuffer& params, TensorBuffer& grads, double lr) {
  be_.clip_grad_norm(grads.data(), grads.size(), cfg_.clip_norm, norm_);
  AdamParams a = cfg_.adam;
  a.lr = lr;
  ++step_;
  // Padding between tensors holds zero gradients and zero parameters; Adam keeps them zero
  // (m = v = 0 -> update 0; AdamW's decay of 0 is 0), so the flat update is exact.
  be_.adam_step(params.data(), grads.data(), m_.data(), v_.data(), params.size(), a, step_);
}

}  // namespace mg
