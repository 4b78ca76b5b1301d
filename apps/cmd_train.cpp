// `melgraph train --config run.toml [--set key=value ...] [--resume]`: the training run of
// engine/train/trainer.h. SIGINT/SIGTERM finish the current step, write a checkpoint and exit 0
// with the command that resumes; a second signal ends the process at once.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "apps/commands.h"
#include "engine/config.h"
#include "engine/dist/comm.h"
#include "engine/io/stdout_redirect.h"
#include "engine/io/stop_signals.h"
#include "engine/train/trainer.h"

namespace mg::cli {

namespace {

struct TrainCliOptions {
  std::string config_path;
  std::vector<std::string> overrides;
  bool resume = false;
  int threads = 0;
  int prepare_threads = 0;
  std::string device = "auto";
  bool deterministic = false, tf32 = false, no_graph = false, quiet = false, skip_bad_lines = false, json = false;
  int64_t stop_after = 0;
};

// The ranks of the run: MPI's when started by mpirun or srun. Rank 0 speaks for the run; the
// other ranks' standard output goes nowhere (their errors still reach stderr); each rank's CPU
// backend takes its share of the machine's cores, and its GPU is the one of its local rank
// unless --device cuda:N names one.
std::unique_ptr<dist::Comm> join_ranks(train::TrainOptions& to) {
  std::unique_ptr<dist::Comm> comm = dist::world();
  if (comm->size() == 1) return comm;
  if (!comm->leader()) {
    if (!std::freopen("/dev/null", "w", stdout)) throw std::runtime_error("cannot silence rank's standard output");
    to.quiet = true;
  }
  if (to.backend.cuda_device < 0) to.backend.cuda_device = comm->local_rank();
  if (to.backend.threads == 0) {
    const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
    to.backend.threads = std::max(1, static_cast<int>(cores) / comm->local_size());
  }
  return comm;
}

void run_train(const TrainCliOptions& o) {
  Config cfg = apply_overrides(load_config(o.config_path), o.overrides);
  if (o.skip_bad_lines) cfg.data.skip_bad_lines = true;
  resolve_paths(cfg, std::filesystem::path(o.config_path).parent_path().string());

  train::TrainOptions to;
  to.config_path = o.config_path;
  parse_device(o.device, to.backend);
  to.backend.threads = o.threads;
  to.backend.deterministic = o.deterministic;
  to.backend.tf32 = o.tf32;
  to.capture = !o.no_graph;
  to.resume = o.resume;
  to.prepare_threads = o.prepare_threads;
  to.quiet = o.quiet;
  to.stop_after = o.stop_after;
  for (const std::string& s : o.overrides) to.config_path += " --set '" + s + "'";

  const StopSignals signals("\nmelgraph: stopping after this step (checkpoint follows); signal again to abort now\n");
  to.stop = signals.flag();
  const std::unique_ptr<dist::Comm> comm = join_ranks(to);
  to.comm = comm.get();
  StdoutToStderr aside(o.json && comm->leader());  // --json: stdout is the summary's alone
  train::TrainResult r;
  try {
    r = train::run_training(cfg, to);
  } catch (const std::invalid_argument& e) {  // the trainer's word for "bad input": exit code 2
    // A rank that cannot go on ends them all: the others would wait for it in a collective.
    if (comm->size() > 1) comm->abort(e.what(), 2);
    throw UsageError(e.what());
  } catch (const std::exception& e) {
    if (comm->size() > 1) comm->abort(e.what(), 1);
    throw;
  }
  aside.restore();
  std::printf("%s\n", o.json ? train::train_result_json(r, cfg.data.run_dir).c_str() : r.message.c_str());
  if (r.status == train::TrainStatus::Diverged) throw std::runtime_error("training diverged (see above)");
}

}  // namespace

void register_train(CLI::App& app) {
  auto opts = std::make_shared<TrainCliOptions>();
  CLI::App* cmd = app.add_subcommand(
      "train", "Train on a preference graph and an audio catalog (config [data] section); checkpoints, "
               "validation and metrics go to data.run_dir");
  cmd->add_option("--config", opts->config_path, "Run config (TOML); relative data paths are taken from its folder")
      ->required();
  cmd->add_option("--set", opts->overrides, "Override a config field: section.key=value (repeatable)");
  cmd->add_flag("--skip-bad-lines", opts->skip_bad_lines, "Skip and count malformed edge and catalog lines");
  cmd->add_flag("--resume", opts->resume, "Continue the run in data.run_dir from its last checkpoint");
  cmd->add_option("--threads", opts->threads, "CPU threads for the CPU backend (0: all cores)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--prepare-threads", opts->prepare_threads, "Decoding threads for the audio cache (0: all cores)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--device", opts->device, kDeviceHelp)->capture_default_str()->check(device_check());
  cmd->add_flag("--deterministic", opts->deterministic, "CUDA: deterministic algorithms only");
  cmd->add_flag("--tf32", opts->tf32, "CUDA: allow TF32 tensor-core math (faster, ~1e-3 relative error)");
  cmd->add_flag("--no-graph", opts->no_graph, "CUDA: run every step eagerly instead of replaying CUDA Graphs");
  cmd->add_option("--stop-after", opts->stop_after,
                  "Stop after this step with a checkpoint, as if interrupted (--resume continues)")
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--quiet", opts->quiet, "No progress line; summaries only");
  cmd->add_flag("--json", opts->json,
                "Print the result as one JSON object on stdout (status, steps, best recall, files, the first and last "
                "validation's metrics); everything else goes to stderr");
  cmd->callback([opts] { run_train(*opts); });
}

}  // namespace mg::cli
