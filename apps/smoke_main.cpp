// `melgraph-smoke`: a few training steps on generated triplets, needing no files
// (engine/perf/smoke.h). A separate binary that links only the engine, so that it travels in
// the GPU bundle (scripts/gpu-check) to machines without FFmpeg or SQLite.
#include <cstdio>
#include <exception>

#include <CLI/CLI.hpp>
#include "engine/perf/smoke.h"

int main(int argc, char** argv) {
  mg::SmokeOptions o;
  CLI::App app{"melgraph-smoke: train the model for a few steps on generated audio (shapes, loss, time per step)",
               "melgraph-smoke"};
  app.add_option("--config", o.config_path, "Run config (TOML); default: the built-in defaults");
  app.add_option("--triplets", o.triplets,
                 "Triplets per step (3 clips each; with the contrastive loss, pairs of 2 clips)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--steps", o.steps, "Optimizer steps")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--threads", o.threads, "CPU threads (0: all cores)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--device", o.device, "auto (CUDA when a GPU is present), cpu or cuda")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  app.add_flag("--deterministic", o.deterministic, "CUDA: deterministic algorithms only");
  app.add_flag("--tf32", o.tf32, "CUDA: allow TF32 tensor-core math (faster, ~1e-3 relative error)");
  app.add_flag("--no-graph", o.no_graph, "CUDA: run every step eagerly instead of replaying a CUDA Graph");
  app.add_option("--seed", o.seed, "Seed for the weights and the generated audio")->capture_default_str();
  app.add_option("--save", o.save, "Write a checkpoint (safetensors) after the last step");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    mg::run_smoke(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "melgraph-smoke: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
