#include "engine/config.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>
#include <toml.hpp>

#include "engine/io/utf8.h"

namespace mg {
namespace {

// ---- formatting -------------------------------------------------------------------------

// Shortest text that reads back to the same double, always spelled as a TOML float (so
// "10" becomes "10.0"): to_toml must round-trip bit for bit.
std::string format_double(double v) {
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, v);
  std::string s(buf, res.ptr);
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";  // 'n' covers inf and nan
  return s;
}

std::string quoted(const std::string& s) { return "'" + s + "'"; }

// ---- "did you mean" -----------------------------------------------------------------------

// Optimal-string-alignment distance (Levenshtein plus adjacent transpositions), case-blind:
// "kernal", "Kernel" and "kenrel" are all one edit from "kernel".
size_t edit_distance(const std::string& a, const std::string& b) {
  auto lower = [](char ch) { return static_cast<char>(std::tolower(static_cast<unsigned char>(ch))); };
  const size_t n = a.size(), m = b.size();
  std::vector<std::vector<size_t>> d(n + 1, std::vector<size_t>(m + 1));
  for (size_t i = 0; i <= n; ++i) d[i][0] = i;
  for (size_t j = 0; j <= m; ++j) d[0][j] = j;
  for (size_t i = 1; i <= n; ++i) {
    for (size_t j = 1; j <= m; ++j) {
      const size_t cost = lower(a[i - 1]) == lower(b[j - 1]) ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && lower(a[i - 1]) == lower(b[j - 2]) && lower(a[i - 2]) == lower(b[j - 1]))
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[n][m];
}

// The closest candidate within a couple of edits, or "" when nothing is plausibly meant.
std::string closest(const std::string& name, const std::vector<std::string>& candidates) {
  const size_t limit = name.size() <= 3 ? 1 : 2;
  std::string best;
  size_t best_d = limit + 1;
  for (const auto& c : candidates) {
    const size_t d = edit_distance(name, c);
    if (d < best_d) best_d = d, best = c;
  }
  return best;
}

std::string did_you_mean(const std::string& name, const std::vector<std::string>& candidates) {
  const std::string c = closest(name, candidates);
  return c.empty() ? std::string() : " (did you mean " + quoted(c) + "?)";
}

std::string join(const std::vector<std::string>& items) {
  std::string s;
  for (const auto& it : items) s += (s.empty() ? "" : ", ") + it;
  return s;
}

// ---- literals toml11 saturates -----------------------------------------------------------

// toml11 3.7 does not fail on literals that do not fit: 1e400 reads as DBL_MAX and
// 99999999999999999999 as INT64_MAX. A value at such a limit is re-read from its literal
// text, so a typo'd exponent cannot become a silently different setting.
bool literal_out_of_range(const toml::value& v) {
  const bool at_limit =
      v.is_integer() ? (v.as_integer() == std::numeric_limits<int64_t>::max() ||
                        v.as_integer() == std::numeric_limits<int64_t>::min())
      : v.is_floating() ? (std::abs(v.as_floating()) == std::numeric_limits<double>::max() ||
                           v.as_floating() == 0.0)
                        : false;
  if (!at_limit) return false;
  const auto loc = v.location();
  const std::string& line = loc.line_str();
  if (loc.column() < 1 || loc.column() - 1 + loc.region() > line.size()) return false;
  std::string lit = line.substr(loc.column() - 1, loc.region());
  lit.erase(std::remove(lit.begin(), lit.end(), '_'), lit.end());
  if (!lit.empty() && lit[0] == '+') lit.erase(0, 1);
  const char* first = lit.data();
  const char* last = lit.data() + lit.size();
  if (v.is_floating()) {
    double d = 0;
    return std::from_chars(first, last, d).ec == std::errc::result_out_of_range;
  }
  int base = 10;
  if (lit.size() > 2 && lit[0] == '0' && (lit[1] == 'x' || lit[1] == 'o' || lit[1] == 'b')) {
    base = lit[1] == 'x' ? 16 : lit[1] == 'o' ? 8 : 2;
    first += 2;
  }
  int64_t i = 0;
  return std::from_chars(first, last, i, base).ec == std::errc::result_out_of_range;
}

// ---- the schema ------------------------------------------------------------------------

template <class T>
struct Choice {
  const char* name;
  T value;
};

constexpr Choice<MelScale> kMelScales[] = {{"htk", MelScale::HTK}, {"slaney", MelScale::Slaney}};
constexpr Choice<MelNorm> kMelNorms[] = {{"none", MelNorm::None}, {"slaney", MelNorm::Slaney}};
constexpr Choice<Padding> kPaddings[] = {{"valid", Padding::Valid}, {"same", Padding::Same}};
constexpr Choice<Excerpt> kExcerpts[] = {{"middle", Excerpt::Middle}, {"start", Excerpt::Start}};
constexpr Choice<ShortClip> kShortClips[] = {{"repeat", ShortClip::Repeat}, {"zero", ShortClip::Zero}};
constexpr Choice<CacheDtype> kCacheDtypes[] = {{"int16", CacheDtype::Int16},
                                               {"float16", CacheDtype::Float16}};
constexpr Choice<GlobalPool> kGlobalPools[] = {
    {"mean", GlobalPool::Mean}, {"mean_max", GlobalPool::MeanMax}, {"mean_max_l2", GlobalPool::MeanMaxL2}};
constexpr Choice<PoolStages> kPoolStages[] = {{"last", PoolStages::Last}, {"all", PoolStages::All}};
constexpr Choice<InputNorm> kInputNorms[] = {{"none", InputNorm::None}, {"band", InputNorm::Band}};
constexpr Choice<HeadNorm> kHeadNorms[] = {{"none", HeadNorm::None}, {"batch", HeadNorm::Batch}};
constexpr Choice<EmbeddingFrom> kEmbeddingFroms[] = {{"linear", EmbeddingFrom::Linear},
                                                     {"features", EmbeddingFrom::Features}};
constexpr Choice<Mining> kMinings[] = {
    {"offline", Mining::Offline}, {"batch_hard", Mining::BatchHard}, {"semi_hard", Mining::SemiHard}};
constexpr Choice<LrSchedule> kLrSchedules[] = {{"cosine", LrSchedule::Cosine},
                                               {"constant", LrSchedule::Constant}};
constexpr Choice<NonFinite> kNonFinites[] = {{"stop", NonFinite::Stop}, {"skip", NonFinite::Skip}};
constexpr Choice<Precision> kPrecisions[] = {{"fp32", Precision::F32}, {"bf16", Precision::BF16}};
constexpr Choice<LossKind> kLossKinds[] = {{"triplet", LossKind::Triplet}, {"contrastive", LossKind::Contrastive}};
constexpr Choice<bool> kOptimNames[] = {{"adam", false}, {"adamw", true}};

// One visitor per config section, in the order visit_fields walks them.
template <class C, class V>
void visit_audio(C& c, V& v) {
  v.section("audio");
  v.field("sample_rate", c.audio.sample_rate);
  v.field("clip_seconds", c.audio.clip_seconds);
  v.choice("excerpt", c.audio.excerpt, kExcerpts);
  v.field("excerpt_seconds", c.audio.excerpt_seconds);
  v.choice("short_clip", c.audio.short_clip, kShortClips);
  v.choice("cache_dtype", c.audio.cache_dtype, kCacheDtypes);
}

template <class C, class V>
void visit_mel(C& c, V& v) {
  v.section("mel");
  v.field("n_fft", c.mel.n_fft);
  v.field("hop", c.mel.hop);
  v.field("n_mels", c.mel.n_mels);
  v.field("f_min", c.mel.f_min);
  v.field("f_max", c.mel.f_max);
  v.choice("mel_scale", c.mel.scale, kMelScales);
  v.choice("norm", c.mel.norm, kMelNorms);
  v.field("power", c.mel.power);
  v.field("log_eps", c.mel.log_eps);
}

template <class C, class V>
void visit_model(C& c, V& v) {
  v.section("model");
  v.field("channels", c.model.channels);
  v.field("kernel", c.model.kernel);
  v.choice("padding", c.model.padding, kPaddings);
  v.field("pool", c.model.pool);
  v.choice("input_norm", c.model.input_norm, kInputNorms);
  v.field("embedding", c.model.embedding);
  v.field("l2_eps", c.model.l2_eps);
  v.choice("pooling", c.model.pooling, kGlobalPools);
  v.choice("pool_stages", c.model.pool_stages, kPoolStages);
  v.choice("head_norm", c.model.head_norm, kHeadNorms);
  v.choice("embedding_from", c.model.embedding_from, kEmbeddingFroms);
  v.field("dropout", c.model.dropout);
}

template <class C, class V>
void visit_loss(C& c, V& v) {
  v.section("loss");
  v.choice("name", c.loss.name, kLossKinds);
  v.field("margin", c.loss.margin);
  v.field("swap", c.loss.swap);
  v.field("eps", c.loss.eps);
  v.field("temperature", c.loss.temperature);
}

template <class C, class V>
void visit_optim(C& c, V& v) {
  v.section("optim");
  v.choice("name", c.optim.adam.decoupled, kOptimNames);
  v.field("lr", c.optim.adam.lr);
  v.field("beta1", c.optim.adam.beta1);
  v.field("beta2", c.optim.adam.beta2);
  v.field("eps", c.optim.adam.eps);
  v.field("weight_decay", c.optim.adam.weight_decay);
  v.field("clip_norm", c.optim.clip_norm);
}

template <class C, class V>
void visit_train(C& c, V& v) {
  v.section("train");
  v.field("batch_triplets", c.train.batch_triplets);
  v.field("seed", c.train.seed);
  v.field("steps", c.train.steps);
  v.field("epochs", c.train.epochs);
  v.choice("mining", c.train.mining, kMinings);
  v.field("pos_hops", c.train.pos_hops);
  v.field("neg_hops", c.train.neg_hops);
  v.field("warmup_steps", c.train.warmup_steps);
  v.choice("lr_schedule", c.train.lr_schedule, kLrSchedules);
  v.field("min_lr_ratio", c.train.min_lr_ratio);
  v.field("checkpoint_every", c.train.checkpoint_every);
  v.field("validate_every", c.train.validate_every);
  v.field("early_stopping", c.train.early_stopping);
  v.choice("nonfinite", c.train.nonfinite, kNonFinites);
  v.field("loader_threads", c.train.loader_threads);
  v.choice("precision", c.train.precision, kPrecisions);
  v.field("zero", c.train.zero);
}

template <class C, class V>
void visit_augment(C& c, V& v) {
  v.section("augment");
  v.field("gain_db", c.augment.gain_db);
  v.field("noise_snr_db", c.augment.noise_snr_db);
  v.field("shift_seconds", c.augment.shift_seconds);
}

template <class C, class V>
void visit_data(C& c, V& v) {
  v.section("data");
  v.field("edges", c.data.edges);
  v.field("catalog", c.data.catalog);
  v.field("cache", c.data.cache);
  v.field("run_dir", c.data.run_dir);
  v.field("top_k", c.data.top_k);
  v.field("weighted", c.data.weighted);
  v.field("val_items", c.data.val_items);
  v.field("holdout_by", c.data.holdout_by);
  v.field("val_edges", c.data.val_edges);
  v.field("recall_k", c.data.recall_k);
  v.field("skip_bad_lines", c.data.skip_bad_lines);
}

// Every section and key in canonical order. The reader and the writer both walk this one
// list, so a field added here is parsed, written and known to the typo check at once.
// mel.sample_rate is absent on purpose: it mirrors audio.sample_rate.
template <class C, class V>
void visit_fields(C& c, V& v) {
  visit_audio(c, v);
  visit_mel(c, v);
  visit_model(c, v);
  visit_loss(c, v);
  visit_optim(c, v);
  visit_train(c, v);
  visit_augment(c, v);
  visit_data(c, v);
  v.end();
}

// ---- reading ---------------------------------------------------------------------------

// Typed getters over one parsed document. Each getter records its key in the schema it
// builds while the fields are visited; end() then reports everything the schema does not
// know, with the closest known name.
class TomlReader {
 public:
  // with_lines: append the value's line to the source in errors (not for --set overrides,
  // whose document is generated).
  TomlReader(const toml::value& root, std::string source, bool with_lines = true)
      : root_(root), source_(std::move(source)), with_lines_(with_lines) {}

  void section(const char* name) {
    schema_.push_back({name, {}});
    table_ = nullptr;
    const auto& root = root_.as_table();
    const auto it = root.find(name);
    if (it == root.end()) return;  // absent: every field keeps its default
    if (!it->second.is_table())
      fail(it->second, std::string(name) + " must be a table ([" + name + "]), got " +
                           type_name(it->second));
    table_ = &it->second.as_table();
  }

  void field(const char* key, int& out) {
    if (const toml::value* v = find(key)) out = to_int(*v, name(key));
  }

  void field(const char* key, uint64_t& out) {
    const toml::value* v = find(key);
    if (!v) return;
    const int64_t i = integer(*v, name(key));
    if (i < 0) fail(*v, name(key) + " must be >= 0 (got " + std::to_string(i) + ")");
    out = static_cast<uint64_t>(i);
  }

  void field(const char* key, double& out) {
    const toml::value* v = find(key);
    if (!v) return;
    // An integer is accepted where a float is expected: "clip_seconds = 10" means 10.0.
    if (!v->is_integer() && !v->is_floating())
      fail(*v, name(key) + " must be a number, got " + type_name(*v));
    check_literal(*v, name(key));
    out = v->is_integer() ? static_cast<double>(v->as_integer()) : v->as_floating();
  }

  void field(const char* key, bool& out) {
    const toml::value* v = find(key);
    if (!v) return;
    if (!v->is_boolean()) fail(*v, name(key) + " must be true or false, got " + type_name(*v));
    out = v->as_boolean();
  }

  void field(const char* key, std::string& out) {
    const toml::value* v = find(key);
    if (!v) return;
    if (!v->is_string()) fail(*v, name(key) + " must be a string, got " + type_name(*v));
    out = v->as_string().str;
  }

  void field(const char* key, std::vector<int>& out) {
    const toml::value* v = find(key);
    if (!v) return;
    if (!v->is_array()) fail(*v, name(key) + " must be an array of integers, got " + type_name(*v));
    std::vector<int> items;
    const auto& arr = v->as_array();
    for (size_t i = 0; i < arr.size(); ++i)
      items.push_back(to_int(arr[i], name(key) + "[" + std::to_string(i) + "]"));
    out = std::move(items);
  }

  template <class T, size_t N>
  void choice(const char* key, T& out, const Choice<T> (&choices)[N]) {
    const toml::value* v = find(key);
    if (!v) return;
    std::vector<std::string> names, listed;
    for (const auto& c : choices) {
      names.push_back(c.name);
      listed.push_back(std::string("\"") + c.name + "\"");
    }
    if (!v->is_string())
      fail(*v, name(key) + " must be one of " + join(listed) + ", got " + type_name(*v));
    const std::string s = v->as_string().str;
    for (const auto& c : choices) {
      if (s == c.name) {
        out = c.value;
        return;
      }
    }
    fail(*v, name(key) + " must be one of " + join(listed) + " (got \"" + s + "\")" +
                 did_you_mean(s, names));
  }

  // Everything in the document that the schema does not know is an error: a typo must not
  // silently leave a default in place.
  void end() const {
    std::vector<std::string> sections;
    for (const auto& sec : schema_) sections.push_back(sec.first);
    for (const auto& [key, v] : root_.as_table()) {
      const auto sec = std::find(sections.begin(), sections.end(), key);
      if (sec != sections.end()) {
        const auto& known = schema_[static_cast<size_t>(sec - sections.begin())].second;
        for (const auto& [k, kv] : v.as_table()) {
          if (std::find(known.begin(), known.end(), k) == known.end())
            fail(kv, "unknown key " + quoted(key + "." + k) + suggest_key(key, k) +
                         "; known keys in [" + key + "]: " + join(known));
        }
      } else if (v.is_table()) {
        fail(v, "unknown table [" + key + "]" + did_you_mean(key, sections) +
                    "; known tables: " + join(sections));
      } else {
        fail(v, "unknown top-level key " + quoted(key) + "; every setting belongs in a table" +
                    suggest_key("", key));
      }
    }
  }

 private:
  const toml::value* find(const char* key) {
    schema_.back().second.push_back(key);
    if (!table_) return nullptr;
    const auto it = table_->find(key);
    return it == table_->end() ? nullptr : &it->second;
  }

  // " (did you mean 'section.key'?)": the closest key of the same section, else the closest
  // key of any section (a key put in the wrong table), else "".
  std::string suggest_key(const std::string& section, const std::string& key) const {
    std::vector<std::string> same, any;
    for (const auto& [sec, keys] : schema_) {
      for (const auto& k : keys) {
        (sec == section ? same : any).push_back(k);
      }
    }
    for (const auto* pool : {&same, &any}) {
      const std::string best = closest(key, *pool);
      if (best.empty()) continue;
      for (const auto& [sec, keys] : schema_) {
        if ((sec == section) != (pool == &same)) continue;
        if (std::find(keys.begin(), keys.end(), best) != keys.end())
          return " (did you mean " + quoted(sec + "." + best) + "?)";
      }
    }
    return "";
  }

  std::string name(const char* key) const { return schema_.back().first + "." + key; }

  static std::string type_name(const toml::value& v) {
    std::string t = toml::stringize(v.type());
    if (t == "floating") t = "float";
    return (t == "integer" || t == "array" ? "an " : "a ") + t;
  }

  int64_t integer(const toml::value& v, const std::string& field) const {
    if (!v.is_integer()) fail(v, field + " must be an integer, got " + type_name(v));
    check_literal(v, field);
    return v.as_integer();
  }

  int to_int(const toml::value& v, const std::string& field) const {
    const int64_t i = integer(v, field);
    if (i < std::numeric_limits<int>::min() || i > std::numeric_limits<int>::max())
      fail(v, field + " is out of range for a 32-bit integer (got " + std::to_string(i) + ")");
    return static_cast<int>(i);
  }

  void check_literal(const toml::value& v, const std::string& field) const {
    if (literal_out_of_range(v))
      fail(v, field + " is out of range for a 64-bit " + (v.is_integer() ? "integer" : "float"));
  }

  // "<source>:<line>: <what>": the line points at the offending value.
  [[noreturn]] void fail(const toml::value& at, const std::string& what) const {
    const auto line = at.location().line();
    throw ConfigError(source_ + (line > 0 && with_lines_ ? ":" + std::to_string(line) : std::string()) + ": " + what);
  }

  const toml::value& root_;
  std::string source_;
  bool with_lines_ = true;
  const toml::table* table_ = nullptr;  // the current section's table; null when absent
  std::vector<std::pair<std::string, std::vector<std::string>>> schema_;  // section -> keys
};

// ---- writing ---------------------------------------------------------------------------

class TomlWriter {
 public:
  void section(const char* name) { out_ << (out_.tellp() > 0 ? "\n[" : "[") << name << "]\n"; }
  void field(const char* key, int v) { line(key, std::to_string(v)); }
  void field(const char* key, uint64_t v) { line(key, std::to_string(v)); }
  void field(const char* key, double v) { line(key, format_double(v)); }
  void field(const char* key, bool v) { line(key, v ? "true" : "false"); }
  void field(const char* key, const std::string& v) {
    // A TOML basic string: quotes, backslashes and control characters escaped.
    std::string q = "\"";
    for (const char ch : v) {
      const auto u = static_cast<unsigned char>(ch);
      if (ch == '"' || ch == '\\') {
        q += '\\';
        q += ch;
      } else if (u < 0x20 || u == 0x7f) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\u%04x", u);
        q += buf;
      } else {
        q += ch;
      }
    }
    line(key, q + "\"");
  }
  void field(const char* key, const std::vector<int>& v) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
    line(key, s + "]");
  }
  template <class T, size_t N>
  void choice(const char* key, const T& v, const Choice<T> (&choices)[N]) {
    for (const auto& c : choices) {
      if (c.value == v) {
        line(key, std::string("\"") + c.name + "\"");
        return;
      }
    }
    throw ConfigError(std::string("to_toml: field ") + key + " holds a value with no name");
  }
  void end() {}
  std::string str() const { return out_.str(); }

