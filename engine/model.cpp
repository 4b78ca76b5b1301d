#include "engine/model.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace mg {

TensorLayout Model::param_layout(const Config& c) {
  TensorLayout l;
  int64_t cin = c.mel.n_mels;
  for (size_t i = 0; i < c.model.channels.size(); ++i) {
    const int64_t cout = c.model.channels[i];
    l.add("conv." + std::to_string(i) + ".weight", {cout, cin, c.model.kernel});
    l.add("conv." + std::to_string(i) + ".bias", {cout});
    cin = cout;
  }
  // The head's fan-in: the pooled features, k per channel of each pooled stage.
  const int64_t width = pooled_width(c);
  if (c.model.head_norm == HeadNorm::Batch) {
    l.add("head_norm.weight", {width});
    l.add("head_norm.bias", {width});
  }
  l.add("linear.weight", {c.model.embedding, width});
  l.add("linear.bias", {c.model.embedding});
  return l;
}

TensorLayout Model::state_layout(const Config& c) {
  TensorLayout l;
  if (c.model.input_norm == InputNorm::Band) {
    l.add("input_norm.mean", {c.mel.n_mels});
    l.add("input_norm.std", {c.mel.n_mels});
  }
  const int64_t width = pooled_width(c);
  if (c.model.head_norm == HeadNorm::Batch) {
    l.add("head_norm.running_mean", {width});
    l.add("head_norm.running_var", {width});
  }
  return l;
}

ModelPlan Model::plan_with_head(ModelPlan p, int head_batch) {
  if (head_batch != 0 && head_batch < p.batch)
    throw std::invalid_argument("Model: head_batch " + std::to_string(head_batch) + " < batch " +
                                std::to_string(p.batch) + " (the head holds every rank's rows)");
  if (head_batch != 0) p.head_batch = head_batch;
  return p;
}

TensorLayout Model::activation_layout(const ModelPlan& p) {
  TensorLayout l;
  const int64_t B = p.batch, H = p.head_batch;
  l.add("mel", {B, p.n_mels, p.frames});
  if (p.input_norm) l.add("band", {B, p.n_mels, p.frames});
  for (size_t i = 0; i < p.stages.size(); ++i) {
    const StagePlan& s = p.stages[i];
    l.add("conv." + std::to_string(i), {B, s.conv.Cout, s.t_conv});  // post-ReLU
    if (s.pool) l.add("pool." + std::to_string(i), {B, s.conv.Cout, s.t_out});
  }
  l.add("pooled", {H, p.head_width()});  // [mean | max | l2] per clip row
  if (p.head_norm) l.add("norm", {H, p.head_width()});
  if (p.dropout > 0) {
    l.add("dropout", {H, p.head_width()});       // the linear layer's input in training
    l.add("dropout_mask", {H, p.head_width()});  // 0 or 1 / (1 - p); its gradient twin is unused
  }
  l.add("linear", {H, p.embedding});
  l.add("emb", {H, p.embedding});
  if (p.features_out) l.add("features", {H, p.head_width()});
  return l;
}

TensorLayout Model::padded_param_layout(const Config& c, int64_t flat_multiple) {
  TensorLayout l = param_layout(c);
  l.pad_total_to(flat_multiple);
  return l;
}

Model::Model(const Config& c, Backend& be, int max_batch, int head_batch, int64_t flat_multiple)
    : config_(c),
      be_(be),
      plan_(plan_with_head(make_model_plan(c, max_batch), head_batch)),
      params_(be, padded_param_layout(c, flat_multiple)),
      grads_(be, padded_param_layout(c, flat_multiple)),
      state_(be, state_layout(c)),
      acts_(be, activation_layout(plan_)),
      dacts_(be, activation_layout(plan_)) {
  // The state starts as the identity: input statistics 0 and 1, running mean 0 and variance 1.
  if (plan_.input_norm)
    set_input_stats(std::vector<float>(static_cast<size_t>(plan_.n_mels), 0.0f),
                    std::vector<float>(static_cast<size_t>(plan_.n_mels), 1.0f));
  reset_running_stats();
  dropout_rng_ = be_.alloc<uint64_t>(2);
  try {
    set_dropout_step(c.train.seed, 0);
  } catch (...) {
    be_.free_bytes(dropout_rng_);
    throw;
  }
}

Model::~Model() { be_.free_bytes(dropout_rng_); }

void Model::set_dropout_step(uint64_t seed, uint64_t step) {
  const uint64_t host[2] = {seed, dropout_stream(step)};
  be_.to_device(dropout_rng_, host, sizeof host);
}

