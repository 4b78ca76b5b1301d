#include "engine/step_bench.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <stdexcept>

#include "engine/model.h"
#include "engine/model_plan.h"
#include "engine/optimizer.h"
#include "engine/tensor_buffer.h"
#include "engine/train_step.h"
#include "kernels/dropout_cpu.h"

namespace mg {

double median_seconds(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

namespace {

// The part buffers: the model's activations, named as in Model (mel, conv.i, pool.i, pooled,
// dropout, linear, emb), planned for the batch.
TensorLayout part_layout(const ModelPlan& p) {
  TensorLayout l;
  const int64_t B = p.batch;
  l.add("mel", {B, p.n_mels, p.frames});
  for (size_t i = 0; i < p.stages.size(); ++i) {
    const StagePlan& s = p.stages[i];
    l.add("conv." + std::to_string(i), {B, s.conv.Cout, s.t_conv});
    if (s.pool) l.add("pool." + std::to_string(i), {B, s.conv.Cout, s.t_out});
  }
  l.add("pooled", {B, p.head_width()});
  if (p.dropout > 0) {
    l.add("dropout", {B, p.head_width()});
    l.add("dropout_mask", {B, p.head_width()});
  }
  l.add("linear", {B, p.embedding});
  l.add("emb", {B, p.embedding});
  return l;
}

std::string stage_output(const ModelPlan& p, size_t i) {
  return (p.stages[i].pool ? "pool." : "conv.") + std::to_string(i);
}

// A device allocation freed on every way out.
template <class T>
struct DeviceArray {
  DeviceArray(Backend& be, int64_t n) : be_(be), p(be.alloc<T>(n)) {}
  ~DeviceArray() { be_.free_bytes(p); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  Backend& be_;
  T* p;
};

// Runs `work` once untimed, then `reps` times between stopwatch marks; the median.
double time_part(Backend& be, int reps, const std::function<void()>& work) {
  auto sw = be.stopwatch();
  work();
  be.synchronize();
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    sw->start();
    work();
    sw->stop();
    t.push_back(sw->seconds());
  }
  return median_seconds(t);
}

}  // namespace

StepBenchResult bench_training_step(Backend& be, const Config& c, const StepBenchOptions& o) {
  if (o.steps < 1) throw std::invalid_argument("bench: --steps must be >= 1 (got " + std::to_string(o.steps) + ")");
  if (o.warmup < 0) throw std::invalid_argument("bench: --warmup must be >= 0 (got " + std::to_string(o.warmup) + ")");
  StepBenchResult r;
  r.n_triplets = c.train.batch_triplets;
  r.batch = 3 * r.n_triplets;
  const int B = r.batch;

  Model model(c, be, B);
  model.init_params(o.seed);
  const ModelPlan& plan = model.plan();
  const int64_t S = plan.samples;
  DeviceArray<float> audio_buf(be, B * S);
  float* audio = audio_buf.p;  // [B, S]
  be.fill_uniform(audio, B * S, -0.5f, 0.5f, o.seed, 1000);

  // ---- the whole step ----
  {
    Optimizer opt(be, model.params().layout(), c.optim);
    TrainStep step(model);
    step.set_capture(o.capture);
    step.set_triplets(TrainStep::offline_triplets(r.n_triplets));
    for (int i = 0; i < o.warmup; ++i) step.step(audio, B, c.loss, opt, c.optim.adam.lr);
    be.synchronize();
    auto sw = be.stopwatch();
    for (int i = 0; i < o.steps; ++i) {
      sw->start();
      step.step(audio, B, c.loss, opt, c.optim.adam.lr);
      sw->stop();
      r.step_seconds.push_back(sw->seconds());
    }
    r.replayed = step.replaying();
    const StepStats st = step.read_stats(&opt);
    if (!std::isfinite(st.loss) || !std::isfinite(st.grad_norm))
      throw std::runtime_error("bench: the training step produced a non-finite loss or gradient norm");
  }
  r.step_median = median_seconds(r.step_seconds);

  // ---- the parts, each alone: the same ops in the order Model::forward/backward issue them ----
  TensorBuffer acts(be, part_layout(plan)), dacts(be, part_layout(plan));
  TensorBuffer grads(be, model.params().layout());
  grads.zero();
  const TensorBuffer& params = model.params();
  const size_t n_stages = plan.stages.size();
  const StagePlan& last = plan.stages.back();
  const int C = last.conv.Cout, E = plan.embedding;
  const std::string last_out = stage_output(plan, n_stages - 1);
  // The gradient reaching the conv stack from the head: random (the head part computes it later).
  be.fill_uniform(dacts.ptr(last_out), static_cast<int64_t>(B) * C * last.t_out, -1e-3f, 1e-3f, o.seed, 1001);
  DeviceArray<int32_t> triplets_buf(be, 3 * static_cast<int64_t>(r.n_triplets));
  int32_t* triplets = triplets_buf.p;  // [n_triplets, 3]
  const std::vector<int32_t> table = TrainStep::offline_triplets(r.n_triplets);
  be.to_device(triplets, table.data(), table.size() * sizeof(int32_t));
  DeviceArray<float> stats_buf(be, 2);
  float* stats = stats_buf.p;  // {loss, active}

  auto stage_dims = [&](size_t i) {
    Conv1dDims d = plan.stages[i].conv;
    d.B = B;
    return d;
  };
  auto mel = [&] { be.mel_forward(audio, acts.ptr("mel"), B, S, c.mel); };
  auto conv_stack = [&] {
    for (size_t i = 0; i < n_stages; ++i) {
      const StagePlan& s = plan.stages[i];
      const Conv1dDims d = stage_dims(i);
      const std::string n = std::to_string(i);
      float* conv = acts.ptr("conv." + n);
      const float* in = i == 0 ? acts.ptr("mel") : acts.ptr(stage_output(plan, i - 1));
      be.conv1d_forward(in, params.ptr("conv." + n + ".weight"), params.ptr("conv." + n + ".bias"), conv, d);
      be.relu_forward(conv, conv, static_cast<int64_t>(B) * d.Cout * s.t_conv);
      if (s.pool)
        be.maxpool_forward(conv, acts.ptr("pool." + n), static_cast<int64_t>(B) * d.Cout, s.t_conv, c.model.pool);
    }
    for (size_t i = n_stages; i-- > 0;) {
      const StagePlan& s = plan.stages[i];
      const Conv1dDims d = stage_dims(i);
      const std::string n = std::to_string(i);
      const int64_t rows = static_cast<int64_t>(B) * d.Cout;
      float* conv = acts.ptr("conv." + n);
      float* dconv = dacts.ptr("conv." + n);
      if (s.pool) be.maxpool_backward(dacts.ptr("pool." + n), conv, dconv, rows, s.t_conv, c.model.pool);
      be.relu_backward(dconv, conv, dconv, rows * s.t_conv);
      const float* in = i == 0 ? acts.ptr("mel") : acts.ptr(stage_output(plan, i - 1));
      float* din = i == 0 ? nullptr : dacts.ptr(stage_output(plan, i - 1));
      be.conv1d_backward(dconv, in, params.ptr("conv." + n + ".weight"), din, grads.ptr("conv." + n + ".weight"),
                         grads.ptr("conv." + n + ".bias"), d);
    }
  };
  auto loss = [&] {
    be.triplet_loss(acts.ptr("emb"), triplets, r.n_triplets, B, E, c.loss, stats, dacts.ptr("emb"));
  };
  // Global pooling [mean | max | l2], dropout (training mode), linear, L2, loss, and back.
  const int D = plan.head_width(), k = plan.pooled_features();
  const RowOut row_out{C, D};
  const bool dropped = plan.dropout > 0;
  DeviceArray<uint64_t> rng_buf(be, 2);  // {seed, stream} of the dropout mask, as Model keeps it
  const uint64_t rng_host[2] = {o.seed, dropout_stream(0)};
  be.to_device(rng_buf.p, rng_host, sizeof rng_host);
  auto head = [&] {
    const int64_t rows = static_cast<int64_t>(B) * C;
    const float* feat = acts.ptr(last_out);  // [B, C, T]
    float* pooled = acts.ptr("pooled");      // [B, D]
    be.mean_time_forward(feat, pooled, rows, last.t_out, row_out);
    if (k >= 2) be.max_time_forward(feat, pooled + C, rows, last.t_out, row_out);
    if (k >= 3) be.l2_time_forward(feat, pooled + 2 * C, rows, last.t_out, row_out);
    const std::string head_in = dropped ? "dropout" : "pooled";
    if (dropped)
      be.dropout_forward(pooled, acts.ptr("dropout"), acts.ptr("dropout_mask"), static_cast<int64_t>(B) * D,
                         plan.dropout, rng_buf.p);
    be.linear_forward(acts.ptr(head_in), params.ptr("linear.weight"), params.ptr("linear.bias"), acts.ptr("linear"),
                      B, D, E);
    be.l2norm_forward(acts.ptr("linear"), acts.ptr("emb"), B, E, c.model.l2_eps);
    loss();
    be.l2norm_backward(dacts.ptr("emb"), acts.ptr("linear"), acts.ptr("emb"), dacts.ptr("linear"), B, E,
                       c.model.l2_eps);
    be.linear_backward(dacts.ptr("linear"), acts.ptr(head_in), params.ptr("linear.weight"), dacts.ptr(head_in),
                       grads.ptr("linear.weight"), grads.ptr("linear.bias"), B, D, E);
    if (dropped)
      be.dropout_backward(dacts.ptr("dropout"), acts.ptr("dropout_mask"), dacts.ptr("pooled"),
                          static_cast<int64_t>(B) * D);
    const float* dpooled = dacts.ptr("pooled");
    float* dfeat = dacts.ptr(last_out);
    be.mean_time_backward(dpooled, dfeat, rows, last.t_out, row_out);
    if (k >= 2) be.max_time_backward(dpooled + C, feat, dfeat, rows, last.t_out, row_out, true);
    if (k >= 3) be.l2_time_backward(dpooled + 2 * C, feat, dfeat, rows, last.t_out, row_out, true);
  };
  // The optimizer part updates copies, so the model's weights stay as they were.
  TensorBuffer params_copy(be, model.params().layout()), grads_copy(be, model.params().layout());
  params_copy.zero();
  be.fill_uniform(params_copy.data(), params_copy.size(), -0.1f, 0.1f, o.seed, 1002);
  Optimizer part_opt(be, model.params().layout(), c.optim);
  auto optimizer = [&] {
    grads_copy.zero();  // TrainStep zeroes the gradients once per step
    part_opt.set_scalars(c.optim.adam.lr);
    part_opt.enqueue(params_copy, grads_copy);
  };

  // Order matters only for what each part reads: mel before the conv stack, the stack before
  // the head, the head before the loss alone.
  r.parts.push_back({"mel", time_part(be, o.steps, mel)});
  r.parts.push_back({"conv stack fwd+bwd", time_part(be, o.steps, conv_stack)});
  r.parts.push_back({"head + loss", time_part(be, o.steps, head)});
  r.parts.push_back({"optimizer", time_part(be, o.steps, optimizer)});
  r.fused_loss_seconds = time_part(be, o.steps, loss);
  return r;
}

}  // namespace mg