 private:
  void line(const char* key, const std::string& value) { out_ << key << " = " << value << "\n"; }
  std::ostringstream out_;
};

// ---- validation ------------------------------------------------------------------------

// Range checks with one message shape: "<source>: <field> must be <rule> (got <value>)".
// Negated comparisons so that NaN fails every check.
constexpr int64_t kMaxWidth = 1 << 16;          // channels, embedding (an index's kMaxIndexDim)
constexpr int64_t kMaxWindow = 4096;            // conv kernel, pool window
constexpr int64_t kMaxBatchTriplets = 1 << 20;  // 3 x this rows still fit an int

class Checker {
 public:
  explicit Checker(std::string source) : source_(std::move(source)) {}

  void at_least(const std::string& field, int64_t v, int64_t lo) const {
    if (!(v >= lo)) fail(field, ">= " + std::to_string(lo), std::to_string(v));
  }
  // Sizes have an upper bound too: far beyond any real model, low enough that the products
  // made of them (rows x channels x frames, 3 x batch) stay inside their integer types.
  void in_range(const std::string& field, int64_t v, int64_t lo, int64_t hi) const {
    if (!(v >= lo && v <= hi))
      fail(field, "in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]", std::to_string(v));
  }
  void non_negative_up_to(const std::string& field, double v, double hi) const {
    if (!(v >= 0.0 && v <= hi)) fail(field, "in [0, " + format_double(hi) + "]", format_double(v));
  }
  void positive(const std::string& field, double v) const {
    if (!(v > 0.0) || !std::isfinite(v)) fail(field, "finite and > 0", format_double(v));
  }
  void non_negative(const std::string& field, double v) const {
    if (!(v >= 0.0) || !std::isfinite(v)) fail(field, "finite and >= 0", format_double(v));
  }
  void unit_interval(const std::string& field, double v) const {
    if (!(v >= 0.0 && v < 1.0)) fail(field, "in [0, 1)", format_double(v));
  }
  [[noreturn]] void fail(const std::string& field, const std::string& rule, const std::string& got) const {
    throw ConfigError(source_ + ": " + field + " must be " + rule + " (got " + got + ")");
  }
  [[noreturn]] void fail(const std::string& what) const { throw ConfigError(source_ + ": " + what); }