void Model::set_input_stats(const std::vector<float>& mean, const std::vector<float>& std) {
  if (!plan_.input_norm) throw std::logic_error("Model::set_input_stats: the model has no input_norm");
  const auto n = static_cast<size_t>(plan_.n_mels);
  if (mean.size() != n || std.size() != n)
    throw std::invalid_argument("Model::set_input_stats: need " + std::to_string(n) + " bands, got " +
                                std::to_string(mean.size()) + " means and " + std::to_string(std.size()) + " stds");
  for (size_t c = 0; c < n; ++c)
    if (!std::isfinite(mean[c]) || !(std[c] > 0) || !std::isfinite(std[c]))
      throw std::invalid_argument("Model::set_input_stats: band " + std::to_string(c) + " has mean " +
                                  std::to_string(mean[c]) + ", std " + std::to_string(std[c]) +
                                  " (need finite values and std > 0)");
  be_.to_device(state_.ptr("input_norm.mean"), mean.data(), n * sizeof(float));
  be_.to_device(state_.ptr("input_norm.std"), std.data(), n * sizeof(float));
}

void Model::init_params(uint64_t seed) {
  const auto& specs = params_.layout().specs();
  for (size_t i = 0; i < specs.size(); ++i) {
    const TensorSpec& s = specs[i];
    if (s.name == "head_norm.weight" || s.name == "head_norm.bias") {  // torch's BatchNorm1d: 1 and 0
      be_.fill(params_.data() + s.offset, s.numel(), s.name == "head_norm.weight" ? 1.0f : 0.0f);
      continue;
    }
    // fan_in of the layer this tensor belongs to: weight [out, in, (K)] -> in * K; a bias
    // shares its weight's fan_in (the weight precedes it in the layout).
    const TensorSpec& w = (s.shape.size() == 1 && i > 0) ? specs[i - 1] : s;
    int64_t fan_in = 1;
    for (size_t d = 1; d < w.shape.size(); ++d) fan_in *= w.shape[d];
    const float bound = static_cast<float>(1.0 / std::sqrt(static_cast<double>(fan_in)));
    be_.fill_uniform(params_.data() + s.offset, s.numel(), -bound, bound, seed, i);
  }
  reset_running_stats();
}

void Model::reset_running_stats() {
  for (const TensorSpec& s : state_.layout().specs())
    if (s.name == "head_norm.running_mean" || s.name == "head_norm.running_var")
      be_.fill(state_.data() + s.offset, s.numel(), s.name == "head_norm.running_var" ? 1.0f : 0.0f);
}

Conv1dDims Model::stage_dims(size_t i, int B) const {
  Conv1dDims d = plan_.stages[i].conv;
  d.B = B;
  return d;
}

std::string Model::stage_output(size_t i) const {
  return (plan_.stages[i].pool ? "pool." : "conv.") + std::to_string(i);
}

const float* Model::stage_input(size_t i) const {
  if (i == 0) return acts_.ptr(plan_.input_norm ? "band" : "mel");
  return acts_.ptr(stage_output(i - 1));
}

float* Model::stage_input_grad(size_t i) {
  return i == 0 ? nullptr : dacts_.ptr(stage_output(i - 1));  // audio/mel need no gradient
}

void Model::check_batch(int B, const char* what, bool head) const {
  const int most = head ? plan_.head_batch : plan_.batch;
  if (B < 1 || B > most)
    throw std::invalid_argument(std::string("Model::") + what + ": batch " + std::to_string(B) + " outside [1, " +
                                std::to_string(most) + "]");
}

const float* Model::forward(const float* audio, int B) {
  check_batch(B, "forward");
  forward_mel(audio, B);
  forward_conv(B);
  return forward_head(B);
}

const float* Model::embed(const float* audio, int B) {
  const float* emb = forward(audio, B);
  if (!plan_.features_out) return emb;
  // The features the linear layer reads, before dropout (which eval mode skips anyway).
  be_.l2norm_forward(acts_.ptr(plan_.head_norm ? "norm" : "pooled"), acts_.ptr("features"), B, plan_.head_width(),
                     config_.model.l2_eps);
  return acts_.ptr("features");
}

void Model::backward(const float* demb, int B) {
  check_batch(B, "backward");
  backward_head(demb, B);
  backward_conv(B);
}

void Model::forward_mel(const float* audio, int B) {
  be_.mel_forward(audio, acts_.ptr("mel"), B, plan_.samples, config_.mel);
  if (plan_.input_norm)
    be_.band_norm_forward(acts_.ptr("mel"), state_.ptr("input_norm.mean"), state_.ptr("input_norm.std"),
                          acts_.ptr("band"), B, plan_.n_mels, plan_.frames);
}

