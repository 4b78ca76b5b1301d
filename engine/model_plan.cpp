#include "engine/model_plan.h"

#include <algorithm>
#include <cstdio>
#include <iomanip>
#include <limits>
#include <sstream>

namespace mg {
namespace {

struct Pads {
  int left = 0, right = 0;
};

// PyTorch's split for "same": the extra step of an even kernel goes on the right.
Pads conv_padding(const ModelConfig& m) {
  if (m.padding == Padding::Valid) return {};
  const int left = (m.kernel - 1) / 2;
  return {left, m.kernel - 1 - left};
}

// Saturating arithmetic: a deep stack with a large pool must report "no clip works", not wrap.
constexpr int64_t kHuge = int64_t{1} << 62;
int64_t sat_add(int64_t a, int64_t b) { return a > kHuge - b ? kHuge : a + b; }
int64_t sat_mul(int64_t a, int64_t b) { return b != 0 && a > kHuge / b ? kHuge : a * b; }

std::string num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

// The clip_seconds (4 decimals, rounded up) whose clip_samples() is at least `samples`, so
// the value printed in an error can be pasted into the config as is.
std::string seconds_for(int64_t samples, int sample_rate) {
  const int64_t tenth_ms = (samples * 10000 + sample_rate - 1) / sample_rate;
  char buf[64];
  std::snprintf(buf, sizeof buf, "%lld.%04lld", static_cast<long long>(tenth_ms / 10000),
                static_cast<long long>(tenth_ms % 10000));
  return buf;
}

std::string shape(std::initializer_list<int64_t> dims) {
  std::string s = "[";
  for (int64_t d : dims) s += (s.size() > 1 ? ", " : "") + std::to_string(d);
  return s + "]";
}

int64_t conv_params(const Conv1dDims& d) { return int64_t{d.Cout} * d.Cin * d.K + d.Cout; }
int64_t linear_params(int64_t in, int64_t out) { return out * in + out; }
const char* padding_name(Padding p) { return p == Padding::Valid ? "valid" : "same"; }

}  // namespace

int64_t min_clip_samples(const Config& c) {
  validate_config(c);
  const Pads pads = conv_padding(c.model);
  const int n = static_cast<int>(c.model.channels.size());
  // Walk the stack backwards from one output step. Every stage's output length is
  // non-decreasing in its input length, so the bound found this way is exact.
  int64_t need = 1;
  for (int i = n - 1; i >= 0; --i) {
    if (i < n - 1) need = sat_mul(need, c.model.pool);  // floor(Tc / P) >= need <=> Tc >= need P
    need = sat_add(need, c.model.kernel - 1 - pads.left - pads.right);  // Tc = T + pad - K + 1
  }
  // Frames: 1 + S / hop >= need. Reflect padding: S > n_fft / 2.
  const int64_t for_frames = sat_mul(need - 1, c.mel.hop);
  const int64_t for_reflect = c.mel.n_fft / 2 + 1;
  return std::max({for_frames, for_reflect, int64_t{1}});
}

ModelPlan make_model_plan(const Config& c, int batch) {
  validate_config(c);
  if (batch < 1) throw ConfigError("batch must be >= 1 (got " + std::to_string(batch) + ")");
  const int sr = c.audio.sample_rate;

  ModelPlan p;
  p.batch = batch;
  p.head_batch = batch;
  p.samples = c.audio.clip_samples();
  p.n_mels = c.mel.n_mels;
  p.embedding = c.model.embedding;
  p.pooling = c.model.pooling;
  p.input_norm = c.model.input_norm == InputNorm::Band;
  p.features_out = c.model.embedding_from == EmbeddingFrom::Features;
  p.head_norm = c.model.head_norm == HeadNorm::Batch;
  p.dropout = c.model.dropout;
  p.pool_all_stages = c.model.pool_stages == PoolStages::All;

  auto too_short = [&](const std::string& why) {
    const int64_t shortest = min_clip_samples(c);
    std::string fix;
    if (shortest > std::numeric_limits<int>::max())
      fix = "No clip up to " + std::to_string(std::numeric_limits<int>::max()) +
            " samples works; use a smaller model.kernel or model.pool, or fewer model.channels";
    else
      fix = "The shortest clip that works is " + std::to_string(shortest) + " samples (clip_seconds >= " +
            seconds_for(shortest, sr) + " at " + std::to_string(sr) +
            " Hz); use a longer clip, a smaller model.kernel or model.pool, or fewer model.channels";
    return ConfigError("audio.clip_seconds = " + num(c.audio.clip_seconds) + " gives " +
                       std::to_string(p.samples) + " samples at " + std::to_string(sr) +
                       " Hz, too short for the model: " + why + ". " + fix);
  };

  if (p.samples <= c.mel.n_fft / 2)
    throw too_short("the mel front end's reflect padding needs more than mel.n_fft / 2 = " +
                    std::to_string(c.mel.n_fft / 2) + " samples");
  p.frames = mel_frames(p.samples, c.mel.hop);

  const Pads pads = conv_padding(c.model);
  const size_t n = c.model.channels.size();
  int t = p.frames;
  int cin = c.mel.n_mels;
  for (size_t i = 0; i < n; ++i) {
    StagePlan s;
    s.conv = Conv1dDims{batch, cin, c.model.channels[i], t, c.model.kernel, pads.left, pads.right};
    s.t_conv = s.conv.Tout();
    const std::string idx = std::to_string(i);
    if (s.t_conv < 1)
      throw too_short("conv." + idx + " would output " + std::to_string(s.t_conv) + " steps (input " +
                      std::to_string(t) + " steps, kernel " + std::to_string(c.model.kernel) +
                      ", padding " + std::to_string(pads.left) + "+" + std::to_string(pads.right) + ")");
    s.pool = i + 1 < n;
    s.t_out = s.pool ? s.t_conv / c.model.pool : s.t_conv;  // floor, as torch MaxPool1d
    if (s.t_out < 1)
      throw too_short("pool." + idx + " would output 0 steps (input " + std::to_string(s.t_conv) +
                      " steps, window " + std::to_string(c.model.pool) + ")");
    t = s.t_out;
    cin = s.conv.Cout;
    p.stages.push_back(s);
  }
  return p;
}

int pooled_width(const Config& c) {
  const auto& ch = c.model.channels;
  const auto first = c.model.pool_stages == PoolStages::All ? ch.begin() : ch.end() - 1;
  int64_t sum = 0;
  for (auto it = first; it != ch.end(); ++it) sum += *it;
  return static_cast<int>(pooled_features(c.model.pooling) * sum);
}

int embedding_dim(const Config& c) {
  return c.model.embedding_from == EmbeddingFrom::Features ? pooled_width(c) : c.model.embedding;
}

int ModelPlan::pooled_offset(size_t i) const {
  int sum = 0;
  for (size_t j = first_pooled_stage(); j < i && j < stages.size(); ++j) sum += stages[j].conv.Cout;
  return pooled_features() * sum;
}

int64_t ModelPlan::param_count() const {
  int64_t total = 0;
  for (const auto& s : stages) total += conv_params(s.conv);
  if (head_norm) total += 2 * int64_t{head_width()};  // scale and shift per feature
  return total + linear_params(head_width(), embedding);
}

std::string ModelPlan::describe(const Config& c) const {
  std::ostringstream o;
  const int64_t b = batch;
  o << "input: " << samples << " samples per clip (" << num(c.audio.clip_seconds) << " s at "
    << c.audio.sample_rate << " Hz), batch " << batch << "\n";
  o << "mel:   n_fft " << c.mel.n_fft << ", hop " << c.mel.hop << ", " << c.mel.n_mels << " bands "
    << num(c.mel.f_min) << "-" << num(c.mel.f_max_resolved()) << " Hz ("
    << (c.mel.scale == MelScale::HTK ? "htk" : "slaney") << ", norm "
    << (c.mel.norm == MelNorm::None ? "none" : "slaney") << "), power " << num(c.mel.power)
    << ", log(x + " << num(c.mel.log_eps) << ")\n\n";

  auto row = [&](const std::string& layer, const std::string& shp, int64_t params,
                 const std::string& note) {
    o << std::left << std::setw(8) << layer << std::setw(20) << shp << std::right << std::setw(10)
      << params << (note.empty() ? "" : "  " + note) << "\n";
  };
  o << std::left << std::setw(8) << "layer" << std::setw(20) << "output shape" << std::right
    << std::setw(10) << "params" << "  notes\n";
  row("audio", shape({b, samples}), 0, "");
  row("mel", shape({b, n_mels, frames}), 0, std::to_string(frames) + " frames");
  if (input_norm) row("band", shape({b, n_mels, frames}), 0, "standardised per band (training-set statistics)");
  for (size_t i = 0; i < stages.size(); ++i) {
    const StagePlan& s = stages[i];
    const std::string idx = std::to_string(i);
    row("conv." + idx, shape({b, s.conv.Cout, s.t_conv}), conv_params(s.conv),
        "kernel " + std::to_string(s.conv.K) + ", padding " + padding_name(c.model.padding) + " (" +
            std::to_string(s.conv.pad_left) + "+" + std::to_string(s.conv.pad_right) + ")");
    row("relu." + idx, shape({b, s.conv.Cout, s.t_conv}), 0, "");
    if (s.pool)
      row("pool." + idx, shape({b, s.conv.Cout, s.t_out}), 0, "max, window " + std::to_string(c.model.pool));
  }
  const int64_t width = head_width();
  const std::string of = pool_all_stages ? " of every stage" : "";
  if (pooling == GlobalPool::Mean && !pool_all_stages)
    row("mean", shape({b, width}), 0, "over time");
  else if (pooling == GlobalPool::Mean)
    row("pooled", shape({b, width}), 0, "mean over time" + of);
  else
    row("pooled", shape({b, width}), 0,
        std::string(pooling == GlobalPool::MeanMax ? "[mean | max]" : "[mean | max | l2]") + " over time" + of +
            (pool_all_stages ? "" : ", " + std::to_string(channels_last()) + " each"));
  if (head_norm)
    row("norm", shape({b, width}), 2 * width, "batch norm per feature (running statistics in evaluation)");
  if (dropout > 0) row("dropout", shape({b, width}), 0, "p " + num(dropout) + ", training only");
  row("linear", shape({b, embedding}), linear_params(width, embedding), "");
  row("l2norm", shape({b, embedding}), 0,
      "eps " + num(c.model.l2_eps) + (features_out ? " (the projection the training loss sees)" : ""));
  if (features_out)
    row("embed", shape({b, width}), 0, "the L2-normalised pooled features: the item embedding");

  const int64_t total = param_count();
  const int64_t bytes = total * static_cast<int64_t>(sizeof(float));
  char kib[32];
  std::snprintf(kib, sizeof kib, "%.1f", static_cast<double>(bytes) / 1024.0);
  o << "\ntotal: " << total << " parameters, " << bytes << " bytes as float32 (" << kib << " KiB)\n";
  return o.str();
}

}  // namespace mg