 private:
  std::string source_;
};

// Clip and excerpt lengths fit the int sample counts; the mel front end is valid at the rate.
void validate_audio_and_mel(const Config& c, const Checker& check) {
  check.at_least("audio.sample_rate", c.audio.sample_rate, 1);
  check.positive("audio.clip_seconds", c.audio.clip_seconds);
  // Frame counts and kernel dimensions are int; 2^31 - 1 samples is over a day of audio.
  const double samples = c.audio.clip_seconds * c.audio.sample_rate;
  if (!(samples + 0.5 < static_cast<double>(std::numeric_limits<int>::max())))
    check.fail("audio.clip_seconds = " + format_double(c.audio.clip_seconds) + " at " +
               std::to_string(c.audio.sample_rate) + " Hz exceeds the limit of " +
               std::to_string(std::numeric_limits<int>::max()) + " samples per clip");
  check.positive("audio.excerpt_seconds", c.audio.excerpt_seconds);
  if (!(c.audio.excerpt_seconds >= c.audio.clip_seconds))
    check.fail("audio.excerpt_seconds", ">= audio.clip_seconds (" +
               format_double(c.audio.clip_seconds) + "): a training clip is cut from the excerpt",
               format_double(c.audio.excerpt_seconds));
  if (!(c.audio.excerpt_seconds * c.audio.sample_rate + 0.5 <
        static_cast<double>(std::numeric_limits<int>::max())))
    check.fail("audio.excerpt_seconds", "at most " +
               std::to_string(std::numeric_limits<int>::max()) + " samples",
               format_double(c.audio.excerpt_seconds));
  if (c.mel.sample_rate != c.audio.sample_rate)
    check.fail("mel.sample_rate (" + std::to_string(c.mel.sample_rate) +
               ") must equal audio.sample_rate (" + std::to_string(c.audio.sample_rate) +
               "); it mirrors it and is not set on its own");
  try {
    validate_mel_params(c.mel);
  } catch (const std::invalid_argument& e) {
    check.fail(e.what());
  }
}

