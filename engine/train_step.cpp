#include "engine/train_step.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace mg {

TrainStep::TrainStep(Model& model) : model_(model), be_(model.backend()) {
  triplets_ = be_.alloc<int32_t>(3 * static_cast<int64_t>(model.plan().head_batch));
  stats_ = be_.alloc<float>(2);
  be_.fill(stats_, 2, 0.0f);
}

TrainStep::~TrainStep() {
  be_.free_bytes(triplets_);
  be_.free_bytes(stats_);
  if (hops_) be_.free_bytes(hops_);
  if (mine_counts_) be_.free_bytes(mine_counts_);
  if (contrastive_ws_) be_.free_bytes(contrastive_ws_);
  if (gathered_) be_.free_bytes(gathered_);
  if (zero_norms_) be_.free_bytes(zero_norms_);
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

std::vector<uint8_t> TrainStep::pair_hops(int n, int far) {
  const size_t N = 2 * static_cast<size_t>(n);
  std::vector<uint8_t> h(N * N, static_cast<uint8_t>(far));
  for (size_t i = 0; i < N; ++i) h[i * N + i] = 0;
  for (size_t i = 0; i < static_cast<size_t>(n); ++i) h[i * N + n + i] = h[(n + i) * N + i] = 1;
  return h;
}

void TrainStep::set_triplets(const std::vector<int32_t>& table) {
  const size_t n = table.size() / 3;
  if (table.size() % 3 != 0 || n == 0 || n > static_cast<size_t>(model_.plan().head_batch))
    throw std::invalid_argument("TrainStep: triplet table of " + std::to_string(table.size()) +
                                " entries; need 3 * n with 1 <= n <= " + std::to_string(model_.plan().head_batch));
  be_.to_device(triplets_, table.data(), table.size() * sizeof(int32_t));
  if (mode_ != Mode::Table) {  // recorded graphs mine or run the contrastive loss; this table must be used as it is
    mode_ = Mode::Table;
    forget_captures();
  }
  n_triplets_ = static_cast<int>(n);  // baked into a graph: part of each phase's key
}

void TrainStep::set_in_batch(const std::vector<uint8_t>& hops, int anchors, const char* who) {
  const int max_batch = model_.plan().head_batch;
  if (anchors < 1 || 2 * static_cast<int64_t>(anchors) > max_batch || anchors > kMaxMiningAnchors)
    throw std::invalid_argument(std::string("TrainStep::") + who + ": " + std::to_string(anchors) +
                                " anchors; need 1 <= anchors <= " +
                                std::to_string(std::min(max_batch / 2, kMaxMiningAnchors)) +
                                " (anchors + positives fill the batch of " + std::to_string(max_batch) + " clips)");
  const size_t n = 2 * static_cast<size_t>(anchors);
  if (hops.size() != n * n)
    throw std::invalid_argument(std::string("TrainStep::") + who + ": hops has " + std::to_string(hops.size()) +
                                " entries; need " + std::to_string(n) + " x " + std::to_string(n) + " for " +
                                std::to_string(anchors) + " anchors and their positives");
  if (!hops_) {  // first use: never inside a capture
    hops_ = be_.alloc<uint8_t>(static_cast<int64_t>(max_batch) * max_batch);
    mine_counts_ = be_.alloc<float>(2);
    be_.fill(mine_counts_, 2, 0.0f);
  }
  be_.to_device(hops_, hops.data(), hops.size());
}

void TrainStep::set_mining(const std::vector<uint8_t>& hops, int anchors, NegativeMining rule, int neg_hops) {
  if (neg_hops < 1 || neg_hops > 255)
    throw std::invalid_argument("TrainStep::set_mining: neg_hops must be in 1..255, got " + std::to_string(neg_hops));
  set_in_batch(hops, anchors, "set_mining");
  if (mode_ != Mode::Mining || anchors != n_triplets_ || rule != mining_rule_ || neg_hops != neg_hops_)
    forget_captures();
  mode_ = Mode::Mining;
  mining_rule_ = rule;
  neg_hops_ = neg_hops;
  n_triplets_ = anchors;
}

void TrainStep::set_contrastive(const std::vector<uint8_t>& hops, int anchors, int pos_hops, int neg_hops) {
  check_contrastive_params(ContrastiveLossParams{1.0, pos_hops, neg_hops});
  set_in_batch(hops, anchors, "set_contrastive");
  if (!contrastive_ws_)  // first use: never inside a capture
    contrastive_ws_ = be_.alloc_bytes(contrastive_workspace_bytes(model_.plan().head_batch));
  if (mode_ != Mode::Contrastive || anchors != n_triplets_ || pos_hops != pos_hops_ || neg_hops != neg_hops_)
    forget_captures();
  mode_ = Mode::Contrastive;
  pos_hops_ = pos_hops;
  neg_hops_ = neg_hops;
  n_triplets_ = anchors;
}

void TrainStep::forget_captures() { phases_.clear(); }

void TrainStep::set_data_parallel(dist::Comm& comm) {
  const int world = comm.size();
  if (static_cast<int64_t>(world) * model_.max_batch() > model_.plan().head_batch)
    throw std::invalid_argument("TrainStep::set_data_parallel: " + std::to_string(world) + " ranks of " +
                                std::to_string(model_.max_batch()) + " rows need a model whose head takes " +
                                std::to_string(world * model_.max_batch()) + " rows (it takes " +
                                std::to_string(model_.plan().head_batch) + ")");
  if (world > 1 && be_.device() != Device::CPU && !comm.device_memory())
    throw std::invalid_argument(
        "TrainStep::set_data_parallel: " + comm.describe() +
        " moves host memory, and this backend's tensors are on a GPU (use NCCL's communicator)");
  comm_ = &comm;
  if (!gathered_)  // never inside a capture
    gathered_ = be_.alloc<float>(static_cast<int64_t>(model_.plan().head_batch) * model_.plan().head_width());
  forget_captures();
}

OptimizerShard TrainStep::zero_shard(const Model& model, const dist::Comm& comm) {
  const int64_t total = model.params().size(), world = comm.size();
  if (total % (64 * world) != 0)
    throw std::invalid_argument("TrainStep::zero_shard: the model's flat buffer of " + std::to_string(total) +
                                " floats does not split into " + std::to_string(world) +
                                " slices of whole 64-float blocks (build the model with flat_multiple = 64 R)");
  const int64_t slice = total / world;
  return OptimizerShard{comm.rank() * slice, slice};
}

void TrainStep::set_zero(const Optimizer& opt) {
  if (!comm_) throw std::logic_error("TrainStep::set_zero: set_data_parallel() first");
  const OptimizerShard want = zero_shard(model_, *comm_);
  if (!opt.sharded() || opt.shard().first != want.first || opt.shard().count != want.count)
    throw std::invalid_argument("TrainStep::set_zero: the optimizer must hold this rank's slice [" +
                                std::to_string(want.first) + ", " + std::to_string(want.first + want.count) +
                                ") (TrainStep::zero_shard)");
  zero_ = want;
  zero_whole_grads_ = opt.config().clip_norm > 0;
  if (!zero_norms_) zero_norms_ = be_.alloc<float>(comm_->size());  // never inside a capture
  be_.fill(zero_norms_, comm_->size(), 0.0f);
  forget_captures();
}

bool TrainStep::collective() const { return comm_ && (comm_->size() > 1 || comm_->device_memory()); }

// A stage's gradients, final once its backward is enqueued, summed over the ranks while the
// earlier stages' backward runs: whole on every rank, or under ZeRO-1 each part at the rank
// whose slice holds it. The head's gradients need no sum: every rank computes them alike from
// the gathered batch.
void TrainStep::sum_stage_gradients(size_t stage) {
  const Model::Span g = model_.stage_param_span(stage);
  if (zero_.count > 0)
    dist::reduce_to_owners(*comm_, model_.grads().data(), g.first, g.count, zero_.count);
  else
    comm_->allreduce_sum_async(model_.grads().data() + g.first, g.count);
}

void TrainStep::share_slice_norms(const Optimizer& opt) {
  if (collective())
    comm_->allgather(opt.norm_device(), zero_norms_, 1);
  else
    be_.copy(zero_norms_, opt.norm_device(), sizeof(float));
}

void TrainStep::share_parameters() {
  if (collective()) comm_->allgather_slices(model_.params().data(), zero_.count);
}

// Every rank's pooled rows, in the order one process would have them. A batch is `blocks`
// blocks (anchors, positives[, negatives]) of n rows; rank r holds rows [r n/R, (r+1) n/R) of
// each block, so its block k lands at global row k n + r n/R. gathered_ holds the allgather's
// rank-major rows on the way.
const float* TrainStep::gather_and_forward_head(int batch, int blocks) {
  const int world = comm_->size(), D = model_.plan().head_width();
  const size_t per = static_cast<size_t>(batch / blocks);  // a block's rows on this rank
  const size_t row = static_cast<size_t>(D) * sizeof(float);
  if (world > 1 || comm_->device_memory())
    comm_->allgather(model_.pooled(), gathered_, static_cast<int64_t>(batch) * D);
  else  // one rank's gather is a copy, in the device's memory (a host communicator cannot reach it)
    be_.copy(gathered_, model_.pooled(), static_cast<size_t>(batch) * row);
  for (int r = 0; r < world; ++r)
    for (int k = 0; k < blocks; ++k)
      be_.copy(model_.pooled() + (static_cast<size_t>(k * world + r) * per) * static_cast<size_t>(D),
               gathered_ + (static_cast<size_t>(r) * static_cast<size_t>(batch) + k * per) * static_cast<size_t>(D),
               per * row);
  return model_.forward_from_pooled(batch * world);
}

// This rank's rows of the global dpooled, back in its own order (gathered_ as the staging), then
// the rest of the backward on them; the conv stack's gradients summed over the ranks, a
// bucket per stage, each started as soon as its stage's backward is enqueued.
void TrainStep::backward_own_rows(const float* demb, int batch, int blocks) {
  const int world = comm_->size(), D = model_.plan().head_width();
  const size_t per = static_cast<size_t>(batch / blocks);
  model_.backward_to_pooled(demb, batch * world);
  for (int k = 0; k < blocks; ++k)
    be_.copy(gathered_ + k * per * static_cast<size_t>(D),
             model_.dpooled() + (static_cast<size_t>(k * world + comm_->rank()) * per) * static_cast<size_t>(D),
             per * static_cast<size_t>(D) * sizeof(float));
  model_.backward_pool(gathered_, batch);
  const bool sum = collective();  // one rank's sum is the gradient itself
  for (size_t i = model_.plan().stages.size(); i-- > 0;) {
    model_.backward_stage(i, batch);
    if (sum) sum_stage_gradients(i);
  }
  if (!sum) return;
  comm_->wait_sums();
  if (zero_whole_grads_) comm_->allgather_slices(model_.grads().data(), zero_.count);
}

void TrainStep::forward_backward(const float* audio, int local_batch, const LossConfig& loss) {
  if (n_triplets_ == 0) throw std::logic_error("TrainStep: set_triplets() before the first step");
  const int world = comm_ ? comm_->size() : 1;
  const int batch = local_batch * world;  // the global batch's rows
  const int blocks = mode_ == Mode::Table ? 3 : 2;
  if (comm_ && (local_batch < 1 || local_batch > model_.max_batch() || local_batch % blocks != 0))
    throw std::invalid_argument("TrainStep: a rank's batch of " + std::to_string(local_batch) +
                                " rows must be whole blocks of " + std::to_string(blocks) + " and at most " +
                                std::to_string(model_.max_batch()) + " rows");
  if (mode_ != Mode::Table && batch != 2 * n_triplets_)
    throw std::invalid_argument("TrainStep: a batch of " + std::to_string(n_triplets_) +
                                " anchors and their positives has " + std::to_string(2 * n_triplets_) +
                                " clips, got " + std::to_string(batch));
  if ((mode_ == Mode::Contrastive) != (loss.name == LossKind::Contrastive))
    throw std::logic_error(loss.name == LossKind::Contrastive
                               ? "TrainStep: the contrastive loss needs set_contrastive() (the batch's graph distances)"
                               : "TrainStep: set_contrastive() was called but the loss is the triplet loss");
  const int E = model_.plan().embedding;
  model_.zero_grad();
  const float* emb = nullptr;  // [batch, E]: every rank's rows
  if (!comm_) {
    emb = model_.forward(audio, batch);
  } else {
    model_.forward_mel(audio, local_batch);
    model_.forward_conv(local_batch);
    model_.forward_pool(local_batch);
    emb = gather_and_forward_head(local_batch, blocks);
  }
  float* demb = model_.demb_buffer();
  if (mode_ == Mode::Contrastive) {
    be_.contrastive_loss(emb, hops_, batch, E, ContrastiveLossParams{loss.temperature, pos_hops_, neg_hops_}, stats_,
                         demb, contrastive_ws_);
  } else {
    if (mode_ == Mode::Mining)
      be_.mine_triplets(emb, hops_, n_triplets_, E, MiningParams{mining_rule_, neg_hops_, loss.margin, loss.eps},
                        triplets_, mine_counts_);
    be_.triplet_loss(emb, triplets_, n_triplets_, batch, E, loss, stats_, demb);
  }
  if (!comm_)
    model_.backward(demb, batch);
  else
    backward_own_rows(demb, local_batch, blocks);
}

void TrainStep::step(const float* audio, int batch, const LossConfig& loss, Optimizer& opt, double lr) {
  opt.set_scalars(lr);
  run_phase(PhaseKind::Whole, audio, batch, loss, &opt, [&] {
    forward_backward(audio, batch, loss);
    opt.enqueue(model_.params(), model_.grads());
    if (zero_slice_norms()) share_slice_norms(opt);
    if (zero_.count > 0) share_parameters();
  });
}

void TrainStep::run_phase(PhaseKind kind, const void* audio, int batch, const LossConfig& loss, const Optimizer* opt,
                          const std::function<void()>& work) {
  launch_phase(kind, audio, batch, loss, opt, work);
  if (comm_) comm_->watch_enqueued_work();
}

void TrainStep::launch_phase(PhaseKind kind, const void* audio, int batch, const LossConfig& loss, const Optimizer* opt,
                             const std::function<void()>& work) {
  const int n_triplets = kind == PhaseKind::Update ? 0 : n_triplets_;  // the update does not use the table
  Phase* ph = nullptr;
  for (Phase& p : phases_) {
    if (p.kind == kind && p.audio == audio && p.batch == batch && p.n_triplets == n_triplets && p.opt == opt &&
        p.loss == loss) {
      ph = &p;
      break;
    }
  }
  if (!ph) {
    phases_.push_back(Phase{kind, audio, batch, n_triplets, opt, loss, 0, nullptr});
    ph = &phases_.back();
  }
  replaying_ = ph->graph != nullptr;
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
  replaying_ = true;
  ph->graph->replay();
}

void TrainStep::gradients(const float* audio, int batch, const LossConfig& loss, Optimizer& opt) {
  if (n_triplets_ == 0) throw std::logic_error("TrainStep: set_triplets() before the first step");
  run_phase(PhaseKind::Gradients, audio, batch, loss, &opt, [&] {
    forward_backward(audio, batch, loss);
    // max_norm 0: measure only; update() clips.
    if (!zero_slice_norms()) {
      be_.clip_grad_norm(model_.grads().data(), model_.grads().size(), 0.0, opt.norm_device());
      return;
    }
    be_.clip_grad_norm(model_.grads().data() + zero_.first, zero_.count, 0.0, opt.norm_device());
    share_slice_norms(opt);
  });
}

void TrainStep::update(Optimizer& opt, double lr) {
  opt.set_scalars(lr);
  run_phase(PhaseKind::Update, nullptr, 0, LossConfig{}, &opt, [&] {
    opt.enqueue(model_.params(), model_.grads());
    if (zero_.count > 0) share_parameters();
  });
}

StepStats TrainStep::read_stats(const Optimizer* opt) {
  float host[2];
  be_.synchronize();
  be_.to_host(host, stats_, sizeof host);
  StepStats s;
  s.loss = host[0];
  s.active = host[1];
  if (mode_ == Mode::Mining) {
    float counts[2];
    be_.to_host(counts, mine_counts_, sizeof counts);
    s.mined = counts[0];
    s.candidates = counts[1];
  }
  // Device losses cannot throw; they flag a table row outside the batch with active = -1.
  if (s.active < 0)
    throw std::out_of_range("triplet table refers to rows outside the batch of " +
                            std::to_string(model_.max_batch()) + " clips");
  if (opt && zero_slice_norms()) {  // the norm of the slices' norms, in rank order: the same on every rank
    std::vector<float> norms(static_cast<size_t>(comm_->size()));
    be_.to_host(norms.data(), zero_norms_, norms.size() * sizeof(float));
    double sq = 0;
    for (float n : norms) sq += static_cast<double>(n) * n;
    s.grad_norm = static_cast<float>(std::sqrt(sq));
  } else if (opt) {
    be_.to_host(&s.grad_norm, opt->norm_device(), sizeof(float));
  }
  return s;
}

}  // namespace mg