void Model::forward_conv(int B) {
  for (size_t i = 0; i < plan_.stages.size(); ++i) {
    const StagePlan& s = plan_.stages[i];
    const Conv1dDims d = stage_dims(i, B);
    const std::string n = std::to_string(i);
    float* conv = acts_.ptr("conv." + n);
    be_.conv1d_forward(stage_input(i), params_.ptr("conv." + n + ".weight"), params_.ptr("conv." + n + ".bias"), conv,
                       d, config_.train.precision);
    be_.relu_forward(conv, conv, static_cast<int64_t>(B) * d.Cout * s.t_conv);
    if (s.pool)
      be_.maxpool_forward(conv, acts_.ptr("pool." + n), static_cast<int64_t>(B) * d.Cout, s.t_conv,
                          config_.model.pool);
  }
}

const float* Model::forward_head(int B) {
  forward_pool(B);
  return forward_from_pooled(B);
}

void Model::forward_pool(int B) {
  for (size_t i = plan_.first_pooled_stage(); i < plan_.stages.size(); ++i) pool_stage_forward(i, B);
}

// Global pooling of stage i's output: each feature writes its C_i-wide block of the clip's
// row of `pooled`, in the stage's block from pooled_offset(i).
void Model::pool_stage_forward(size_t i, int B) {
  const StagePlan& s = plan_.stages[i];
  const int C = s.conv.Cout, k = plan_.pooled_features();
  const int64_t rows = static_cast<int64_t>(B) * C;
  const RowOut out{C, plan_.head_width()};
  const float* feat = acts_.ptr(stage_output(i));                // [B, C, T]
  float* pooled = acts_.ptr("pooled") + plan_.pooled_offset(i);  // [B, D], this stage's block
  be_.mean_time_forward(feat, pooled, rows, s.t_out, out);
  if (k >= 2) be_.max_time_forward(feat, pooled + C, rows, s.t_out, out);
  if (k >= 3) be_.l2_time_forward(feat, pooled + 2 * C, rows, s.t_out, out);
}

const float* Model::forward_from_pooled(int B) {
  check_batch(B, "forward_from_pooled", true);
  const int E = plan_.embedding, D = plan_.head_width();
  const float* pooled = acts_.ptr("pooled");  // [B, D]
  const float* head_in = pooled;              // [B, D]
  batch_stats_ = training_ && plan_.head_norm;
  if (plan_.head_norm) {
    be_.batchnorm_forward(pooled, params_.ptr("head_norm.weight"), params_.ptr("head_norm.bias"), acts_.ptr("norm"),
                          state_.ptr("head_norm.running_mean"), state_.ptr("head_norm.running_var"), B, D,
                          BatchNormParams{}, training_);
    head_in = acts_.ptr("norm");
  }
  dropped_ = training_ && plan_.dropout > 0;
  if (dropped_) {
    be_.dropout_forward(head_in, acts_.ptr("dropout"), acts_.ptr("dropout_mask"), static_cast<int64_t>(B) * D,
                        plan_.dropout, dropout_rng_);
    head_in = acts_.ptr("dropout");
  }
  be_.linear_forward(head_in, params_.ptr("linear.weight"), params_.ptr("linear.bias"), acts_.ptr("linear"), B, D, E,
                     config_.train.precision);
  be_.l2norm_forward(acts_.ptr("linear"), acts_.ptr("emb"), B, E, config_.model.l2_eps);
  return acts_.ptr("emb");
}

void Model::backward_head(const float* demb, int B) {
  backward_to_pooled(demb, B);
  backward_pool(dacts_.ptr("pooled"), B);
}

