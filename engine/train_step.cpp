#include "engine/train_step.h"

#include <algorithm>
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
  if (hops_) be_.free_bytes(hops_);
  if (mine_counts_) be_.free_bytes(mine_counts_);
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
  if (mining_) {  // recorded graphs mine; this table must be used as it is
    mining_ = false;
    forget_captures();
  }
  if (static_cast<int>(n) != n_triplets_) {  // the count is baked into the graph
    captured_.reset();
    eager_steps_ = 0;
  }
  n_triplets_ = static_cast<int>(n);
}

void TrainStep::set_mining(const std::vector<uint8_t>& hops, int anchors, NegativeMining rule, int neg_hops) {
  const int max_batch = model_.max_batch();
  if (anchors < 1 || 2 * static_cast<int64_t>(anchors) > max_batch || anchors > kMaxMiningAnchors)
    throw std::invalid_argument("TrainStep::set_mining: " + std::to_string(anchors) +
                                " anchors; need 1 <= anchors <= " +
                                std::to_string(std::min(max_batch / 2, kMaxMiningAnchors)) +
                                " (anchors + positives fill the batch of " + std::to_string(max_batch) + " clips)");
  const size_t n = 2 * static_cast<size_t>(anchors);
  if (hops.size() != n * n)
    throw std::invalid_argument("TrainStep::set_mining: hops has " + std::to_string(hops.size()) + " entries; need " +
                                std::to_string(n) + " x " + std::to_string(n) + " for " + std::to_string(anchors) +
                                " anchors and their positives");
  if (neg_hops < 1 || neg_hops > 255)
    throw std::invalid_argument("TrainStep::set_mining: neg_hops must be in 1..255, got " + std::to_string(neg_hops));
  if (!hops_) {  // first use: never inside a capture
    hops_ = be_.alloc<uint8_t>(static_cast<int64_t>(max_batch) * max_batch);
    mine_counts_ = be_.alloc<float>(2);
    be_.fill(mine_counts_, 2, 0.0f);
  }
  be_.to_device(hops_, hops.data(), hops.size());
  if (!mining_ || anchors != n_triplets_ || rule != mining_rule_ || neg_hops != mining_neg_hops_) forget_captures();
  mining_ = true;
  mining_rule_ = rule;
  mining_neg_hops_ = neg_hops;
  n_triplets_ = anchors;
}

void TrainStep::forget_captures() {
  captured_.reset();
  eager_steps_ = 0;
  phases_.clear();
}

void TrainStep::forward_backward(const float* audio, int batch, const TripletLossParams& loss) {
  if (n_triplets_ == 0) throw std::logic_error("TrainStep: set_triplets() before the first step");
  if (mining_ && batch != 2 * n_triplets_)
    throw std::invalid_argument("TrainStep: in-batch mining over " + std::to_string(n_triplets_) +
                                " anchors needs a batch of " + std::to_string(2 * n_triplets_) + " clips, got " +
                                std::to_string(batch));
  const int E = model_.plan().embedding;
  model_.zero_grad();
  const float* emb = model_.forward(audio, batch);
  if (mining_)
    be_.mine_triplets(emb, hops_, n_triplets_, E, MiningParams{mining_rule_, mining_neg_hops_, loss.margin, loss.eps},
                      triplets_, mine_counts_);
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

void TrainStep::run_phase(const void* audio, int batch, const TripletLossParams& loss, const Optimizer* opt,
                          const std::function<void()>& work) {
  const int n_triplets = audio ? n_triplets_ : 0;  // the update phase does not use the table
  Phase* ph = nullptr;
  for (Phase& p : phases_) {
    if (p.audio == audio && p.batch == batch && p.n_triplets == n_triplets && p.opt == opt &&
        p.loss.margin == loss.margin && p.loss.swap == loss.swap && p.loss.eps == loss.eps) {
      ph = &p;
      break;
    }
  }
  if (!ph) {
    phases_.push_back(Phase{audio, batch, n_triplets, opt, loss, 0, nullptr});
    ph = &phases_.back();
  }
  if (ph->graph) {
    ph->graph->replay();
    return;
  }
  // The first run of a phase is eager, so libraries plan it (cuDNN searches synchronise and
  // buffers may grow: neither is allowed inside a capture).
  if (!capture_on_ || ph->eager_runs < 1) {
    ++ph->eager_runs;
    work();
    return;
  }
  ph->graph = be_.capture(work);
  if (!ph->graph) {  // the backend cannot capture (the CPU): eager from now on
    ph->eager_runs = 1 << 30;
    work();
    return;
  }
  ph->graph->replay();
}

void TrainStep::gradients(const float* audio, int batch, const TripletLossParams& loss, Optimizer& opt) {
  if (n_triplets_ == 0) throw std::logic_error("TrainStep: set_triplets() before the first step");
  run_phase(audio, batch, loss, &opt, [&] {
    forward_backward(audio, batch, loss);
    // max_norm 0: measure only; update() clips.
    be_.clip_grad_norm(model_.grads().data(), model_.grads().size(), 0.0, opt.norm_device());
  });
}

void TrainStep::update(Optimizer& opt, double lr) {
  opt.set_scalars(lr);
  run_phase(nullptr, 0, TripletLossParams{}, &opt, [&] { opt.enqueue(model_.params(), model_.grads()); });
}

StepStats TrainStep::read_stats(const Optimizer* opt) {
  float host[2];
  be_.synchronize();
  be_.to_host(host, stats_, sizeof host);
  StepStats s;
  s.loss = host[0];
  s.active = host[1];
  if (mining_) {
    float counts[2];
    be_.to_host(counts, mine_counts_, sizeof counts);
    s.mined = counts[0];
    s.candidates = counts[1];
  }
  // Device losses cannot throw; they flag a table row outside the batch with active = -1.
  if (s.active < 0)
    throw std::out_of_range("triplet table refers to rows outside the batch of " +
                            std::to_string(model_.max_batch()) + " clips");
  if (opt) be_.to_host(&s.grad_norm, opt->norm_device(), sizeof(float));
  return s;
}

}  // namespace mg
