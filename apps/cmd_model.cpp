// `melgraph model`: prints the layer table (shapes and parameter counts) for a config, so a
// config can be checked before any audio is read or memory allocated.
#include <cstdint>
#include <cstdio>
#include <limits>
#include <memory>
#include <optional>
#include <string>

#include "apps/commands.h"
#include "engine/config.h"
#include "engine/model_plan.h"

namespace mg::cli {

namespace {

struct ModelOptions {
  std::string config_path;
  std::optional<int> batch;
};

void run_model(const ModelOptions& o) {
  const Config c = o.config_path.empty() ? default_config() : load_config(o.config_path);
  // The training batch: anchor and positive (and, for offline triplets, negative) per triplet.
  const int64_t clips = o.batch ? *o.batch : batch_rows(c);
  if (clips > std::numeric_limits<int>::max())
    throw UsageError("a training batch of " + std::to_string(clips) +
                     " clips is too many for one batch; pass a smaller --batch");
  const int batch = static_cast<int>(clips);
  ModelPlan plan;
  try {
    plan = make_model_plan(c, batch);
  } catch (const ConfigError& e) {  // the plan knows the fields, not which file set them
    throw ConfigError((o.config_path.empty() ? std::string("default config") : o.config_path) +
                      ": " + e.what());
  }
  std::printf("config: %s\n%s", o.config_path.empty() ? "(built-in defaults)" : o.config_path.c_str(),
              plan.describe(c).c_str());
}

}  // namespace

void register_model(CLI::App& app) {
  auto opts = std::make_shared<ModelOptions>();
  CLI::App* cmd = app.add_subcommand(
      "model", "Print the model's layers, output shapes and parameter counts for a config");
  cmd->add_option("--config", opts->config_path, "Run config (TOML); default: the built-in defaults");
  cmd->add_option("--batch", opts->batch,
                  "Clips per batch for the shapes; default: a training batch (2 or 3 x train.batch_triplets)")
      ->check(CLI::Range(1, std::numeric_limits<int>::max()));
  cmd->callback([opts] { run_model(*opts); });
}

}  // namespace mg::cli