void validate_model(const Config& c, const Checker& check) {
  if (c.model.channels.empty())
    check.fail("model.channels must list at least one conv stage (got [])");
  for (size_t i = 0; i < c.model.channels.size(); ++i)
    check.in_range("model.channels[" + std::to_string(i) + "]", c.model.channels[i], 1, kMaxWidth);
  check.in_range("model.kernel", c.model.kernel, 1, kMaxWindow);
  check.in_range("model.pool", c.model.pool, 1, kMaxWindow);
  check.in_range("model.embedding", c.model.embedding, 1, kMaxWidth);
  if (c.model.pool_stages == PoolStages::All) {  // the head's width must stay an int
    int64_t width = 0;
    for (int ch : c.model.channels) width += ch;
    width *= pooled_features(c.model.pooling);
    if (width > 3 * int64_t{kMaxWidth})
      check.fail("model.pool_stages = \"all\" pools " + std::to_string(width) +
                 " features per clip (every stage's channels, model.pooling's k each); at most " +
                 std::to_string(3 * int64_t{kMaxWidth}) + ": use fewer or narrower stages, or pool_stages = \"last\"");
  }
  check.positive("model.l2_eps", c.model.l2_eps);
  check.unit_interval("model.dropout", c.model.dropout);
}

void validate_loss(const Config& c, const Checker& check) {
  check.non_negative("loss.margin", c.loss.margin);
  check.positive("loss.eps", c.loss.eps);
  check.positive("loss.temperature", c.loss.temperature);
}

