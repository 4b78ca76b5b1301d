#include "engine/model.h"

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
  l.add("linear.weight", {c.model.embedding, cin});
  l.add("linear.bias", {c.model.embedding});
  return l;
}

TensorLayout Model::activation_layout(const ModelPlan& p) {
  TensorLayout l;
  const int64_t B = p.batch;
  l.add("mel", {B, p.n_mels, p.frames});
  for (size_t i = 0; i < p.stages.size(); ++i) {
    const StagePlan& s = p.stages[i];
    l.add("conv." + std::to_string(i), {B, s.conv.Cout, s.t_conv});  // post-ReLU
    if (s.pool) l.add("pool." + std::to_string(i), {B, s.conv.Cout, s.t_out});
  }
  const int64_t C = p.stages.back().conv.Cout;
  l.add("mean", {B, C});
  l.add("linear", {B, p.embedding});
  l.add("emb", {B, p.embedding});
  return l;
}

Model::Model(const Config& c, Backend& be, int max_batch)
    : config_(c),
      be_(be),
      plan_(make_model_plan(c, max_batch)),
      params_(be, param_layout(c)),
      grads_(be, param_layout(c)),
      acts_(be, activation_layout(plan_)),
      dacts_(be, activation_layout(plan_)) {}

void Model::init_params(uint64_t seed) {
  const auto& specs = params_.layout().specs();
  for (size_t i = 0; i < specs.size(); ++i) {
    const TensorSpec& s = specs[i];
    // fan_in of the layer this tensor belongs to: weight [out, in, (K)] -> in * K; a bias
    // shares its weight's fan_in (the weight precedes it in the layout).
    const TensorSpec& w = (s.shape.size() == 1 && i > 0) ? specs[i - 1] : s;
    int64_t fan_in = 1;
    for (size_t d = 1; d < w.shape.size(); ++d) fan_in *= w.shape[d];
    const float bound = static_cast<float>(1.0 / std::sqrt(static_cast<double>(fan_in)));
    be_.fill_uniform(params_.data() + s.offset, s.numel(), -bound, bound, seed, i);
  }
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
  return i == 0 ? acts_.ptr("mel") : acts_.ptr(stage_output(i - 1));
}

float* Model::stage_input_grad(size_t i) {
  return i == 0 ? nullptr : dacts_.ptr(stage_output(i - 1));  // audio/mel need no gradient
}

const float* Model::forward(const float* audio, int B) {
  if (B < 1 || B > plan_.batch)
    throw std::invalid_argument("Model::forward: batch " + std::to_string(B) + " outside [1, " +
                                std::to_string(plan_.batch) + "]");
  const int E = plan_.embedding;
  be_.mel_forward(audio, acts_.ptr("mel"), B, plan_.samples, config_.mel);
  for (size_t i = 0; i < plan_.stages.size(); ++i) {
    const StagePlan& s = plan_.stages[i];
    const Conv1dDims d = stage_dims(i, B);
    const std::string n = std::to_string(i);
    float* conv = acts_.ptr("conv." + n);
    be_.conv1d_forward(stage_input(i), params_.ptr("conv." + n + ".weight"), params_.ptr("conv." + n + ".bias"),
                       conv, d);
    be_.relu_forward(conv, conv, static_cast<int64_t>(B) * d.Cout * s.t_conv);
    if (s.pool)
      be_.maxpool_forward(conv, acts_.ptr("pool." + n), static_cast<int64_t>(B) * d.Cout, s.t_conv,
                          config_.model.pool);
  }
  const StagePlan& last = plan_.stages.back();
  const int C = last.conv.Cout;
  be_.mean_time_forward(acts_.ptr(stage_output(plan_.stages.size() - 1)), acts_.ptr("mean"),
                        static_cast<int64_t>(B) * C, last.t_out);
  be_.linear_forward(acts_.ptr("mean"), params_.ptr("linear.weight"), params_.ptr("linear.bias"),
                     acts_.ptr("linear"), B, C, E);
  be_.l2norm_forward(acts_.ptr("linear"), acts_.ptr("emb"), B, E, config_.model.l2_eps);
  return acts_.ptr("emb");
}

void Model::backward(const float* demb, int B) {
  const int E = plan_.embedding;
  const StagePlan& last = plan_.stages.back();
  const int C = last.conv.Cout;
  be_.l2norm_backward(demb, acts_.ptr("linear"), acts_.ptr("emb"), dacts_.ptr("linear"), B, E,
                      config_.model.l2_eps);
  be_.linear_backward(dacts_.ptr("linear"), acts_.ptr("mean"), params_.ptr("linear.weight"),
                      dacts_.ptr("mean"), grads_.ptr("linear.weight"), grads_.ptr("linear.bias"), B, C, E);
  be_.mean_time_backward(dacts_.ptr("mean"), dacts_.ptr(stage_output(plan_.stages.size() - 1)),
                         static_cast<int64_t>(B) * C, last.t_out);
  for (size_t i = plan_.stages.size(); i-- > 0;) {
    const StagePlan& s = plan_.stages[i];
    const Conv1dDims d = stage_dims(i, B);
    const std::string n = std::to_string(i);
    const int64_t rows = static_cast<int64_t>(B) * d.Cout;
    float* conv = acts_.ptr("conv." + n);
    float* dconv = dacts_.ptr("conv." + n);
    if (s.pool) be_.maxpool_backward(dacts_.ptr("pool." + n), conv, dconv, rows, s.t_conv, config_.model.pool);
    be_.relu_backward(dconv, conv, dconv, rows * s.t_conv);
    be_.conv1d_backward(dconv, stage_input(i), params_.ptr("conv." + n + ".weight"), stage_input_grad(i),
                        grads_.ptr("conv." + n + ".weight"), grads_.ptr("conv." + n + ".bias"), d);
  }
}

}  // namespace mg
