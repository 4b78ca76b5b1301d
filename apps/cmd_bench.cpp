// `melgraph bench`: the training step's speed on this machine, first as `<N> clips/s`, then
// the step time, its parts (each measured alone, see engine/perf/step_bench.h) and the roofline
// floor (engine/perf/roofline.h) next to the measured times. --json prints the same as one object
// (bench/compare/ reads it).
#include <cstdio>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "engine/backend_factory.h"
#include "engine/config.h"
#include "engine/io/json_text.h"
#include "engine/perf/step_bench.h"

namespace mg::cli {

namespace {

struct BenchOptions {
  std::string config_path;
  std::string device = "auto";
  int threads = 0;
  int steps = 10;
  int warmup = 2;
  bool json = false;
  bool no_graph = false;
  bool tf32 = false;
  uint64_t seed = 0;
};

double pct(double part, double whole) { return whole > 0 ? 100.0 * part / whole : 0; }

void print_json(const StepBenchReport& rep, const Config& c, const BenchOptions& o, const std::string& config_name) {
  const StepBenchResult& r = rep.result;
  nlohmann::json j;
  j["clips_per_s"] = r.clips_per_second();
  j["step_s"] = r.step_median;
  j["step_samples_s"] = r.step_seconds;
  j["batch"] = r.batch;
  j["triplets"] = r.n_triplets;
  j["clip_seconds"] = c.audio.clip_seconds;
  j["mode"] = r.replayed ? "CUDA Graph replay" : "eager";
  j["backend"] = rep.backend;
  j["device"] = rep.gpu ? "cuda" : "cpu";
  j["config"] = config_name;
  j["warmup"] = o.warmup;
  j["steps"] = o.steps;
  j["parts_measured_separately"] = true;
  nlohmann::json parts = nlohmann::json::array();
  for (size_t i = 0; i < r.parts.size(); ++i) {
    const CostPart& cp = rep.cost.parts[i];
    parts.push_back({{"name", r.parts[i].name},
                     {"s", r.parts[i].seconds},
                     {"flops", cp.flops},
                     {"bytes", cp.bytes},
                     {"floor_s", roofline_floor(cp.flops, cp.bytes, rep.peak).seconds()}});
  }
  j["parts"] = parts;
  j["fused_loss_s"] = r.fused_loss_seconds;
  j["roofline"] = {{"flops", rep.cost.flops()},
                   {"bytes", rep.cost.bytes()},
                   {"peak_flops_per_s", rep.peak.flops_per_s},
                   {"peak_bytes_per_s", rep.peak.bytes_per_s},
                   {"peak_source", rep.peak.source},
                   {"peak_device", rep.peak.device},
                   {"floor_s", rep.floor.seconds()},
                   {"bound", rep.floor.compute_bound() ? "compute" : "memory"},
                   {"fraction_of_floor", rep.floor.seconds() / r.step_median}};
  std::printf("%s\n", json_text(j, 2).c_str());
}

void print_table(const StepBenchReport& rep, const Config& c, const BenchOptions& o, const std::string& config_name) {
  const StepBenchResult& r = rep.result;
  std::printf("%.1f clips/s\n", r.clips_per_second());
  std::printf("training step: %.2f ms (median of %d after %d warm-up, %s), %d clips = %d %s of %.2f s\n",
              1e3 * r.step_median, o.steps, o.warmup, r.replayed ? "CUDA Graph replay" : "eager", r.batch, r.n_triplets,
              batch_unit(c), c.audio.clip_seconds);
  std::printf("backend: %s\n%s\nconfig: %s\n", rep.backend.c_str(), rep.note.c_str(), config_name.c_str());
  std::printf("\nparts, each measured separately (run alone with the same ops and shapes, synchronised around it;\n"
              "they need not add up to the step):\n");
  std::printf("  %-20s %10s %7s %11s %8s\n", "part", "ms", "share", "floor ms", "of floor");
  double sum = 0;
  for (size_t i = 0; i < r.parts.size(); ++i) {
    const CostPart& cp = rep.cost.parts[i];
    const RooflineFloor f = roofline_floor(cp.flops, cp.bytes, rep.peak);
    const double t = r.parts[i].seconds;
    sum += t;
    std::printf("  %-20s %10.3f %6.1f%% %11.3f %7.1f%%\n", r.parts[i].name.c_str(), 1e3 * t, pct(t, r.step_median),
                1e3 * f.seconds(), pct(f.seconds(), t));
  }
  std::printf("  %-20s %10.3f %6.1f%%\n", "sum of parts", 1e3 * sum, pct(sum, r.step_median));
  std::printf("  (the fused %s loss with its gradient alone: %.4f ms)\n",
              c.loss.name == LossKind::Contrastive ? "contrastive" : "triplet", 1e3 * r.fused_loss_seconds);
  const RooflineFloor& floor = rep.floor;
  std::printf(
      "\nroofline: floor %.2f ms = max(%.2f GFLOP / %.1f GFLOP/s, %.3f GB / %.1f GB/s), %s-bound; "
      "measured %.2f ms = %.1f%% of the floor's speed\n",
      1e3 * floor.seconds(), rep.cost.flops() / 1e9, rep.peak.flops_per_s / 1e9, rep.cost.bytes() / 1e9,
      rep.peak.bytes_per_s / 1e9, floor.compute_bound() ? "compute" : "memory", 1e3 * r.step_median,
      pct(floor.seconds(), r.step_median));
  std::printf("  peak of %s: %s\n", rep.peak.device.c_str(), rep.peak.source.c_str());
  if (o.tf32) std::printf("  (the floor assumes FP32 math; TF32 tensor cores lift the conv stack's ceiling)\n");
}

void run_bench(const BenchOptions& o) {
  const Config c = o.config_path.empty() ? default_config() : load_config(o.config_path);
  BackendOptions bo;
  parse_device(o.device, bo);
  bo.threads = o.threads;
  bo.tf32 = o.tf32;
  StepBenchOptions so;
  so.steps = o.steps;
  so.warmup = o.warmup;
  so.capture = !o.no_graph;
  so.seed = o.seed;
  const StepBenchReport rep = bench_step_on_device(c, bo, so);
  const std::string config_name = o.config_path.empty() ? "built-in defaults" : o.config_path;
  if (o.json)
    print_json(rep, c, o, config_name);
  else
    print_table(rep, c, o, config_name);
}

}  // namespace

void register_bench(CLI::App& app) {
  auto opts = std::make_shared<BenchOptions>();
  CLI::App* cmd = app.add_subcommand(
      "bench", "Time the training step: clips/s, the split by part, and the roofline floor of this device");
  cmd->add_option("--device", opts->device, kDeviceHelp)->capture_default_str()->check(device_check());
  cmd->add_option("--threads", opts->threads, "CPU threads (0: all cores)")->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--config", opts->config_path,
                  "Run config (TOML); default: the built-in defaults (bench/reference.toml is the reference configuration: 10 s clips, 192 a step)");
  cmd->add_option("--steps", opts->steps, "Timed steps (the median is reported; each part is timed as often)")
      ->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--warmup", opts->warmup, "Untimed steps first (CUDA needs 2: eager, then graph capture)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_flag("--json", opts->json, "Print one JSON object instead of the table");
  cmd->add_flag("--no-graph", opts->no_graph, "CUDA: run every step eagerly instead of replaying a CUDA Graph");
  cmd->add_flag("--tf32", opts->tf32, "CUDA: allow TF32 tensor-core math");
  cmd->add_option("--seed", opts->seed, "Seed for the weights and the random audio")->capture_default_str();
  cmd->callback([opts] { run_bench(*opts); });
}

}  // namespace mg::cli
