// `melgraph export`: embed a catalog with a trained checkpoint into an index file
// (engine/index/index_export.h); `melgraph export-npy`: an index's vectors as .npy + an ids file.
#include <cstdio>
#include <memory>
#include <string>

#include "apps/commands.h"
#include "engine/index/index_export.h"
#include "engine/index/index_format.h"

namespace mg::cli {

namespace {

struct ExportCliOptions {
  index::ExportOptions o;
  std::string ann;
  std::string device = "auto";
  int threads = 0;
};

void run_export(ExportCliOptions& c) {
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
    s = index::export_index(c.o);
  } catch (const index::IndexInputError& e) {
    throw UsageError(e.what());
  }
  std::fputs(s.describe().c_str(), stdout);
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
  cmd->add_option("--checkpoint", opts->o.checkpoint, "Checkpoint of a training run (e.g. run/best.safetensors)")
      ->required();
  cmd->add_option("--catalog", opts->o.catalog, "Catalog CSV with columns id,path[,title,artist,...]")->required();
  cmd->add_option("--out", opts->o.out, "The index file to write (replaced atomically when complete)")->required();
  cmd->add_option("--edges", opts->o.edges, "Edge list of the preference graph: stores each item's in-degree");
  cmd->add_option("--cache", opts->o.cache_dir,
                  "Audio cache directory (default: <out stem>.cache beside --out; a training run's cache is reused "
                  "when its audio settings match)");
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