void validate_optim(const Config& c, const Checker& check) {
  check.positive("optim.lr", c.optim.adam.lr);
  check.unit_interval("optim.beta1", c.optim.adam.beta1);
  check.unit_interval("optim.beta2", c.optim.adam.beta2);
  check.positive("optim.eps", c.optim.adam.eps);
  check.non_negative("optim.weight_decay", c.optim.adam.weight_decay);
  check.non_negative("optim.clip_norm", c.optim.clip_norm);
}

// Steps, hop bounds of positives and negatives, schedule and checkpoint cadence.
void validate_train(const Config& c, const Checker& check) {
  check.in_range("train.batch_triplets", c.train.batch_triplets, 1, kMaxBatchTriplets);
  check.at_least("train.steps", c.train.steps, 0);
  check.at_least("train.epochs", c.train.epochs, 0);
  if (c.train.steps == 0 && c.train.epochs == 0)
    check.fail("train.steps and train.epochs are both 0: set one of them");
  check.at_least("train.pos_hops", c.train.pos_hops, 1);
  if (!(c.train.neg_hops > c.train.pos_hops))
    check.fail("train.neg_hops", "> train.pos_hops (" + std::to_string(c.train.pos_hops) +
               "): a negative must be farther than every positive", std::to_string(c.train.neg_hops));
  if (c.train.neg_hops > 254)
    check.fail("train.neg_hops", "<= 254 (hop distances are stored in one byte)",
               std::to_string(c.train.neg_hops));
  check.at_least("train.warmup_steps", c.train.warmup_steps, 0);
  // With epochs the step count is known only once the data is; lr_schedule checks it then.
  if (c.train.epochs == 0 && c.train.warmup_steps > c.train.steps)
    check.fail("train.warmup_steps", "<= train.steps (" + std::to_string(c.train.steps) + ")",
               std::to_string(c.train.warmup_steps));
  check.unit_interval("train.min_lr_ratio", c.train.min_lr_ratio);
  check.at_least("train.checkpoint_every", c.train.checkpoint_every, 1);
  check.at_least("train.validate_every", c.train.validate_every, 1);
  check.at_least("train.early_stopping", c.train.early_stopping, 0);
  check.in_range("train.loader_threads", c.train.loader_threads, 1, 1024);
  check.in_range("train.zero", c.train.zero, 0, 1);
}

