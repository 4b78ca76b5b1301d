// `melgraph query --index I (--audio FILE | --item ID)`: the k nearest items by cosine
// similarity (engine/index/index_query.h). The index is opened read-only.
#include <cstdio>
#include <memory>
#include <string>

#include "apps/commands.h"
#include "engine/index/index_format.h"
#include "engine/index/index_query.h"
#include "engine/backend_factory.h"

namespace mg::cli {

namespace {

struct QueryCliOptions {
  std::string index, audio, item, checkpoint;
  int k = 10;
  bool json = false;
  std::string device = "auto";
  int threads = 0;
};

void run_query(const QueryCliOptions& c) {
  if (c.audio.empty() == c.item.empty()) throw UsageError("query: give exactly one of --audio FILE and --item ID");
  try {
    const index::Index x = index::read_index(c.index);
    BackendOptions bo;
    parse_device(c.device, bo);
    bo.threads = c.threads;
    std::string note;
    const std::unique_ptr<Backend> be = make_backend(bo, &note);
    const index::QueryResult r = c.item.empty() ? index::query_audio(*be, x, c.audio, c.k, c.checkpoint)
                                                : index::query_item(*be, x, c.item, c.k);
    if (c.json) {
      std::printf("%s\n", index::hits_json(x, r, c.k).c_str());
    } else {
      std::printf("%d nearest of %lld items to %s (%s):\n", c.k, static_cast<long long>(x.size()), r.query.c_str(),
                  be->describe().c_str());
      std::fputs(index::format_hits(x, r).c_str(), stdout);
    }
  } catch (const index::IndexInputError& e) {
    throw UsageError(e.what());
  }
}

}  // namespace

void register_query(CLI::App& app) {
  auto opts = std::make_shared<QueryCliOptions>();
  CLI::App* cmd = app.add_subcommand(
      "query", "The nearest items of an index to an audio file or to one of its items (exact top-k cosine)");
  cmd->add_option("--index", opts->index, "Index file (melgraph export)")->required();
  cmd->add_option("--audio", opts->audio, "Query by this audio file, embedded with the index's model");
  cmd->add_option("--item", opts->item, "Query by this item's stored vector (the item itself is left out)");
  cmd->add_option("-k", opts->k, "Results")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_flag("--json", opts->json, "One JSON object instead of a table");
  cmd->add_option("--checkpoint", opts->checkpoint,
                  "Checkpoint for --audio (default: the one the index records; its SHA-256 must match)");
  cmd->add_option("--device", opts->device, kDeviceHelp)->capture_default_str()->check(device_check());
  cmd->add_option("--threads", opts->threads, "CPU threads for the CPU backend (0: all cores)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->callback([opts] { run_query(*opts); });
}

}  // namespace mg::cli
