#include "engine/index/index_query.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <span>
#include <stdexcept>

#include "engine/audio/decode.h"
#include "engine/checkpoint.h"
#include "engine/embed/embedder.h"
#include "engine/index/sha256.h"
#include "engine/model.h"
#include "engine/retrieval_metrics.h"
#include "engine/timer.h"
#include "kernels/blas.h"
#include "kernels/topk_cpu.h"

namespace mg::index {

namespace fs = std::filesystem;
using Json = nlohmann::json;

namespace {

// Levenshtein distance, or limit + 1 once it must exceed limit.
size_t edit_distance(const std::string& a, const std::string& b, size_t limit) {
  if ((a.size() > b.size() ? a.size() - b.size() : b.size() - a.size()) > limit) return limit + 1;
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    size_t row_min = cur[0];
    for (size_t j = 1; j <= b.size(); ++j) {
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
      row_min = std::min(row_min, cur[j]);
    }
    if (row_min > limit) return limit + 1;
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

Json text_or_null(const std::optional<std::string>& s) { return s ? Json(*s) : Json(nullptr); }

}  // namespace

Searcher::Searcher(Backend& be, const Index& index) : be_(be), index_(index) {
  if (be.device() == Device::CPU) return;
  items_ = be.alloc<float>(std::max<int64_t>(1, static_cast<int64_t>(index.vectors.size())));
  be.to_device(items_, index.vectors.data(), index.vectors.size() * sizeof(float));
}

void check_k(int k) {
  if (k < 1 || k > kMaxK)
    throw IndexInputError("-k must be in [1, " + std::to_string(kMaxK) + "] (got " + std::to_string(k) + ")");
}

Searcher::~Searcher() { be_.free_bytes(items_); }

void Searcher::search(const float* queries, int64_t Q, int k, const std::vector<int32_t>& exclude,
                      std::vector<int32_t>& out_items, std::vector<float>& out_sims) {
  check_k(k);
  out_items.assign(static_cast<size_t>(Q) * static_cast<size_t>(k), -1);
  out_sims.assign(out_items.size(), -std::numeric_limits<float>::infinity());
  if (Q == 0) return;
  const int64_t N = index_.size();
  const int D = index_.dim;
  if (!items_ || k > kMaxTopkCuda) {
    // The CPU backend's pointers are host pointers: no copies. topk_cosine runs BLAS inside
    // OpenMP threads, so BLAS itself stays single-threaded (as the CPU backend sets it).
    blas_set_threads(1);
    topk_cosine(queries, Q, index_.vectors.data(), N, D, k, exclude, out_items.data(), out_sims.data());
    return;
  }
  const size_t q_bytes = static_cast<size_t>(Q) * D * sizeof(float);
  DeviceArray<float> q(be_, Q * D), os(be_, static_cast<int64_t>(out_sims.size()));
  DeviceArray<int32_t> ex(be_, static_cast<int64_t>(exclude.size())), oi(be_, static_cast<int64_t>(out_items.size()));
  be_.to_device(q.p, queries, q_bytes);
  if (!exclude.empty()) be_.to_device(ex.p, exclude.data(), exclude.size() * sizeof(int32_t));
  be_.topk_cosine(q.p, Q, items_, N, D, k, exclude.empty() ? nullptr : ex.p, oi.p, os.p);
  be_.to_host(out_items.data(), oi.p, out_items.size() * sizeof(int32_t));
  be_.to_host(out_sims.data(), os.p, out_sims.size() * sizeof(float));
}

void search(Backend& be, const Index& index, const float* queries, int64_t Q, int k, const std::vector<int32_t>& exclude,
            std::vector<int32_t>& out_items, std::vector<float>& out_sims) {
  Searcher(be, index).search(queries, Q, k, exclude, out_items, out_sims);
}

namespace {

QueryResult run_search(Backend& be, const Index& index, const float* query, int k, int64_t exclude_row) {
  check_k(k);
  k = static_cast<int>(std::min<int64_t>(k, std::max<int64_t>(index.size(), 1)));  // deeper is the whole index
  QueryResult r;
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<int32_t> items;
  std::vector<float> sims;
  std::vector<int32_t> exclude;
  if (exclude_row >= 0) exclude.push_back(static_cast<int32_t>(exclude_row));
  search(be, index, query, 1, k, exclude, items, sims);
  r.search_seconds = seconds_since(t0);
  for (size_t j = 0; j < items.size(); ++j)
    if (items[j] >= 0) r.hits.push_back({items[j], sims[j]});
  return r;
}

}  // namespace

std::vector<std::string> similar_ids(const Index& index, const std::string& id, size_t max) {
  std::vector<std::pair<size_t, std::string>> found;
  // Each comparison is O(|id| x |other|): cheap up to a few hundred thousand short ids.
  if (index.size() > 500000 || id.empty()) return {};
  const size_t limit = std::max<size_t>(2, id.size() / 4);
  for (const IndexItem& it : index.items) {
    size_t d = edit_distance(id, it.id, limit);
    // A prefix or substring match (e.g. a truncated id) ranks after the edit-distance matches.
    if (d > limit && (it.id.find(id) != std::string::npos || id.find(it.id) != std::string::npos)) d = limit + 1;
    else if (d > limit) continue;
    found.emplace_back(d, it.id);
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  for (size_t i = 0; i < found.size() && i < max; ++i) out.push_back(found[i].second);
  return out;
}

QueryResult query_item(Backend& be, const Index& index, const std::string& id, int k) {
  check_k(k);
  const int64_t row = index.find(id);
  if (row < 0) {
    std::string msg = index.source + ": no item '" + id + "' in the index (" + std::to_string(index.size()) + " items)";
    const std::vector<std::string> near = similar_ids(index, id);
    if (!near.empty()) {
      msg += "; did you mean ";
      for (size_t i = 0; i < near.size(); ++i) msg += (i ? ", '" : "'") + near[i] + "'";
      msg += "?";
    }
    throw IndexInputError(msg);
  }
  QueryResult r = run_search(be, index, index.vector(row), k, row);
  r.query = id;
  r.query_row = row;
  return r;
}

std::string check_index_checkpoint(const Index& index, const std::string& checkpoint) {
  const std::string recorded = index.meta_value("checkpoint");
  const std::string path = checkpoint.empty() ? recorded : checkpoint;
  if (!fs::exists(path))
    throw IndexInputError(checkpoint.empty()
                              ? index.source + ": the checkpoint it was exported with, " + path +
                                    ", is missing: pass --checkpoint with that checkpoint (same SHA-256)"
                              : "--checkpoint " + path + ": no such file");
  const std::string want = index.meta_value("checkpoint_sha256");
  const std::string got = sha256_file_hex(path);
  if (got != want)
    throw IndexInputError("checkpoint " + path + " has SHA-256 " + got.substr(0, 16) + "..., but " + index.source +
                          " was exported with " + want.substr(0, 16) + "... (" + recorded +
                          "): its embeddings come from another model. Pass --checkpoint with the checkpoint the index "
                          "was made with, or export the index again with this one");
  Config cfg;
  try {
    cfg = read_checkpoint_config(path);
  } catch (const CheckpointError& e) {
    throw IndexInputError(e.what());
  }
  if (embedding_dim(cfg) != index.dim)
    throw IndexInputError("checkpoint " + path + " embeds into " + std::to_string(embedding_dim(cfg)) +
                          " dimensions, the index " + index.source + " holds " + std::to_string(index.dim) +
                          ": export the index again with this checkpoint");
  return path;
}

std::vector<float> embed_audio_query(Backend& be, const Index& index, const std::string& audio_path,
                                     const std::string& checkpoint) {
  const Config cfg = read_checkpoint_config(checkpoint);
  int crops = 0;
  try {
    crops = std::stoi(index.meta_value("crops"));
  } catch (const std::logic_error&) {
    throw IndexInputError(index.source + ": meta crops '" + index.meta_value("crops") + "' is not a number");
  }
  if (crops < 1) throw IndexInputError(index.source + ": meta crops " + std::to_string(crops) + " is not positive");
  // Decoded first: a bad file fails before the model is built.
  const audio::DecodedAudio decoded = audio::decode_audio(audio_path, audio::decode_request(cfg.audio));
  Model model(cfg, be, std::min(crops, 64));
  load_checkpoint(checkpoint, model, nullptr);
  model.set_training(false);
  return embed::embed_track(model, decoded.samples, crops).emb;
}

QueryResult query_audio(Backend& be, const Index& index, const std::string& audio_path, int k,
                        const std::string& checkpoint) {
  check_k(k);  // before the audio is decoded
  const std::string ckpt = check_index_checkpoint(index, checkpoint);
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<float> q = embed_audio_query(be, index, audio_path, ckpt);
  const double embed = seconds_since(t0);
  QueryResult r = run_search(be, index, q.data(), k, -1);
  r.query = audio_path;
  r.embed_seconds = embed;
  return r;
}

std::string format_hits(const Index& index, const QueryResult& r) {
  std::string out;
  char buf[64];
  size_t wid = 2, wtitle = 5, wartist = 6;
  for (const QueryHit& h : r.hits) {
    const IndexItem& it = index.items[static_cast<size_t>(h.row)];
    wid = std::max(wid, it.id.size());
    wtitle = std::max(wtitle, it.title.value_or("").size());
    wartist = std::max(wartist, it.artist.value_or("").size());
  }
  auto pad = [](const std::string& s, size_t w) { return s + std::string(w > s.size() ? w - s.size() : 0, ' '); };
  out += "rank  " + pad("id", wid) + "  " + pad("title", wtitle) + "  " + pad("artist", wartist) + "  similarity\n";
  for (size_t i = 0; i < r.hits.size(); ++i) {
    const IndexItem& it = index.items[static_cast<size_t>(r.hits[i].row)];
    std::snprintf(buf, sizeof buf, "%4zu  ", i + 1);
    out += buf + pad(it.id, wid) + "  " + pad(it.title.value_or(""), wtitle) + "  " + pad(it.artist.value_or(""), wartist);
    std::snprintf(buf, sizeof buf, "  %10.6f\n", static_cast<double>(r.hits[i].similarity));
    out += buf;
  }
  return out;
}

std::string hits_json(const Index& index, const QueryResult& r, int k) {
  Json results = Json::array();
  for (size_t i = 0; i < r.hits.size(); ++i) {
    const IndexItem& it = index.items[static_cast<size_t>(r.hits[i].row)];
    results.push_back({{"rank", i + 1},
                       {"id", it.id},
                       {"title", text_or_null(it.title)},
                       {"artist", text_or_null(it.artist)},
                       {"similarity", r.hits[i].similarity},
                       {"path", it.path}});
  }
  Json j{{"query", r.query}, {"k", k}, {"index", index.source}, {"results", results}};
  if (r.query_row >= 0) j["query_row"] = r.query_row;
  return j.dump(2);
}

}  // namespace mg::index
