#include "engine/optimizer.h"

#include <stdexcept>
#include <string>

namespace mg {

namespace {

TensorLayout moments_layout(const TensorLayout& params, const OptimizerShard& shard) {
  if (shard.count == 0) return params;
  if (shard.first < 0 || shard.count < 0 || shard.first + shard.count > params.total())
    throw std::invalid_argument("Optimizer: shard [" + std::to_string(shard.first) + ", " +
                                std::to_string(shard.first + shard.count) + ") outside the " +
                                std::to_string(params.total()) + " floats of the parameters");
  TensorLayout l;
  l.add("shard", {shard.count});
  return l;
}

}  // namespace

Optimizer::Optimizer(Backend& be, const TensorLayout& layout, const OptimConfig& cfg, OptimizerShard shard)
    : be_(be), cfg_(cfg), shard_(shard), m_(be, moments_layout(layout, shard)), v_(be, moments_layout(layout, shard)) {
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
  if (sharded()) {
    const int64_t at = shard_.first, n = shard_.count;
    if (cfg_.clip_norm > 0)  // the whole gradient is here: its global norm, its slice clipped with the rest
      be_.clip_grad_norm(grads.data(), grads.size(), cfg_.clip_norm, norm_);
    else
      be_.clip_grad_norm(grads.data() + at, n, 0.0, norm_);  // measures the slice's norm
    be_.adam_step(params.data() + at, grads.data() + at, m_.data(), v_.data(), n, cfg_.adam, scalars_);
    return;
  }
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
