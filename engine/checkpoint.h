// Checkpoints in the safetensors format.
//   tensors:  <param>                 F32, e.g. conv.0.weight [128, 128, 4] (Model::param_layout)
//             <state>                 F32, e.g. head_norm.running_mean (Model::state_layout)
//             optim.m.<param>, optim.v.<param>   Adam moments (when saved with an optimizer)
//   metadata: format = "melgraph-checkpoint", format_version = "2", config = the run's TOML,
//             step, epoch, seed, optimizer = "adam" | "adamw" | "none", melgraph_version,
//             trainer = the trainer's own state (JSON: run id, best validation, ...), if any
// Version 1 (before the learning recipe's options existed) is read too: its stored config
// lacks model.input_norm, head_norm, embedding_from and loss.name, which then take the values
// of the model it was (none, none, linear, triplet), not today's defaults.
// A parameter or moment that is not finite is refused (CheckpointError naming the tensor).
// Written atomically (temp file, fsync, rename, fsync of the directory): a crash leaves the
// previous checkpoint or the new one, never half of one.
#pragma once
#include <cstdint>
#include <string>

#include "engine/config.h"
#include "engine/model.h"
#include "engine/optimizer.h"
#include "engine/io/safetensors.h"

namespace mg {

struct TrainState {
  int64_t step = 0;   // optimizer steps taken
  int64_t epoch = 0;
  uint64_t seed = 0;
  std::string trainer;  // opaque to the checkpoint: what the trainer needs to resume
};

struct CheckpointError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

void save_checkpoint(const std::string& path, Model& model, const Optimizer* opt, const TrainState& state);

// The config stored in a checkpoint (to build a Model that fits it).
Config read_checkpoint_config(const std::string& path);

// Loads parameters (and, when opt is given, the optimizer moments and step) into a model
// built for the same architecture. Checks every name, shape and dtype first and throws
// CheckpointError listing all differences; nothing is modified unless everything matches.
TrainState load_checkpoint(const std::string& path, Model& model, Optimizer* opt);

// The checkpoint's config, with every tensor loaded into a one-clip CPU model (and optimizer,
// when with_optimizer) built from it: a checkpoint that would not load fails here, in a
// fraction of a second, before a command decodes any audio. Throws CheckpointError.
Config verify_checkpoint(const std::string& path, bool with_optimizer);

}  // namespace mg