void validate_augment(const Config& c, const Checker& check) {
  // 60 dB either way is a factor of 1000 in amplitude: past it, a clip is silence or clipping.
  check.non_negative_up_to("augment.gain_db", c.augment.gain_db, 60.0);
  check.non_negative_up_to("augment.noise_snr_db", c.augment.noise_snr_db, 120.0);
  check.non_negative("augment.shift_seconds", c.augment.shift_seconds);
  if (c.augment.shift_seconds > c.audio.clip_seconds)
    check.fail("augment.shift_seconds", "<= audio.clip_seconds (" +
               format_double(c.audio.clip_seconds) + ")", format_double(c.augment.shift_seconds));
}

void validate_data(const Config& c, const Checker& check) {
  check.at_least("data.top_k", c.data.top_k, 0);
  check.unit_interval("data.val_items", c.data.val_items);
  check.unit_interval("data.val_edges", c.data.val_edges);
  check.in_range("data.recall_k", c.data.recall_k, 1, 100000);
  if (c.data.run_dir.empty()) check.fail("data.run_dir must not be empty");
  // TOML integers are signed 64-bit: a larger seed could not be written back by to_toml.
  if (c.train.seed > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    check.fail("train.seed", "<= " + std::to_string(std::numeric_limits<int64_t>::max()),
               std::to_string(c.train.seed));
}

void validate(const Config& c, const std::string& source) {
  const Checker check(source);
  validate_audio_and_mel(c, check);
  validate_model(c, check);
  validate_loss(c, check);
  validate_optim(c, check);
  validate_train(c, check);
  validate_augment(c, check);
  validate_data(c, check);
}

}  // namespace

