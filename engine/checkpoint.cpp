#include "engine/checkpoint.h"

#include <cmath>
#include <memory>
#include <optional>
#include <sstream>
#include <vector>

#include "build_info.h"
#include "engine/backend.h"

namespace mg {

namespace {

constexpr const char* kFormat = "melgraph-checkpoint";
constexpr const char* kFormatVersion = "2";
// Version 1 checkpoints predate the recipe's options; their configs are read over this base.
constexpr const char* kFormatVersion1 = "1";

Config version1_base() {
  Config c = default_config();
  c.model.input_norm = InputNorm::None;
  c.model.head_norm = HeadNorm::None;
  c.model.embedding_from = EmbeddingFrom::Linear;
  c.loss.name = LossKind::Triplet;
  return c;
}

void put_buffer(StFile& f, const std::string& prefix, const TensorBuffer& buf, Backend& be) {
  for (const TensorSpec& s : buf.layout().specs()) {
    std::vector<float> host(static_cast<size_t>(s.numel()));
    be.to_host(host.data(), buf.data() + s.offset, host.size() * sizeof(float));
    // A checkpoint is what a run falls back to: it must never hold a NaN or an infinity.
    for (size_t i = 0; i < host.size(); ++i) {
      if (!std::isfinite(host[i]))
        throw CheckpointError("refusing to write a checkpoint with a non-finite value: " + prefix + s.name +
                              "[" + std::to_string(i) + "] = " + std::to_string(host[i]));
    }
    f.put_f32(prefix + s.name, s.shape, host.data());
  }
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

// Appends to `problems` every way the file's tensors under `prefix` differ from the layout.
void check_buffer(const StFile& f, const std::string& prefix, const TensorLayout& layout,
                  std::vector<std::string>& problems) {
  for (const TensorSpec& s : layout.specs()) {
    const std::string name = prefix + s.name;
    if (!f.has(name)) {
      problems.push_back("missing tensor " + name + " " + shape_str(s.shape));
      continue;
    }
    const StTensor& t = f.tensors.at(name);
    if (t.dtype != DType::F32)
      problems.push_back(name + ": dtype " + dtype_name(t.dtype) + ", expected F32");
    if (t.shape != s.shape)
      problems.push_back(name + ": shape " + shape_str(t.shape) + " in the file, the model has " + shape_str(s.shape));
  }
}

void load_buffer(const StFile& f, const std::string& prefix, TensorBuffer& buf, Backend& be) {
  for (const TensorSpec& s : buf.layout().specs()) {
    const StTensor& t = f.tensors.at(prefix + s.name);
    be.to_device(buf.data() + s.offset, t.bytes.data(), t.bytes.size());
  }
}

std::string meta(const StFile& f, const std::string& key) {
  auto it = f.metadata.find(key);
  if (it == f.metadata.end()) throw CheckpointError(f.source + ": metadata has no '" + key + "'");
  return it->second;
}

int64_t meta_int(const StFile& f, const std::string& key) {
  const std::string v = meta(f, key);
  try {
    size_t used = 0;
    const long long x = std::stoll(v, &used);
    if (used != v.size()) throw std::invalid_argument(v);
    return x;
  } catch (const std::exception&) {
    throw CheckpointError(f.source + ": metadata '" + key + "' is not an integer: " + v);
  }
}

StFile read_checked(const std::string& path) {
  StFile f;
  try {
    f = read_safetensors(path);
  } catch (const SafetensorsError& e) {
    throw CheckpointError(e.what());
  }
  auto it = f.metadata.find("format");
  if (it == f.metadata.end() || it->second != kFormat)
    throw CheckpointError(path + ": not a melgraph checkpoint (metadata 'format' is not '" + kFormat + "')");
  const std::string ver = meta(f, "format_version");
  if (ver != kFormatVersion && ver != kFormatVersion1)
    throw CheckpointError(path + ": checkpoint format version " + ver + "; this melgraph reads versions " +
                          kFormatVersion1 + " and " + kFormatVersion);
  return f;
}

}  // namespace

void save_checkpoint(const std::string& path, Model& model, const Optimizer* opt, const TrainState& state) {
  Backend& be = model.backend();
  be.synchronize();
  StFile f;
  put_buffer(f, "", model.params(), be);
  put_buffer(f, "", model.state(), be);
  if (opt) {
    put_buffer(f, "optim.m.", opt->m(), be);
    put_buffer(f, "optim.v.", opt->v(), be);
  }
  // Built by construction: GCC 12 at -O3 warns falsely (-Wrestrict) on assigning short literals.
  f.metadata = {
      {"format", kFormat},
      {"format_version", kFormatVersion},
      {"melgraph_version", MELGRAPH_VERSION},
      {"config", to_toml(model.config())},
      {"step", std::to_string(state.step)},
      {"epoch", std::to_string(state.epoch)},
      {"seed", std::to_string(state.seed)},
      {"optimizer", !opt ? "none" : opt->config().adam.decoupled ? "adamw" : "adam"},
      {"optimizer_step", std::to_string(opt ? opt->step_count() : 0)},
  };
  if (!state.trainer.empty()) f.metadata["trainer"] = state.trainer;
  try {
    write_safetensors(path, f);
  } catch (const SafetensorsError& e) {
    throw CheckpointError(e.what());
  }
}

Config read_checkpoint_config(const std::string& path) {
  const StFile f = read_checked(path);
  try {
    const std::string source = path + " (stored config)";
    if (meta(f, "format_version") == kFormatVersion1) return parse_config(meta(f, "config"), source, version1_base());
    return parse_config(meta(f, "config"), source);
  } catch (const ConfigError& e) {
    throw CheckpointError(e.what());
  }
}

TrainState load_checkpoint(const std::string& path, Model& model, Optimizer* opt) {
  const StFile f = read_checked(path);
  std::vector<std::string> problems;
  check_buffer(f, "", model.params().layout(), problems);
  check_buffer(f, "", model.state().layout(), problems);
  if (opt) {
    if (meta(f, "optimizer") == "none")
      problems.push_back("the checkpoint holds no optimizer state (saved without one); resume needs it");
    else {
      check_buffer(f, "optim.m.", opt->m().layout(), problems);
      check_buffer(f, "optim.v.", opt->v().layout(), problems);
    }
  }
  // Tensors in the file that the model does not have are a mismatch too (a different
  // architecture with a prefix of the same names must not load silently).
  for (const auto& [name, t] : f.tensors) {
    const bool is_optim = name.rfind("optim.", 0) == 0;
    const std::string base = is_optim ? name.substr(name.find('.', 6) + 1) : name;
    bool known = false;
    for (const TensorSpec& s : model.params().layout().specs()) known = known || s.name == base;
    for (const TensorSpec& s : model.state().layout().specs()) known = known || (!is_optim && s.name == name);
    if (!known) problems.push_back("unexpected tensor " + name + " " + shape_str(t.shape));
  }
  if (!problems.empty()) {
    std::ostringstream msg;
    msg << path << ": checkpoint does not match the model (" << problems.size() << " difference"
        << (problems.size() > 1 ? "s" : "") << "):";
    for (const auto& p : problems) msg << "\n  - " << p;
    throw CheckpointError(msg.str());
  }
  TrainState st;
  st.step = meta_int(f, "step");
  st.epoch = meta_int(f, "epoch");
  st.seed = static_cast<uint64_t>(meta_int(f, "seed"));
  if (auto it = f.metadata.find("trainer"); it != f.metadata.end()) st.trainer = it->second;
  load_buffer(f, "", model.params(), model.backend());
  load_buffer(f, "", model.state(), model.backend());
  if (opt) {
    load_buffer(f, "optim.m.", opt->m(), model.backend());
    load_buffer(f, "optim.v.", opt->v(), model.backend());
    opt->set_step_count(meta_int(f, "optimizer_step"));
  }
  return st;
}

Config verify_checkpoint(const std::string& path, bool with_optimizer) {
  Config cfg = read_checkpoint_config(path);
  const std::unique_ptr<Backend> cpu = make_cpu_backend(1);
  Model model(cfg, *cpu, 1);
  std::optional<Optimizer> opt;
  if (with_optimizer) opt.emplace(*cpu, Model::param_layout(cfg), cfg.optim);
  load_checkpoint(path, model, opt ? &*opt : nullptr);
  return cfg;
}

}  // namespace mg
