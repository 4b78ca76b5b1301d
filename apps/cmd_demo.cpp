// `melgraph demo`: the whole pipeline on a generated collection, on any machine, in minutes
// (engine/quality/demo_run.h: collection, config, train, verdict, export / eval / query, report).
// Everything lands in --dir (default melgraph-demo/); a rerun replaces an earlier demo there.
#include <cstdio>
#include <memory>
#include <stdexcept>

#include "apps/commands.h"
#include "engine/io/stdout_redirect.h"
#include "engine/quality/demo_run.h"

namespace mg::cli {

void register_demo(CLI::App& app) {
  auto opts = std::make_shared<quality::DemoRunOptions>();
  CLI::App* cmd = app.add_subcommand(
      "demo", "The whole pipeline on a generated music collection and preference graph: select, prepare, "
              "train, validate; prints whether the model learned");
  cmd->add_option("--dir", opts->dir, "Where the collection, config and run go")->capture_default_str();
  cmd->add_option("--clips", opts->clips, "Clips in the collection")->capture_default_str()->check(CLI::Range(48, 100000));
  cmd->add_option("--clip-seconds", opts->clip_seconds, "Length of every clip")
      ->capture_default_str()->check(CLI::Range(3.0, 600.0));
  cmd->add_option("--pulse-depth", opts->pulse_depth,
                  "How deep each clip's pulse, the sound the graph's taste rests on, dips the level (0: none)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 0.99));
  cmd->add_option("--steps", opts->steps, "Training steps")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--seed", opts->seed, "Seed of the collection, the weights and the batches")->capture_default_str();
  cmd->add_option("--threads", opts->threads, "CPU threads (0: all cores)")->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--device", opts->device, kDeviceHelp)->capture_default_str()->check(device_check());
  cmd->add_option("--set", opts->overrides,
                  "Change a field of the demo's run config: section.key=value, as train --set (repeatable)");
  auto json = std::make_shared<bool>(false);
  cmd->add_flag("--json", *json,
                "Print the verdict as one JSON object on stdout (recalls, nDCG, spread, files); the rest goes to "
                "stderr");
  cmd->callback([opts, json] {
    quality::DemoResult r;
    try {
      StdoutToStderr aside(*json);  // --json: stdout is the verdict's alone
      r = quality::run_demo(*opts);
    } catch (const std::invalid_argument& e) {  // bad input: exit code 2
      throw UsageError(e.what());
    }
    if (*json) std::printf("%s\n", r.json().c_str());
  });
}

}  // namespace mg::cli