Config default_config() { return Config{}; }

int pooled_features(GlobalPool p) {
  switch (p) {
    case GlobalPool::Mean: return 1;
    case GlobalPool::MeanMax: return 2;
    case GlobalPool::MeanMaxL2: return 3;
  }
  return 1;
}

ContrastiveLossParams contrastive_params(const Config& c) {
  return ContrastiveLossParams{c.loss.temperature, c.train.pos_hops, c.train.neg_hops};
}

bool in_batch_layout(const Config& c) { return mines_in_batch(c) || c.loss.name == LossKind::Contrastive; }

const char* batch_unit(const Config& c) { return c.loss.name == LossKind::Contrastive ? "anchor pairs" : "triplets"; }

int64_t batch_rows(const Config& c) { return (in_batch_layout(c) ? 2 : 3) * int64_t{c.train.batch_triplets}; }

bool mines_in_batch(const Config& c) { return c.loss.name == LossKind::Triplet && c.train.mining != Mining::Offline; }

Config parse_config(const std::string& toml_text, const std::string& source) {
  return parse_config(toml_text, source, default_config());
}

namespace {

// "line:column" of a byte offset, both from 1, for messages about raw text.
std::string line_and_column(const std::string& text, size_t offset) {
  const size_t line_start = offset == 0 ? 0 : text.rfind('\n', offset - 1) + 1;  // npos + 1 = 0: the first line
  const auto line = 1 + std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(offset), '\n');
  return std::to_string(line) + ":" + std::to_string(offset - line_start + 1);
}

// TOML documents are UTF-8 (the spec says so). Checked before parsing, which also keeps broken
// bytes away from toml11: its multi-line literal string reads out of bounds on them (found by
// tests/fuzz/fuzz_config).
void check_utf8(const std::string& text, const std::string& source) {
  const size_t bad = first_invalid_utf8(text);
  if (bad == std::string::npos) return;
  throw ConfigError(source + ":" + line_and_column(text, bad) + ": not valid UTF-8 (byte " + hex_byte(text, bad) +
                    "): a config is TOML, which is UTF-8 text");
}

// toml11 parses arrays and inline tables by recursion, a few stack frames per level, so deep
// nesting overflows the stack: about 1,000 levels of `[` under ASan, 200,000 without (found by
// tests/fuzz/fuzz_config). A melgraph config nests one level (model.channels); deeper text is
// refused before toml11 reads it.
constexpr int kMaxConfigNesting = 8;

// Skips the string that opens at text[i] (a quote) and returns the offset just past it. Basic
// strings ("...", """...""") take backslash escapes; literal ones ('...', '''...''') do not.
// Unterminated strings end where TOML says they are broken (a single-line one at its line's end,
// a multi-line one at the end of the text); toml11 reports them.
size_t skip_toml_string(const std::string& text, size_t i) {
  const char quote = text[i];
  const bool multi_line = text.compare(i, 3, std::string(3, quote)) == 0;
  const size_t delimiter = multi_line ? 3 : 1;
  size_t j = i + delimiter;
  while (j < text.size()) {
    if (quote == '"' && text[j] == '\\') {
      j += 2;
    } else if (!multi_line && text[j] == '\n') {
      return j;
    } else if (text.compare(j, delimiter, std::string(delimiter, quote)) == 0) {
      j += delimiter;
      // A multi-line string may end with one or two quotes of its own before the delimiter's three.
      for (int extra = 0; multi_line && extra < 2 && j < text.size() && text[j] == quote; ++extra) ++j;
      return j;
    } else {
      ++j;
    }
  }
  return text.size();
}

