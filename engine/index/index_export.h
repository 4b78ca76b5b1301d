// `melgraph export`: embeds every catalog item with audio using a trained checkpoint and writes
// the index (index_format.h):
//
//   checkpoint -> config (its [audio], [mel], [model]) -> model on the backend, eval mode
//   catalog    -> each audio file's SHA-256 (content_sha256; --update keeps the previous
//                 index's vectors of items whose id and hash are unchanged)
//              -> prepare_cache into the cache directory (incremental: a cache that already
//                 holds the items under the same settings, e.g. the training run's, is reused)
//              -> items with audio, catalog order; items that gave no audio go to `failures`
//   embeddings -> embed::embed_cached: the L2-normalised mean of `crops` evenly spaced clips
//   edges      -> in-degree of every item (optional)
//   index      -> write_index (temporary file, one transaction, rename); optionally .npy + ids
//
// The library function is what `melgraph export` and `melgraph demo` call.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "engine/backend_factory.h"
#include "engine/embed/embedder.h"
#include "engine/index/ann.h"
#include "engine/index/index_format.h"

namespace mg::index {

struct ExportOptions {
  std::string checkpoint;      // a melgraph checkpoint (best.safetensors, last.safetensors)
  std::string catalog;         // CSV id,path[,title,artist,...]
  std::string edges;           // optional edge list: in-degree per item
  std::string out;             // the index file
  std::string cache_dir;       // empty: default_cache_dir(out)
  std::string npy_prefix;      // non-empty: also <prefix>.npy and <prefix>.ids.txt
  int crops = embed::kDefaultCrops;  // clips per item (evenly spaced), >= 1
  int prepare_threads = 0;     // decoding threads (0: all cores)
  BackendOptions backend;
  FILE* progress = nullptr;    // decoding progress line (stderr in the CLI); null: none
  // Keep the vectors of the index at `out` for the items whose audio is unchanged (same id,
  // same SHA-256 of the file), embed only the new and changed ones, drop the items gone from
  // the catalog. The index must have been made by the same checkpoint with the same crops.
  // Without an index at `out`, a full export.
  bool update = false;
  // Malformed catalog rows, repeated ids and malformed edge-list lines skipped and counted
  // instead of stopping the export (ExportSummary::skipped).
  bool skip_bad_lines = false;
  // Also build an approximate index beside `out` (ann.h: <out>.ann) with these options. An
  // export without it removes an ANN file left beside `out` (built for the replaced vectors).
  bool ann = false;
  AnnOptions ann_options;
};

struct ExportSummary {
  std::string out, cache_dir, device, npy_path, ids_path;
  int64_t catalog_items = 0, indexed = 0;
  bool updated = false;                           // --update found a previous index
  int64_t embedded = 0, reused = 0, removed = 0;  // reused/removed: --update's, from the previous index
  AnnSummary ann;                                 // path empty: none built
  std::string skipped;                            // graph::skipped_rows_note of the catalog
  bool removed_stale_ann = false;
  std::vector<IndexFailure> failures;
  int dim = 0, crops = 0;
  int64_t decoded = 0, already_cached = 0;  // of the items embedded: decoded now, found in the cache
  std::string checkpoint_sha256;
  double decode_seconds = 0, embed_seconds = 0, write_seconds = 0;
  // A few lines for the terminal: counts, failures (at most max_listed), timings, files.
  std::string describe(size_t max_listed = 10) const;
  // Everything above as one JSON object (`melgraph export --json`), every failure listed.
  std::string json() const;
};

// <dir of out>/<stem of out>.cache, e.g. runs/index.sqlite -> runs/index.cache.
std::string default_cache_dir(const std::string& out);

// Throws IndexInputError for unusable inputs (checkpoint, catalog, crops, a cache made for other
// audio settings), graph::GraphInputError for a bad catalog or edge list, std::runtime_error
// when no catalog item has audio or when writing fails. The previous index at `out` is kept
// whenever this throws.
ExportSummary export_index(const ExportOptions& options);

// <prefix>.npy: float32 [n, dim] (the index's vectors, row order) and <prefix>.ids.txt: one id
// per line in the same order. Both written atomically. Returns the two paths.
std::pair<std::string, std::string> write_npy_export(const Index& index, const std::string& prefix);

}  // namespace mg::index
