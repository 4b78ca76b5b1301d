#include "engine/perf/step_bench.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <stdexcept>

#include "engine/model.h"
#include "engine/model_plan.h"
#include "engine/optimizer.h"
#include "engine/tensor_buffer.h"
#include "engine/train_step.h"

namespace mg {

double median_seconds(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

namespace {

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

// The whole step as the trainer takes it, o.steps times after o.warmup: r.step_seconds and
// whether it replayed a captured graph.
void time_whole_step(Backend& be, const Config& c, const StepBenchOptions& o, Model& model, const float* audio,
                     const std::vector<uint8_t>& hops, StepBenchResult& r) {
  const bool contrastive = c.loss.name == LossKind::Contrastive;
  const int B = r.batch;
  Optimizer opt(be, model.params().layout(), c.optim);
  TrainStep step(model);
  step.set_capture(o.capture);
  if (contrastive)
    step.set_contrastive(hops, r.n_triplets, c.train.pos_hops, c.train.neg_hops);
  else
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

// Each part alone, with the model's own part functions on the arena the step left: r.parts and
// the fused loss.
void time_parts(Backend& be, const Config& c, const StepBenchOptions& o, Model& model, const float* audio,
                const std::vector<uint8_t>& hops, StepBenchResult& r) {
  const bool contrastive = c.loss.name == LossKind::Contrastive;
  const int B = r.batch;
  // ---- the parts, each alone: the model's own part functions, on the arena the step left ----
  // (the conv stack's backward reads the head's gradient from the last step; the parameter
  // gradients keep accumulating, which changes no timing).
  DeviceArray<int32_t> triplets_buf(be, 3 * static_cast<int64_t>(r.n_triplets));
  int32_t* triplets = triplets_buf.p;  // [n_triplets, 3]
  const std::vector<int32_t> table = TrainStep::offline_triplets(r.n_triplets);
  be.to_device(triplets, table.data(), table.size() * sizeof(int32_t));
  DeviceArray<uint8_t> hops_buf(be, std::max<int64_t>(1, static_cast<int64_t>(hops.size())));
  if (contrastive) be.to_device(hops_buf.p, hops.data(), hops.size());  // [B, B]
  DeviceArray<uint8_t> loss_ws(be, static_cast<int64_t>(contrastive_workspace_bytes(B)));
  DeviceArray<float> stats_buf(be, 2);
  float* stats = stats_buf.p;  // {loss, active}
  const int E = model.plan().embedding;
  float* demb = model.demb_buffer();  // [B, E]
  const float* emb = nullptr;         // [B, E], set by the head's forward
  auto mel = [&] { model.forward_mel(audio, B); };
  auto conv_stack = [&] {
    model.forward_conv(B);
    model.backward_conv(B);
  };
  auto loss = [&] {
    if (contrastive)
      be.contrastive_loss(emb, hops_buf.p, B, E, contrastive_params(c), stats, demb, loss_ws.p);
    else
      be.triplet_loss(emb, triplets, r.n_triplets, B, E, c.loss, stats, demb);
  };
  auto head = [&] {
    emb = model.forward_head(B);
    loss();
    model.backward_head(demb, B);
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
}

}  // namespace

StepBenchResult bench_training_step(Backend& be, const Config& c, const StepBenchOptions& o) {
  if (o.steps < 1) throw std::invalid_argument("bench: --steps must be >= 1 (got " + std::to_string(o.steps) + ")");
  if (o.warmup < 0) throw std::invalid_argument("bench: --warmup must be >= 0 (got " + std::to_string(o.warmup) + ")");
  StepBenchResult r;
  const bool contrastive = c.loss.name == LossKind::Contrastive;
  r.n_triplets = c.train.batch_triplets;
  r.batch = (contrastive ? 2 : 3) * r.n_triplets;  // the triplet loss timed on offline triplets, mined or not
  const int B = r.batch;
  const std::vector<uint8_t> hops =
      contrastive ? TrainStep::pair_hops(r.n_triplets, c.train.neg_hops) : std::vector<uint8_t>{};

  Model model(c, be, B);
  model.init_params(o.seed);
  const int64_t S = model.plan().samples;
  DeviceArray<float> audio_buf(be, B * S);
  float* audio = audio_buf.p;  // [B, S]
  be.fill_uniform(audio, B * S, -0.5f, 0.5f, o.seed, 1000);

  time_whole_step(be, c, o, model, audio, hops, r);
  r.step_median = median_seconds(r.step_seconds);
  time_parts(be, c, o, model, audio, hops, r);
  return r;
}

StepBenchReport bench_step_on_device(const Config& c, const BackendOptions& bo, const StepBenchOptions& o) {
  StepBenchReport rep;
  const std::unique_ptr<Backend> be = make_backend(bo, &rep.note);
  rep.backend = be->describe();
  rep.gpu = be->device() == Device::CUDA;
  rep.result = bench_training_step(*be, c, o);
  rep.peak = rep.gpu ? cuda_peak(bo.cuda_device) : measure_cpu_peak(bo.threads);
  rep.cost = training_step_cost(c, rep.result.batch, rep.result.n_triplets);
  rep.floor = roofline_floor(rep.cost.flops(), rep.cost.bytes(), rep.peak);
  return rep;
}

}  // namespace mg
