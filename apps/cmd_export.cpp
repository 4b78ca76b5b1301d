// `melgraph export`: embed a catalog with a trained checkpoint into an index file
// (engine/index/index_export.h), or a training run's files with --run (engine/train/run_dir.h);
// `melgraph export-npy`: an index's vectors as .npy + an ids file.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "apps/commands.h"
#include "engine/index/index_export.h"
#include "engine/index/index_format.h"
#include "engine/io/stdout_redirect.h"
#include "engine/train/run_dir.h"

namespace mg::cli {

namespace {

struct ExportCliOptions {
  index::ExportOptions o;
  std::string run, ann;
  std::string device = "auto";
  int threads = 0;
  bool json = false;
};

// --run fills what is not given from the training run; a checkpoint inside a run directory
// brings that run's audio cache, whose clips were decoded with the checkpoint's settings.
void take_from_run(index::ExportOptions& o, const std::string& run) {
  const std::string dir = !run.empty() ? run : std::filesystem::path(o.checkpoint).parent_path().string();
  if (run.empty() && (o.checkpoint.empty() || !o.cache_dir.empty() || !train::is_run_directory(dir))) return;
  try {
    const train::RunDirectory r = train::open_run_directory(dir.empty() ? "." : dir);
    if (o.checkpoint.empty()) o.checkpoint = r.checkpoint;
    if (o.catalog.empty()) o.catalog = r.config.data.catalog;
    if (o.edges.empty()) o.edges = r.config.data.edges;
    if (o.cache_dir.empty()) o.cache_dir = r.cache;
  } catch (const std::invalid_argument& e) {
    throw UsageError(std::string("--run: ") + e.what());
  }
  std::fprintf(stderr, "export: the training run in %s: checkpoint %s, audio cache %s\n", dir.c_str(),
               o.checkpoint.c_str(), o.cache_dir.c_str());
}

void run_export(ExportCliOptions& c) {
  take_from_run(c.o, c.run);
  if (c.o.checkpoint.empty() || c.o.catalog.empty())
    throw UsageError("export: give --run RUN_DIR (a training run), or --checkpoint and --catalog");
  parse_device(c.device, c.o.backend);
  c.o.backend.threads = c.threads;
  c.o.progress = stderr;
  index::ExportSummary s;
  try {
    c.o.ann = !c.ann.empty();
    if (c.o.ann) {
      c.o.ann_options.kind = index::parse_ann_kind(c.ann);
      if (!index::ann_built())
        throw index::IndexInputError(
            "--ann needs FAISS, and this melgraph was built without it: install libfaiss-dev "
            "and configure again");
    }
    StdoutToStderr aside(c.json);  // --json: stdout is the summary's alone
    s = index::export_index(c.o);
  } catch (const index::IndexInputError& e) {
    throw UsageError(e.what());
  }
  std::fputs(c.json ? (s.json() + "\n").c_str() : s.describe().c_str(), stdout);
}

struct ExportNpyCliOptions {
  std::string index, out;
};

void run_export_npy(const ExportNpyCliOptions& c) {
  try {
    const index::Index x = index::read_index(c.index);
    const auto [npy, ids] = index::write_npy_export(x, c.out);
    std::printf("%lld x %d float32 -> %s\nids -> %s\n", static_cast<long long>(x.size()), x.dim, npy.c_str(), ids.c_str());
  } catch (const index::IndexInputError& e) {
    throw UsageError(e.what());
  }
}

}  // namespace

void register_export(CLI::App& app) {
  auto opts = std::make_shared<ExportCliOptions>();
  CLI::App* cmd = app.add_subcommand(
      "export", "Embed every catalog item with audio using a trained checkpoint and write the index (SQLite; "
                "docs/index-format.md)");
  cmd->add_option("--run", opts->run,
                  "A training run's directory (data.run_dir): its best checkpoint, catalog, edge list and audio "
                  "cache, where the options below do not name others");
  cmd->add_option("--checkpoint", opts->o.checkpoint,
                  "Checkpoint of a training run (e.g. run/best.safetensors); default with --run: the run's best");
  cmd->add_option("--catalog", opts->o.catalog,
                  "Catalog CSV with columns id,path[,title,artist,...]; default with --run: the run's data.catalog");
  cmd->add_option("--out", opts->o.out, "The index file to write (replaced atomically when complete)")->required();
  cmd->add_option("--edges", opts->o.edges,
                  "Edge list of the preference graph: stores each item's in-degree; default with --run: the run's");
  cmd->add_option("--cache", opts->o.cache_dir,
                  "Audio cache directory. Default: the training run's cache when --run is given or --checkpoint lies "
                  "in a run directory (only items not in it are decoded, into it); else <out stem>.cache beside --out");
  cmd->add_option("--crops", opts->o.crops, "Clips per item, evenly spaced; the item's vector is their normalised mean")
      ->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_flag("--skip-bad-lines", opts->o.skip_bad_lines,
                "Skip and count malformed catalog rows, repeated ids and malformed edge lines instead of stopping");
  cmd->add_flag("--update", opts->o.update,
                "Keep the vectors of --out's index for items whose audio file is unchanged (same id and SHA-256), "
                "embed only new and changed items, drop items gone from the catalog (same checkpoint and crops only)");
  cmd->add_option("--ann", opts->ann,
                  "Also build an approximate index beside --out (<out>.ann, FAISS): ivf or hnsw; query uses it for "
                  "unfiltered queries unless --exact")
      ->check(CLI::IsMember({"ivf", "hnsw"}));
  cmd->add_option("--ann-nlist", opts->o.ann_options.nlist, "IVF lists (0: 4 sqrt(n))")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--ann-nprobe", opts->o.ann_options.nprobe,
                  "IVF lists searched per query (0: nlist / 64, at least 8)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--ann-m", opts->o.ann_options.hnsw_m, "HNSW links per node")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--ann-ef-search", opts->o.ann_options.ef_search, "HNSW candidates per query (0: max(64, 2 k))")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_flag("--json", opts->json, "Print the summary as one JSON object on stdout (every failure listed)");
  cmd->add_option("--npy", opts->o.npy_prefix, "Also write PREFIX.npy (float32 [n, dim]) and PREFIX.ids.txt");
  cmd->add_option("--device", opts->device, kDeviceHelp)->capture_default_str()->check(device_check());
  cmd->add_option("--threads", opts->threads, "CPU threads for the CPU backend (0: all cores)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--prepare-threads", opts->o.prepare_threads, "Decoding threads for the audio cache (0: all cores)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->callback([opts] { run_export(*opts); });

  auto npy = std::make_shared<ExportNpyCliOptions>();
  CLI::App* n = app.add_subcommand("export-npy", "Write an index's vectors as PREFIX.npy (float32 [n, dim]) and its ids "
                                                 "as PREFIX.ids.txt (one per line, same order)");
  n->add_option("--index", npy->index, "Index file (melgraph export)")->required();
  n->add_option("--out", npy->out, "Output prefix")->required();
  n->callback([npy] { run_export_npy(*npy); });
}

}  // namespace mg::cli
