#include "engine/index/index_export.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>
#include <tuple>
#include <utility>

#include "build_info.h"
#include "engine/audio/audio_cache.h"
#include "engine/audio/prepare.h"
#include "engine/checkpoint.h"
#include "engine/embed/embedder.h"
#include "engine/index/sha256.h"
#include "engine/io/atomic_file.h"
#include "engine/io/json_text.h"
#include "engine/io/npy.h"
#include "engine/model.h"
#include "engine/timer.h"
#include "graph/catalog.h"
#include "graph/edge_list_io.h"
#include "graph/preference_graph.h"

namespace mg::index {

namespace fs = std::filesystem;
using Json = nlohmann::json;

namespace {

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// The mel front end's parameters, as the index's meta "mel" (JSON).
std::string mel_json(const MelParams& m) {
  return Json{{"sample_rate", m.sample_rate},
              {"n_fft", m.n_fft},
              {"hop", m.hop},
              {"n_mels", m.n_mels},
              {"f_min", m.f_min},
              {"f_max", m.f_max_resolved()},
              {"scale", m.scale == MelScale::HTK ? "htk" : "slaney"},
              {"norm", m.norm == MelNorm::None ? "none" : "slaney"},
              {"power", m.power},
              {"log_eps", m.log_eps}}
      .dump();
}

// Catalog columns -> title, artist (case-insensitive names) and the rest as a JSON object.
struct ColumnMap {
  int title = -1, artist = -1;
  std::vector<std::pair<int, std::string>> extra;  // (position in Item::extra, column name)
};

ColumnMap map_columns(const graph::Catalog& c) {
  ColumnMap m;
  for (size_t j = 0; j < c.extra_columns.size(); ++j) {
    const std::string name = lower(c.extra_columns[j]);
    if (name == "title" && m.title < 0)
      m.title = static_cast<int>(j);
    else if (name == "artist" && m.artist < 0)
      m.artist = static_cast<int>(j);
    else
      m.extra.emplace_back(static_cast<int>(j), c.extra_columns[j]);
  }
  return m;
}

}  // namespace

std::string default_cache_dir(const std::string& out) {
  const fs::path p(out);
  return (p.parent_path() / (p.stem().string() + ".cache")).string();
}

std::pair<std::string, std::string> write_npy_export(const Index& index, const std::string& prefix) {
  if (prefix.empty()) throw IndexInputError("--npy needs a path prefix, e.g. --npy out/embeddings");
  const std::string npy = prefix + ".npy", ids = prefix + ".ids.txt";
  if (const fs::path dir = fs::path(npy).parent_path(); !dir.empty()) fs::create_directories(dir);
  write_npy(npy, index.vectors.data(), {index.size(), static_cast<int64_t>(index.dim)});
  std::string text;
  for (const IndexItem& it : index.items) {
    // One id per line: an id holding a line break would shift every later line.
    if (it.id.find_first_of("\r\n") != std::string::npos)
      throw IndexInputError("id '" + it.id + "' holds a line break: it cannot be written to " + ids + " one per line");
    text += it.id + "\n";
  }
  write_file_atomic(ids, text);
  return {npy, ids};
}

namespace {

void check_export_options(const ExportOptions& o) {
  if (o.crops < 1 || o.crops > kMaxCrops)
    throw IndexInputError("--crops must be in [1, " + std::to_string(kMaxCrops) + "] (got " + std::to_string(o.crops) +
                          ")");
  if (o.out.empty()) throw IndexInputError("--out: the index file to write is not set");
  check_index_target(o.out, {o.checkpoint, o.catalog, o.edges});
  if (!fs::exists(o.checkpoint))
    throw IndexInputError(o.checkpoint + ": no such checkpoint (a training run writes best.safetensors and "
                                         "last.safetensors in its data.run_dir)");
}

// The checkpoint's config, its tensors checked against it before any audio is decoded.
Config checkpoint_config(const std::string& checkpoint) {
  try {
    return verify_checkpoint(checkpoint, false);
  } catch (const CheckpointError& e) {
    throw IndexInputError(e.what());
  }
}

// The catalog rows to embed that have audio in the cache, in catalog order.
struct CachedItems {
  explicit CachedItems(audio::AudioCache c) : cache(std::move(c)) {}
  audio::AudioCache cache;
  std::vector<int64_t> cache_index;  // per item to embed: its cache entry
  std::vector<size_t> catalog_row;   // per item to embed: its catalog row
};

// Decodes the catalog's `rows` into the cache (a rerun decodes only what changed); the items
// that gave no audio go to s.failures.
CachedItems decode_catalog(const ExportOptions& o, const Config& cfg, const graph::Catalog& catalog,
                           const std::vector<size_t>& rows, ExportSummary& s) {
  const auto t0 = WallClock::now();
  std::vector<audio::PrepareItem> items;
  items.reserve(rows.size());
  // Absolute paths, as `melgraph prepare` uses: the cache matches files by path.
  for (const size_t r : rows) items.push_back({catalog.items[r].id, catalog.items[r].path});
  audio::PrepareOptions po;
  po.threads = o.prepare_threads;
  po.progress = o.progress;
  audio::PrepareSummary ps;
  try {
    ps = audio::prepare_cache(items, cfg.audio, s.cache_dir, po);
  } catch (const audio::CacheMismatchError& e) {
    throw IndexInputError(std::string(e.what()) + " (the export's cache is set by --cache)");
  }
  s.decode_seconds = seconds_since(t0);
  s.decoded = ps.decoded;
  s.already_cached = ps.unchanged;
  std::unordered_set<std::string> failed;
  for (const audio::PrepareIssue& f : ps.failures) {
    failed.insert(f.id);
    s.failures.push_back({f.id, f.path, f.message});
  }
  CachedItems c(audio::AudioCache::open(s.cache_dir));
  for (size_t j = 0; j < rows.size(); ++j) {
    const std::string& id = items[j].id;
    if (failed.count(id)) continue;
    const int64_t ci = c.cache.find(id);
    if (ci < 0) {  // prepare reported neither audio nor a failure: the cache was changed under us
      s.failures.push_back({id, items[j].path, "not in the cache " + s.cache_dir + " after decoding"});
      continue;
    }
    c.cache_index.push_back(ci);
    c.catalog_row.push_back(rows[j]);
  }
  return c;
}

// The checkpoint's model over the cached items (the mean of o.crops crops each); *step is the
// checkpoint's step.
embed::Embeddings embed_items(Backend& be, const ExportOptions& o, const Config& cfg, const CachedItems& c,
                              ExportSummary& s, int64_t* step) {
  const auto t0 = WallClock::now();
  const int64_t clips = static_cast<int64_t>(c.cache_index.size()) * o.crops;
  Model model(cfg, be, static_cast<int>(std::clamp<int64_t>(clips, 1, 64)));
  try {
    *step = load_checkpoint(o.checkpoint, model, nullptr).step;
  } catch (const CheckpointError& e) {
    throw IndexInputError(e.what());
  }
  model.set_training(false);
  embed::Embeddings emb = embed::embed_cached(model, c.cache, c.cache_index, o.crops, false, o.progress);
  s.embed_seconds = seconds_since(t0);
  s.dim = emb.dim;
  return emb;
}

// Each indexed item's in-degree in the graph of `edges` (0 when absent from it); -1 for all
// when no edge list is given. rows: the indexed items' catalog rows.
std::vector<int64_t> in_degrees(const std::string& edges, bool skip_bad_lines, const graph::Catalog& catalog,
                                const std::vector<size_t>& rows) {
  std::vector<int64_t> in_degree(rows.size(), -1);
  if (edges.empty()) return in_degree;
  graph::EdgeLoadOptions eo;
  eo.skip_bad_lines = skip_bad_lines;
  const graph::PreferenceGraph g(graph::load_edge_list(edges, eo));
  for (size_t r = 0; r < rows.size(); ++r) {
    const auto node = g.find(catalog.items[rows[r]].id);
    in_degree[r] = node ? g.in_degree()[static_cast<size_t>(*node)] : 0;
  }
  return in_degree;
}

// The index's rows: id, path, title and artist when the catalog has them, in-degree, the
// catalog's other columns as JSON, and the audio file's hash.
std::vector<IndexItem> index_items(const graph::Catalog& catalog, const std::vector<size_t>& rows,
                                   const std::vector<std::string>& hashes, const std::vector<int64_t>& in_degree) {
  std::vector<IndexItem> out;
  const ColumnMap cols = map_columns(catalog);
  for (size_t r = 0; r < rows.size(); ++r) {
    const graph::Catalog::Item& ci = catalog.items[rows[r]];
    IndexItem it;
    it.id = ci.id;
    it.path = ci.path;
    it.content_sha256 = hashes[rows[r]];
    if (cols.title >= 0) it.title = ci.extra[static_cast<size_t>(cols.title)];
    if (cols.artist >= 0) it.artist = ci.extra[static_cast<size_t>(cols.artist)];
    it.in_degree = in_degree[r];
    Json extra = Json::object();
    for (const auto& [j, name] : cols.extra) extra[name] = ci.extra[static_cast<size_t>(j)];
    it.extra = extra.dump();
    out.push_back(std::move(it));
  }
  return out;
}

// What the index says of how it was made (Index::meta).
std::map<std::string, std::string> index_meta(const ExportOptions& o, const Config& cfg, const ExportSummary& s,
                                              int64_t step) {
  auto abs = [](const std::string& p) { return fs::absolute(p).lexically_normal().string(); };
  return {
      {"config", to_toml(cfg)},
      {"mel", mel_json(cfg.mel)},
      {"checkpoint", abs(o.checkpoint)},
      {"checkpoint_sha256", s.checkpoint_sha256},
      {"checkpoint_step", std::to_string(step)},
      {"crops", std::to_string(o.crops)},
      {"clip_seconds", std::to_string(cfg.audio.clip_seconds)},
      {"sample_rate", std::to_string(cfg.audio.sample_rate)},
      {"catalog", abs(o.catalog)},
      {"edges", o.edges.empty() ? std::string() : abs(o.edges)},
      {"cache", abs(s.cache_dir)},
      {"device", s.device},
      {"created_at", utc_now_iso8601()},
      {"melgraph_version", MELGRAPH_VERSION},
      {"git_commit", MELGRAPH_GIT_COMMIT},
  };
}

// Each catalog row's audio file hashed (SHA-256 of its bytes; empty when it cannot be read,
// which its decoding then reports).
std::vector<std::string> content_hashes(const graph::Catalog& catalog) {
  std::vector<std::string> h(catalog.items.size());
  for (size_t i = 0; i < h.size(); ++i) {
    try {
      h[i] = sha256_file_hex(catalog.items[i].path);
    } catch (const std::runtime_error&) {
      h[i].clear();
    }
  }
  return h;
}

// export --update: the previous index at o.out, if any, made by the same checkpoint with the
// same crops (IndexInputError otherwise: its vectors would mix two models). Each catalog row
// whose id it holds with the same content hash keeps that row's vector (reuse[i] = its row
// there, else -1).
struct Previous {
  Index index;
  std::vector<int64_t> reuse;
  bool found = false;
};

Previous previous_vectors(const ExportOptions& o, const ExportSummary& s, const graph::Catalog& catalog,
                          const std::vector<std::string>& hashes) {
  Previous p;
  p.reuse.assign(catalog.items.size(), -1);
  if (!fs::exists(o.out)) return p;
  p.index = read_index(o.out);
  p.found = true;
  const std::string& was = p.index.meta_value("checkpoint_sha256");
  if (was != s.checkpoint_sha256)
    throw IndexInputError("--update: " + o.out + " was exported with checkpoint " + was.substr(0, 16) + "... (" +
                          p.index.meta_value("checkpoint") + "), not " + o.checkpoint + " (" +
                          s.checkpoint_sha256.substr(0, 16) +
                          "...): an index holds one model's vectors. Export without --update to embed every item "
                          "with this checkpoint, or pass the checkpoint the index was made with");
  if (p.index.meta_value("crops") != std::to_string(o.crops))
    throw IndexInputError("--update: " + o.out + " was exported with --crops " + p.index.meta_value("crops") +
                          ", not " + std::to_string(o.crops) + "; pass --crops " + p.index.meta_value("crops") +
                          " or export without --update");
  for (size_t i = 0; i < catalog.items.size(); ++i) {
    const int64_t row = p.index.find(catalog.items[i].id);
    if (row >= 0 && !hashes[i].empty() && p.index.items[static_cast<size_t>(row)].content_sha256 == hashes[i])
      p.reuse[i] = row;
  }
  return p;
}

}  // namespace

ExportSummary export_index(const ExportOptions& o) {
  check_export_options(o);
  ExportSummary s;
  s.out = o.out;
  s.crops = o.crops;
  s.cache_dir = o.cache_dir.empty() ? default_cache_dir(o.out) : o.cache_dir;
  const Config cfg = checkpoint_config(o.checkpoint);
  // The device before the audio: one the machine lacks must not wait for every file to be
  // hashed and decoded to fail.
  std::unique_ptr<Backend> be;
  try {
    be = make_backend(o.backend, nullptr);
  } catch (const std::invalid_argument& e) {
    throw IndexInputError(e.what());
  }
  s.device = be->describe();
  s.checkpoint_sha256 = sha256_file_hex(o.checkpoint);
  const graph::Catalog catalog = graph::load_catalog(o.catalog, o.skip_bad_lines);
  s.skipped = graph::skipped_rows_note(catalog);
  s.catalog_items = static_cast<int64_t>(catalog.items.size());
  // An ANN that cannot be built over even every row must not wait for the audio, nor (below,
  // with the rows that gave audio) leave an index written and the export failed.
  if (o.ann) check_ann_size(o.ann_options, s.catalog_items);
  const std::vector<std::string> hashes = content_hashes(catalog);
  Previous previous =
      o.update ? previous_vectors(o, s, catalog, hashes) : Previous{{}, std::vector<int64_t>(catalog.items.size(), -1)};
  s.updated = previous.found;

  std::vector<size_t> to_embed;
  for (size_t i = 0; i < catalog.items.size(); ++i)
    if (previous.reuse[i] < 0) to_embed.push_back(i);
  const CachedItems cached = decode_catalog(o, cfg, catalog, to_embed, s);
  int64_t step = 0;
  embed::Embeddings emb;
  if (!cached.cache_index.empty()) {
    emb = embed_items(*be, o, cfg, cached, s, &step);
  } else if (previous.found) {  // nothing new: the previous index's model, as it recorded it
    s.dim = previous.index.dim;
    s.device = previous.index.meta_value("device");
    step = std::stoll(previous.index.meta_value("checkpoint_step"));
  }
  s.embedded = static_cast<int64_t>(cached.cache_index.size());

  // Catalog order: each row with a vector, reused or new.
  const auto t0 = WallClock::now();
  Index x;
  x.dim = s.dim;
  std::vector<size_t> rows;
  x.vectors.reserve((static_cast<size_t>(std::count_if(previous.reuse.begin(), previous.reuse.end(),
                                                       [](int64_t r) { return r >= 0; })) +
                     cached.catalog_row.size()) *
                    static_cast<size_t>(x.dim));
  size_t next = 0;  // the next embedded item (cached.catalog_row ascends)
  for (size_t i = 0; i < catalog.items.size(); ++i) {
    const float* v = nullptr;
    if (previous.reuse[i] >= 0) {
      v = previous.index.vector(previous.reuse[i]);
      ++s.reused;
    } else if (next < cached.catalog_row.size() && cached.catalog_row[next] == i) {
      v = emb.emb.data() + next * static_cast<size_t>(emb.dim);
      ++next;
    } else {
      continue;  // no audio: listed in failures
    }
    rows.push_back(i);
    x.vectors.insert(x.vectors.end(), v, v + x.dim);
  }
  // Their vectors are all in x now: released before the index and the ANN (which holds
  // another copy) are written, so the export's peak is two copies of the vectors, not four.
  emb = embed::Embeddings{};
  previous.index.vectors = std::vector<float>();
  if (rows.empty())
    throw std::runtime_error("nothing to index: none of the " + std::to_string(s.catalog_items) + " items of " +
                             o.catalog + " gave audio (" + std::to_string(s.failures.size()) + " failed)");
  if (previous.found) {
    std::unordered_set<std::string> ids;
    for (const auto& it : catalog.items) ids.insert(it.id);
    for (const IndexItem& it : previous.index.items) s.removed += ids.count(it.id) == 0 ? 1 : 0;
  }
  x.items = index_items(catalog, rows, hashes, in_degrees(o.edges, o.skip_bad_lines, catalog, rows));
  x.failures = s.failures;
  x.meta = index_meta(o, cfg, s, step);
  if (o.ann) check_ann_size(o.ann_options, x.size());
  const std::string vectors_sha256 = write_index(o.out, x);
  s.indexed = x.size();
  if (std::error_code ec; fs::remove(ann_path(o.out), ec)) s.removed_stale_ann = true;
  if (o.ann) {
    x.meta["vectors_sha256"] = vectors_sha256;
    s.ann = write_ann(x, o.out, o.ann_options);
  }
  if (!o.npy_prefix.empty()) std::tie(s.npy_path, s.ids_path) = write_npy_export(x, o.npy_prefix);
  s.write_seconds = seconds_since(t0);
  return s;
}

std::string ExportSummary::describe(size_t max_listed) const {
  char buf[256];
  std::string r;
  std::snprintf(buf, sizeof buf, "catalog: %lld items, %lld indexed, %zu without audio\n",
                static_cast<long long>(catalog_items), static_cast<long long>(indexed), failures.size());
  r += buf;
  if (!skipped.empty()) r += skipped + "\n";
  for (size_t i = 0; i < failures.size() && i < max_listed; ++i)
    r += "  " + failures[i].id + "  " + failures[i].path + ": " + failures[i].reason + "\n";
  if (failures.size() > max_listed) r += "  ... and " + std::to_string(failures.size() - max_listed) + " more\n";
  std::snprintf(buf, sizeof buf, "embeddings: %lld x %d, mean of %d crops, on %s\n", static_cast<long long>(indexed), dim,
                crops, device.c_str());
  r += buf;
  if (updated) {
    std::snprintf(buf, sizeof buf,
                  "update: %lld embedded (new or changed), %lld kept from the previous index, %lld removed\n",
                  static_cast<long long>(embedded), static_cast<long long>(reused), static_cast<long long>(removed));
    r += buf;
  }
  std::snprintf(buf, sizeof buf, "time: decode %.1f s, embed %.1f s, write %.1f s\n", decode_seconds, embed_seconds,
                write_seconds);
  r += buf;
  std::snprintf(buf, sizeof buf, " (%lld decoded now, %lld already there)\n", static_cast<long long>(decoded),
                static_cast<long long>(already_cached));
  r += "audio cache: " + cache_dir + buf;
  r += "index: " + out + "\n";
  if (!npy_path.empty()) r += "npy: " + npy_path + " + " + ids_path + "\n";
  if (!ann.path.empty()) {
    std::snprintf(buf, sizeof buf, "ann: %s (%s; built in %.1f s, %.1f MB)\n", ann.path.c_str(),
                  ann.description.c_str(), ann.build_seconds, static_cast<double>(ann.bytes) / 1e6);
    r += buf;
  } else if (removed_stale_ann) {
    r += "ann: removed " + out + ".ann (built for the previous vectors; --ann builds a new one)\n";
  }
  return r;
}

std::string ExportSummary::json() const {
  nlohmann::json failed = nlohmann::json::array();
  for (const IndexFailure& f : failures) failed.push_back({{"id", f.id}, {"path", f.path}, {"reason", f.reason}});
  nlohmann::json j{
      {"index", out},
      {"catalog_items", catalog_items},
      {"indexed", indexed},
      {"dim", dim},
      {"crops", crops},
      {"device", device},
      {"checkpoint_sha256", checkpoint_sha256},
      {"cache", cache_dir},
      {"decoded", decoded},
      {"already_cached", already_cached},
      {"updated", updated},
      {"embedded", embedded},
      {"reused", reused},
      {"removed", removed},
      {"skipped", skipped},
      {"failures", failed},
      {"seconds", {{"decode", decode_seconds}, {"embed", embed_seconds}, {"write", write_seconds}}},
      {"npy", npy_path.empty() ? nlohmann::json(nullptr) : nlohmann::json{{"npy", npy_path}, {"ids", ids_path}}},
      {"ann", ann.path.empty() ? nlohmann::json(nullptr)
                               : nlohmann::json{{"path", ann.path},
                                                {"description", ann.description},
                                                {"build_seconds", ann.build_seconds},
                                                {"bytes", ann.bytes}}}};
  return json_text(j);
}

}  // namespace mg::index