// Refuses arrays and inline tables nested deeper than kMaxConfigNesting, before any recursive
// parser sees them. Brackets inside strings and comments do not count; table headers ([a], [[a]])
// count for their own line only, which is within the limit.
void check_nesting(const std::string& text, const std::string& source) {
  int depth = 0;
  size_t i = 0;
  while (i < text.size()) {
    const char ch = text[i];
    if (ch == '#') {
      i = text.find('\n', i);
      if (i == std::string::npos) return;
    } else if (ch == '"' || ch == '\'') {
      i = skip_toml_string(text, i);
    } else {
      if (ch == '[' || ch == '{') {
        if (++depth > kMaxConfigNesting)
          throw ConfigError(source + ":" + line_and_column(text, i) + ": arrays or inline tables nested more than " +
                            std::to_string(kMaxConfigNesting) +
                            " deep; a melgraph config nests one level (model.channels = [128, 128, 128])");
      } else if ((ch == ']' || ch == '}') && depth > 0) {
        --depth;
      }
      ++i;
    }
  }
}

}  // namespace

Config parse_config(const std::string& toml_text, const std::string& source, const Config& base) {
  check_utf8(toml_text, source);
  check_nesting(toml_text, source);
  toml::value root;
  try {
    std::istringstream in(toml_text);
    root = toml::parse(in, source);
  } catch (const std::exception& e) {  // toml::syntax_error carries line and column
    throw ConfigError(source + ": " + e.what());
  }
  Config c = base;
  TomlReader reader(root, source);
  visit_fields(c, reader);
  c.mel.sample_rate = c.audio.sample_rate;
  validate(c, source);
  return c;
}

Config load_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(path + ": cannot open config file: " + std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw ConfigError(path + ": read failed");
  return parse_config(text.str(), path);
}

void validate_config(const Config& c) { validate(c, "config"); }

Config apply_overrides(const Config& c, const std::vector<std::string>& overrides) {
  if (overrides.empty()) return c;
  std::istringstream base(to_toml(c));
  toml::value root = toml::parse(base, "config");
  std::string all;  // "--set a=1 --set b=2", for the errors of the result
  for (const std::string& o : overrides) {
    if (first_invalid_utf8(o) != std::string::npos)
      throw ConfigError("--set: an override that is not valid UTF-8 text (section.key=value)");
    const std::string source = "--set " + o;
    const size_t eq = o.find('=');
    const size_t dot = o.find('.');
    if (eq == std::string::npos || dot == std::string::npos || dot > eq || dot == 0 || dot + 1 == eq)
      throw ConfigError(source + ": expected section.key=value, e.g. train.steps=100");
    const std::string section = o.substr(0, dot), key = o.substr(dot + 1, eq - dot - 1);
    const std::string text = o.substr(eq + 1);
    check_nesting(text, source);
    toml::value value;
    try {
      std::istringstream in("v = " + text + "\n");
      value = toml::parse(in, source).as_table().at("v");
    } catch (const std::exception&) {
      // Not a TOML value: taken as a bare string (paths, choices), so data.edges=e.csv works.
      value = toml::value(text);
    }
    auto& table = root.as_table();
    if (table.find(section) == table.end()) table[section] = toml::table{};
    if (!table[section].is_table())
      throw ConfigError(source + ": " + section + " is not a section");
    table[section].as_table()[key] = value;
    // Read one at a time, so an unknown key or a value of the wrong type names its override.
    Config next = default_config();
    TomlReader reader(root, source, /*with_lines=*/false);
    visit_fields(next, reader);
    all += (all.empty() ? "" : " ") + source;
  }
  Config out = default_config();
  TomlReader reader(root, "--set", /*with_lines=*/false);
  visit_fields(out, reader);
  out.mel.sample_rate = out.audio.sample_rate;
  // The rules between fields (warmup_steps <= steps, ...) hold for the result, not for each
  // step on the way: --set train.steps=50 --set train.warmup_steps=5 works in either order.
  validate(out, all.empty() ? "--set" : all);
  return out;
}

void resolve_paths(Config& c, const std::string& base_dir) {
  const std::filesystem::path base(base_dir.empty() ? "." : base_dir);
  for (std::string* p : {&c.data.edges, &c.data.catalog, &c.data.cache, &c.data.run_dir}) {
    if (p->empty() || std::filesystem::path(*p).is_absolute()) continue;
    *p = (base / *p).lexically_normal().string();
  }
}

std::string to_toml(const Config& c) {
  TomlWriter w;
  visit_fields(c, w);
  return w.str();
}

}  // namespace mg
