#include "engine/train_step.h"

#include <stdexcept>
#include <string>

namespace mg {

TrainStep::TrainStep(Model& model) : model_(model), be_(model.backend()) {
  triplets_ = be_.alloc<int32_t>(3 * static_cast<int64_t>(model.max_batch()));
  stats_ = be_.alloc<float>(2);
  be_.fill(stats_, 2, 0.0f);
}

TrainStep::~TrainStep() {
  be_.free_bytes(triplets_);
  be_.free_bytes(stats_);
}

std::vector<int32_t> TrainStep::offline_triplets(int n) {
  std::vector<int32_t> t(3 * static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    t[3 * static_cast<size_t>(i) + 0] = i;
    t[3 * static_cast<size_t>(i) + 1] = n + i;
    t[3 * static_cast<size_t>(i) + 2] = 2 * n + i;
  }
  return t;
}

void TrainStep::set_triplets(const std::vector<int32_t>& table) {
  const size_t n = table.size() / 3;
  if (table.size() % 3 != 0 || n == 0 || n > static_cast<size_t>(model_.max_batch()))
    throw std::invalid_argument("TrainStep: triplet table of " + std::to_string(table.size()) +
                                " entries; need 3 * n with 1 <= n <= " + std::to_string(model_.max_batch()));
  be_.to_device(triplets_, table.data(), table.size() * sizeof(int32_t));
  if (static_cast<int>(n) != n_triplets_) {  // the count is baked into the graph
    captured_.reset();
    eager_steps_ = 0;
  }
  n_triplets_ = static_cast<int>(n);
}

void TrainStep::forward_backward(const float* audio, int batch, const TripletLossParams& loss) {
  if (n_triplets_ == 0) throw std::logic_error("TrainStep: set_triplets() before the first step");
  const int E = model_.plan().embedding;
  model_.zero_grad();
  const float* emb = model_.forward(audio, batch);
  float* demb = model_.demb_buffer();
  be_.triplet_loss(emb, triplets_, n_triplets_, batch, E, loss, stats_, demb);
  model_.backward(demb, batch);
}

void TrainStep::step(const float* audio, int batch, const TripletLossParams& loss, Optimizer& opt, double lr) {
  const bool same = captured_ && captured_audio_ == audio && captured_batch_ == batch && captured_opt_ == &opt &&
                    captured_loss_.margin == loss.margin && captured_loss_.swap == loss.swap &&
                    captured_loss_.eps == loss.eps;
  if (captured_ && !same) {
    // A new shape or buffer: run it eagerly once before recording it, so libraries can plan
    // it (cuDNN searches synchronise and buffers may grow: neither is allowed in a capture).
    captured_.reset();
    eager_steps_ = 0;
  }
  opt.set_scalars(lr);
  if (captured_) {
    captured_->replay();
    return;
  }
  auto work = [&] {
    forward_backward(audio, batch, loss);
    opt.enqueue(model_.params(), model_.grads());
  };
  if (!capture_on_ || eager_steps_ < 1) {
    ++eager_steps_;
    work();
    return;
  }
  captured_ = be_.capture(work);
  if (!captured_) {  // the backend cannot capture (the CPU), or not yet: run eagerly
    work();
    return;
  }
  captured_audio_ = audio;
  captured_batch_ = batch;
  captured_opt_ = &opt;
  captured_loss_ = loss;
  captured_->replay();
}

StepStats TrainStep::read_stats(const Optimizer* opt) {
  float host[2];
  be_.synchronize();
  be_.to_host(host, stats_, sizeof host);
  StepStats s;
  s.loss = host[0];
  s.active = host[1];
  // Device losses cannot throw; they flag a table row outside the batch with active = -1.
  if (s.active < 0)
    throw std::out_of_range("triplet table refers to rows outside the batch of " +
                            std::to_string(model_.max_batch()) + " clips");
  if (opt) be_.to_host(&s.grad_norm, opt->norm_device(), sizeof(float));
  return s;
}

}  // namespace mg
