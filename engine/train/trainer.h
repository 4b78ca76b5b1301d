// `melgraph train`: from a config (edge list, catalog) to a trained model, written as one
// straight loop:
//
//   graph:  build_training_data (selection, splits, triplet tables, validation sets)
//   audio:  prepare_cache (incremental: only new or changed files are decoded)
//   model:  init, or resume from <run_dir>/last.safetensors
//   step 0: validation of the untrained model and of the mean-log-mel baseline
//   for each step:
//     batch  <- BatchLoader (background threads, built ahead)
//     upload (CUDA: async copy into one of two device buffers, overlapping the previous step)
//     gradients (forward, [mining], loss, backward, gradient norm)  -- captured as a graph
//     check: loss and gradient norm finite, else skip the step or stop (train.nonfinite)
//     update (clip, Adam/AdamW at the schedule's learning rate)      -- captured as a graph
//     every validate_every: validation -> metrics, best.safetensors, early stopping
//     every checkpoint_every, at the end and on SIGINT/SIGTERM: last.safetensors
//
// Outputs in data.run_dir: config.toml (the resolved config), last.safetensors,
// best.safetensors, runs.sqlite (runs and metrics tables, see engine/train/run_db.h) and
// metrics.jsonl (the same metrics as JSON lines, for tools that tail the run),
// held_out_items.txt (the ids never trained on, one per line: `melgraph eval --queries`), and
// the cache (data.cache, default <run_dir>/cache).
#pragma once
#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/backend_factory.h"
#include "engine/config.h"
#include "engine/dist/comm.h"
#include "engine/train/run_dir.h"
#include "engine/train/validation.h"

namespace mg::train {

struct TrainOptions {
  std::string config_path;     // for messages ("resume with ...")
  BackendOptions backend;
  bool resume = false;
  bool capture = true;         // CUDA graphs
  int prepare_threads = 0;     // decoding threads for the cache (0: all cores)
  bool quiet = false;          // no progress line (summary lines only)
  // Set from a signal handler: finish the step, checkpoint, return Interrupted.
  const std::atomic<bool>* stop = nullptr;
  // > 0: stop after this step as if interrupted (checkpoint; --resume continues), e.g. to
  // split a long run into jobs of a cluster's time limit.
  int64_t stop_after = 0;
  // The ranks of a data-parallel run (engine/dist/comm.h; null: one process). train.batch_triplets
  // stays the global batch, split evenly over the ranks; every rank trains its share of it and
  // validates, and rank 0 alone writes the run directory (checkpoints, runs.sqlite, config.toml).
  dist::Comm* comm = nullptr;
};
// Test hook: with the environment variable MELGRAPH_TRAIN_POISON_STEP=N the trainer writes a
// NaN into the first sample of step N's batch, to exercise the non-finite guard end to end.

enum class TrainStatus { Finished, Interrupted, EarlyStopped, Diverged };

struct TrainResult {
  TrainStatus status = TrainStatus::Finished;
  int64_t skipped_steps = 0;     // non-finite steps skipped (train.nonfinite = "skip")
  int64_t steps = 0;             // optimizer steps taken in total (including before a resume)
  int64_t run_id = 0;            // in runs.sqlite
  double best_recall = -1;       // held-out items recall@k of best.safetensors
  int64_t best_step = 0;
  std::string message;           // why it stopped, for the user
  std::vector<std::string> held_out_groups;  // with data.holdout_by: the held-out values
  // The first validation of this invocation (step 0 of a new run: the untrained model, with
  // the mean-log-mel baseline and chance) and the last one.
  std::optional<ValidationReport> initial, last;
};

// Throws for bad input (ConfigError, GraphInputError, std::invalid_argument) and failures.
TrainResult run_training(const Config& cfg, const TrainOptions& options);

const char* to_string(TrainStatus s);  // finished, interrupted, early_stopped, diverged
// The result as one JSON object (`melgraph train --json`): status, steps, skipped_steps, run_id,
// best_recall (-1: none), best_step, recall_k, message, held_out_groups, the run directory's
// files (run_dir, best_checkpoint, last_checkpoint, runs_db, metrics_jsonl) and the metrics of
// the first and the last validation (`initial`, `last`: name -> value as in runs.sqlite).
std::string train_result_json(const TrainResult& r, const std::string& run_dir);

}  // namespace mg::train
