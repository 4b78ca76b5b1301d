#include "engine/optimizer.h"

namespace mg {

Optimizer::Optimizer(Backend& be, const TensorLayout& layout, const OptimConfig& cfg)
    : be_(be), cfg_(cfg), m_(be, layout), v_(be, layout) {
  norm_ = be_.alloc<float>(1);
  be_.fill(norm_, 1, 0.0f);
  scalars_ = be_.alloc<double>(2);
}

Optimizer::~Optimizer() {
  be_.free_bytes(norm_);
  be_.free_bytes(scalars_);
}

void Optimizer::set_scalars(double lr) {
  ++step_;
  const double host[2] = {lr, static_cast<double>(step_)};
  be_.to_device(scalars_, host, sizeof host);
}

void Optimizer::enqueue(TensorBuffer& params, TensorBuffer& grads) {
  be_.clip_grad_norm(grads.data(), grads.size(), cfg_.clip_norm, norm_);
  // Padding between tensors holds zero gradients and zero parameters; Adam keeps them zero
  // (m = v = 0 -> update 0; AdamW's decay of 0 is 0), so the flat update is exact.
  be_.adam_step(params.data(), grads.data(), m_.data(), v_.data(), params.size(), cfg_.adam, scalars_);
}

void Optimizer::step(TensorBuffer& params, TensorBuffer& grads, double lr) {
  set_scalars(lr);
  enqueue(params, grads);
}

}  // namespace mg