void Model::backward_to_pooled(const float* demb, int B) {
  check_batch(B, "backward_to_pooled", true);
  const int E = plan_.embedding, D = plan_.head_width();
  if (plan_.head_norm && !batch_stats_)
    throw std::logic_error("Model::backward: the last forward ran in evaluation mode; batch norm's backward needs "
                           "the batch statistics of a training-mode forward");
  be_.l2norm_backward(demb, acts_.ptr("linear"), acts_.ptr("emb"), dacts_.ptr("linear"), B, E,
                      config_.model.l2_eps);
  // The head's chain: pooled -> (norm) -> (dropout) -> linear; each backward writes the
  // gradient of the tensor before it.
  const std::string normed = plan_.head_norm ? "norm" : "pooled";
  const std::string head_in = dropped_ ? "dropout" : normed;
  be_.linear_backward(dacts_.ptr("linear"), acts_.ptr(head_in), params_.ptr("linear.weight"), dacts_.ptr(head_in),
                      grads_.ptr("linear.weight"), grads_.ptr("linear.bias"), B, D, E, config_.train.precision);
  if (dropped_)
    be_.dropout_backward(dacts_.ptr("dropout"), acts_.ptr("dropout_mask"), dacts_.ptr(normed),
                         static_cast<int64_t>(B) * D);
  if (plan_.head_norm)
    be_.batchnorm_backward(dacts_.ptr("norm"), acts_.ptr("pooled"), params_.ptr("head_norm.weight"),
                           dacts_.ptr("pooled"), grads_.ptr("head_norm.weight"), grads_.ptr("head_norm.bias"), B, D,
                           BatchNormParams{});
}

void Model::backward_pool(const float* dpooled, int B) {
  dpooled_ = dpooled;
  pool_stage_backward(plan_.stages.size() - 1, B, false);
}

// The pooled features' gradients of stage i meet in d(stage i's output): the mean's backward
// writes it (or adds to it, for a stage below the last, whose output's gradient the next
// stage's conv backward wrote), the max's and the L2's add theirs, in that fixed order on
// every backend.
void Model::pool_stage_backward(size_t i, int B, bool accumulate) {
  if (!dpooled_) throw std::logic_error("Model::backward_stage: backward_pool() first (it holds dpooled)");
  const StagePlan& s = plan_.stages[i];
  const int C = s.conv.Cout, k = plan_.pooled_features();
  const int64_t rows = static_cast<int64_t>(B) * C;
  const RowOut out{C, plan_.head_width()};
  const float* feat = acts_.ptr(stage_output(i));            // [B, C, T]
  float* dfeat = dacts_.ptr(stage_output(i));                // [B, C, T]
  const float* dpooled = dpooled_ + plan_.pooled_offset(i);  // [B, D], this stage's block
  be_.mean_time_backward(dpooled, dfeat, rows, s.t_out, out, accumulate);
  if (k >= 2) be_.max_time_backward(dpooled + C, feat, dfeat, rows, s.t_out, out, true);
  if (k >= 3) be_.l2_time_backward(dpooled + 2 * C, feat, dfeat, rows, s.t_out, out, true);
}

int64_t Model::trunk_param_floats() const {
  int64_t end = 0;
  for (const TensorSpec& s : params_.layout().specs())
    if (s.name.rfind("conv.", 0) == 0) end = std::max(end, s.offset + s.numel());
  return end;
}

void Model::backward_conv(int B) {
  for (size_t i = plan_.stages.size(); i-- > 0;) backward_stage(i, B);
}

void Model::backward_stage(size_t i, int B) {
  const StagePlan& s = plan_.stages[i];
  const Conv1dDims d = stage_dims(i, B);
  const std::string n = std::to_string(i);
  const int64_t rows = static_cast<int64_t>(B) * d.Cout;
  float* conv = acts_.ptr("conv." + n);
  float* dconv = dacts_.ptr("conv." + n);
  // A stage below the last that the global pooling reads: its output's gradient is the next
  // stage's (written by that stage's conv backward) plus its pooled features'.
  if (i + 1 < plan_.stages.size() && i >= plan_.first_pooled_stage()) pool_stage_backward(i, B, true);
  if (s.pool) be_.maxpool_backward(dacts_.ptr("pool." + n), conv, dconv, rows, s.t_conv, config_.model.pool);
  be_.relu_backward(dconv, conv, dconv, rows * s.t_conv);
  be_.conv1d_backward(dconv, stage_input(i), params_.ptr("conv." + n + ".weight"), stage_input_grad(i),
                      grads_.ptr("conv." + n + ".weight"), grads_.ptr("conv." + n + ".bias"), d,
                      config_.train.precision);
}

Model::Span Model::stage_param_span(size_t i) const {
  if (i >= plan_.stages.size())
    throw std::out_of_range("Model::stage_param_span: stage " + std::to_string(i) + " of " +
                            std::to_string(plan_.stages.size()));
  const TensorLayout& l = params_.layout();
  const int64_t first = l.find("conv." + std::to_string(i) + ".weight").offset;
  const int64_t end =
      i + 1 < plan_.stages.size() ? l.find("conv." + std::to_string(i + 1) + ".weight").offset : trunk_param_floats();
  return Span{first, end - first};
}

}  // namespace mg
