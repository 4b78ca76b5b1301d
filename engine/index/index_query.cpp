#include "engine/index/index_query.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <span>
#include <stdexcept>

#include "engine/audio/decode.h"
#include "engine/checkpoint.h"
#include "engine/embed/embedder.h"
#include "engine/index/ann.h"
#include "engine/index/sha256.h"
#include "engine/io/json_text.h"
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

Searcher::Searcher(Backend& be, const Index& index) : Searcher(be, index.vectors.data(), index.size(), index.dim) {}

Searcher::Searcher(Backend& be, const float* rows, int64_t n, int dim) : be_(be), host_(rows), n_(n), dim_(dim) {
  if (be.device() == Device::CPU) return;
  const int64_t floats = n * dim;
  items_ = be.alloc<float>(std::max<int64_t>(1, floats));
  if (floats > 0) be.to_device(items_, rows, static_cast<size_t>(floats) * sizeof(float));
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
  if (Q == 0 || n_ == 0) return;
  if (!items_ || k > kMaxTopkCuda) {
    // The CPU backend's pointers are host pointers: no copies. topk_cosine runs BLAS inside
    // OpenMP threads, so BLAS itself stays single-threaded (as the CPU backend sets it).
    blas_set_threads(1);
    topk_cosine(queries, Q, host_, n_, dim_, k, exclude, out_items.data(), out_sims.data());
    return;
  }
  const size_t q_bytes = static_cast<size_t>(Q) * dim_ * sizeof(float);
  DeviceArray<float> q(be_, Q * dim_), os(be_, static_cast<int64_t>(out_sims.size()));
  DeviceArray<int32_t> ex(be_, static_cast<int64_t>(exclude.size())), oi(be_, static_cast<int64_t>(out_items.size()));
  be_.to_device(q.p, queries, q_bytes);
  if (!exclude.empty()) be_.to_device(ex.p, exclude.data(), exclude.size() * sizeof(int32_t));
  be_.topk_cosine(q.p, Q, items_, n_, dim_, k, exclude.empty() ? nullptr : ex.p, oi.p, os.p);
  be_.to_host(out_items.data(), oi.p, out_items.size() * sizeof(int32_t));
  be_.to_host(out_sims.data(), os.p, out_sims.size() * sizeof(float));
}

void search(Backend& be, const Index& index, const float* queries, int64_t Q, int k, const std::vector<int32_t>& exclude,
            std::vector<int32_t>& out_items, std::vector<float>& out_sims) {
  Searcher(be, index).search(queries, Q, k, exclude, out_items, out_sims);
}

std::pair<std::string, std::string> parse_where(const std::string& text) {
  const size_t eq = text.find('=');
  if (eq == std::string::npos || eq == 0)
    throw IndexInputError("--where '" + text + "': expected COLUMN=VALUE, e.g. artist=Nina Simone");
  return {text.substr(0, eq), text.substr(eq + 1)};
}

std::vector<std::optional<std::string>> column_values(const Index& index, const std::string& column) {
  std::vector<std::optional<std::string>> v(index.items.size());
  bool any = false;
  for (size_t i = 0; i < index.items.size(); ++i) {
    const IndexItem& it = index.items[i];
    if (column == "id") {
      v[i] = it.id;
    } else if (column == "path") {
      v[i] = it.path;
    } else if (column == "title") {
      v[i] = it.title;
    } else if (column == "artist") {
      v[i] = it.artist;
    } else {
      const Json extra = Json::parse(it.extra, nullptr, /*allow_exceptions=*/false);
      if (!extra.is_object())
        throw IndexInputError(index.source + ": item '" + it.id + "' has extra columns that are not a JSON object");
      const auto f = extra.find(column);
      if (f != extra.end() && f->is_string()) v[i] = f->get<std::string>();
    }
    any = any || v[i].has_value();
  }
  if (!any && !index.items.empty()) {
    std::set<std::string> have{"id", "path"};
    for (const IndexItem& it : index.items) {
      if (it.title) have.insert("title");
      if (it.artist) have.insert("artist");
      const Json extra = Json::parse(it.extra, nullptr, false);
      if (extra.is_object())
        for (const auto& [key, value] : extra.items()) have.insert(key);
      if (have.size() > 64) break;
    }
    std::string names;
    for (const std::string& h : have) names += (names.empty() ? "" : ", ") + h;
    throw IndexInputError(index.source + ": no item has a catalog column '" + column +
                          "' (the index's columns: " + names + ")");
  }
  return v;
}

FilteredSearch::FilteredSearch(Backend& be, const Index& index, const QueryFilter& filter, const AnnSearcher* ann)
    : be_(be), index_(index), ann_(filter.empty() ? ann : nullptr) {
  std::vector<char> admit(index.items.size(), 1);
  for (const auto& [column, value] : filter.where) {
    const std::vector<std::optional<std::string>> v = column_values(index, column);
    for (size_t i = 0; i < v.size(); ++i) admit[i] = admit[i] && v[i] && *v[i] == value;
  }
  for (size_t i = 0; i < admit.size(); ++i)
    if (admit[i]) rows_.push_back(static_cast<int64_t>(i));
  const int64_t D = index.dim;
  if (filter.where.empty()) {
    searcher_ = std::make_unique<Searcher>(be, index);
  } else {
    vectors_.resize(rows_.size() * static_cast<size_t>(D));
    for (size_t j = 0; j < rows_.size(); ++j)
      std::copy_n(index.vector(rows_[j]), D, vectors_.data() + j * static_cast<size_t>(D));
    searcher_ = std::make_unique<Searcher>(be, vectors_.data(), admitted(), index.dim);
  }
  if (filter.exclude_same.empty()) return;
  same_ = column_values(index, filter.exclude_same);
  for (const int64_t r : rows_)
    if (same_[static_cast<size_t>(r)]) ++same_count_[*same_[static_cast<size_t>(r)]];
}

FilteredSearch::~FilteredSearch() = default;

std::vector<std::vector<QueryHit>> FilteredSearch::search(const float* queries, const std::vector<int64_t>& query_rows,
                                                          int k) {
  check_k(k);
  const size_t Q = query_rows.size(), D = static_cast<size_t>(index_.dim);
  std::vector<std::vector<QueryHit>> hits(Q);
  if (Q == 0 || rows_.empty()) return hits;
  // Each query's value of exclude_same and how many admitted items share it: small counts are
  // searched together, asking for that many more; each large one over the rows without it.
  std::vector<const std::string*> value(Q, nullptr);
  std::map<std::string, std::vector<size_t>> large;
  std::vector<size_t> batch;
  int64_t extra = 0;
  for (size_t q = 0; q < Q; ++q) {
    const int64_t r = query_rows[q];
    if (!same_.empty() && r >= 0 && same_[static_cast<size_t>(r)]) value[q] = &*same_[static_cast<size_t>(r)];
    const auto c = value[q] ? same_count_.find(*value[q]) : same_count_.end();
    const int64_t shared = c == same_count_.end() ? 0 : c->second;
    if (shared > kOverfetchLimit) {
      large[*value[q]].push_back(q);
    } else {
      batch.push_back(q);
      extra = std::max(extra, shared);
    }
  }
  // The query's own row in the admitted subset, left out by the search itself.
  auto position = [&](int64_t row) -> int32_t {
    const auto it = std::lower_bound(rows_.begin(), rows_.end(), row);
    return it != rows_.end() && *it == row ? static_cast<int32_t>(it - rows_.begin()) : -1;
  };
  if (!batch.empty()) {
    const int kk = static_cast<int>(std::min<int64_t>({k + extra, admitted(), int64_t{kMaxK}}));
    std::vector<float> qs(batch.size() * D);
    std::vector<int32_t> exclude(batch.size(), -1);
    bool any_excluded = false;
    for (size_t j = 0; j < batch.size(); ++j) {
      std::copy_n(queries + batch[j] * D, D, qs.data() + j * D);
      if (query_rows[batch[j]] >= 0) exclude[j] = position(query_rows[batch[j]]);
      any_excluded = any_excluded || exclude[j] >= 0;
    }
    if (!any_excluded) exclude.clear();
    std::vector<int32_t> items;
    std::vector<float> sims;
    if (ann_)
      ann_->search(qs.data(), static_cast<int64_t>(batch.size()), kk, exclude, items, sims);
    else
      searcher_->search(qs.data(), static_cast<int64_t>(batch.size()), kk, exclude, items, sims);
    for (size_t j = 0; j < batch.size(); ++j) {
      std::vector<QueryHit>& out = hits[batch[j]];
      for (int t = 0; t < kk && static_cast<int>(out.size()) < k; ++t) {
        const int32_t s = items[j * static_cast<size_t>(kk) + static_cast<size_t>(t)];
        if (s < 0) break;
        const int64_t row = rows_[static_cast<size_t>(s)];
        if (value[batch[j]] && same_[static_cast<size_t>(row)] == *value[batch[j]]) continue;
        out.push_back({row, sims[j * static_cast<size_t>(kk) + static_cast<size_t>(t)]});
      }
    }
  }
  for (const auto& [v, which] : large) {
    std::vector<std::vector<QueryHit>> found = search_excluding(queries, which, v, k);
    for (size_t j = 0; j < which.size(); ++j) hits[which[j]] = std::move(found[j]);
  }
  return hits;
}

// The queries `which` over the admitted rows whose exclude_same value is not `value` (their
// own rows hold it, so they are out too).
std::vector<std::vector<QueryHit>> FilteredSearch::search_excluding(const float* queries,
                                                                    const std::vector<size_t>& which,
                                                                    const std::string& value, int k) {
  const size_t D = static_cast<size_t>(index_.dim);
  std::vector<int64_t> rows;
  for (const int64_t r : rows_)
    if (same_[static_cast<size_t>(r)] != value) rows.push_back(r);
  std::vector<std::vector<QueryHit>> hits(which.size());
  if (rows.empty()) return hits;
  std::vector<float> vectors(rows.size() * D), qs(which.size() * D);
  for (size_t j = 0; j < rows.size(); ++j) std::copy_n(index_.vector(rows[j]), D, vectors.data() + j * D);
  for (size_t j = 0; j < which.size(); ++j) std::copy_n(queries + which[j] * D, D, qs.data() + j * D);
  const int kk = static_cast<int>(std::min<int64_t>(k, static_cast<int64_t>(rows.size())));
  std::vector<int32_t> items;
  std::vector<float> sims;
  Searcher(be_, vectors.data(), static_cast<int64_t>(rows.size()), index_.dim)
      .search(qs.data(), static_cast<int64_t>(which.size()), kk, {}, items, sims);
  for (size_t j = 0; j < which.size(); ++j)
    for (int t = 0; t < kk; ++t) {
      const int32_t s = items[j * static_cast<size_t>(kk) + static_cast<size_t>(t)];
      if (s >= 0)
        hits[j].push_back({rows[static_cast<size_t>(s)], sims[j * static_cast<size_t>(kk) + static_cast<size_t>(t)]});
    }
  return hits;
}

namespace {

QueryResult run_search(Backend& be, const Index& index, const float* query, int k, int64_t query_row,
                       const QueryFilter& filter, const AnnSearcher* ann) {
  check_k(k);
  QueryResult r;
  const auto t0 = std::chrono::steady_clock::now();
  r.hits = FilteredSearch(be, index, filter, ann).search(query, {query_row}, k).at(0);
  r.search_seconds = seconds_since(t0);
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

int64_t require_item(const Index& index, const std::string& id) {
  const int64_t row = index.find(id);
  if (row >= 0) return row;
  std::string msg = index.source + ": no item '" + id + "' in the index (" + std::to_string(index.size()) + " items)";
  const std::vector<std::string> near = similar_ids(index, id);
  if (!near.empty()) {
    msg += "; did you mean ";
    for (size_t i = 0; i < near.size(); ++i) msg += (i ? ", '" : "'") + near[i] + "'";
    msg += "?";
  }
  throw IndexInputError(msg);
}

QueryResult query_item(Backend& be, const Index& index, const std::string& id, int k, const QueryFilter& filter,
                       const AnnSearcher* ann) {
  check_k(k);
  const int64_t row = require_item(index, id);
  QueryResult r = run_search(be, index, index.vector(row), k, row, filter, ann);
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

struct AudioQueryEmbedder::State {
  Config cfg;
  int crops = 0;
  std::unique_ptr<Model> model;
};

AudioQueryEmbedder::AudioQueryEmbedder(Backend& be, const Index& index, const std::string& checkpoint)
    : s_(std::make_unique<State>()) {
  const std::string path = check_index_checkpoint(index, checkpoint);
  s_->cfg = read_checkpoint_config(path);
  try {
    s_->crops = std::stoi(index.meta_value("crops"));
  } catch (const std::logic_error&) {
    throw IndexInputError(index.source + ": meta crops '" + index.meta_value("crops") + "' is not a number");
  }
  if (s_->crops < 1)
    throw IndexInputError(index.source + ": meta crops " + std::to_string(s_->crops) + " is not positive");
  s_->model = std::make_unique<Model>(s_->cfg, be, std::min(s_->crops, 64));
  load_checkpoint(path, *s_->model, nullptr);
  s_->model->set_training(false);
}

AudioQueryEmbedder::~AudioQueryEmbedder() = default;

std::vector<float> AudioQueryEmbedder::embed(const std::string& audio_path) {
  const audio::DecodedAudio decoded = audio::decode_audio(audio_path, audio::decode_request(s_->cfg.audio));
  return embed::embed_track(*s_->model, decoded.samples, s_->crops).emb;
}

std::vector<float> embed_audio_query(Backend& be, const Index& index, const std::string& audio_path,
                                     const std::string& checkpoint) {
  return AudioQueryEmbedder(be, index, checkpoint).embed(audio_path);
}

int64_t audio_query_row(const Index& index, const std::string& audio_path, const QueryFilter& filter) {
  if (filter.exclude_same.empty()) return -1;
  std::error_code ec;
  const std::string absolute = fs::weakly_canonical(fs::absolute(audio_path), ec).string();
  std::string hash;
  try {
    hash = sha256_file_hex(audio_path);
  } catch (const std::exception&) {
    // Unreadable: the decode that follows names the file and the reason.
  }
  for (int64_t row = 0; row < index.size(); ++row) {
    const IndexItem& it = index.items[static_cast<size_t>(row)];
    if (!hash.empty() && it.content_sha256 == hash) return row;
    if (it.content_sha256.empty() && !absolute.empty() && fs::weakly_canonical(it.path, ec).string() == absolute)
      return row;
  }
  throw IndexInputError("--exclude-same " + filter.exclude_same + ": " + audio_path +
                        " is not the audio of any item of " + index.source + ", so it has no " + filter.exclude_same +
                        " to exclude by; query an item with --item, or leave --exclude-same out");
}

QueryResult query_audio(Backend& be, const Index& index, const std::string& audio_path, int k,
                        const std::string& checkpoint, const QueryFilter& filter, const AnnSearcher* ann) {
  check_k(k);  // before the audio is decoded
  const int64_t row = audio_query_row(index, audio_path, filter);
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<float> q = embed_audio_query(be, index, audio_path, checkpoint);
  const double embed = seconds_since(t0);
  QueryResult r = run_search(be, index, q.data(), k, row, filter, ann);
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

nlohmann::ordered_json hit_json(const Index& index, const QueryHit& hit, size_t rank) {
  const IndexItem& it = index.items[static_cast<size_t>(hit.row)];
  nlohmann::ordered_json j;
  j["rank"] = rank;
  j["id"] = it.id;
  j["title"] = text_or_null(it.title);
  j["artist"] = text_or_null(it.artist);
  j["similarity"] = hit.similarity;
  j["path"] = it.path;
  return j;
}

std::string hits_json(const Index& index, const QueryResult& r, int k) {
  nlohmann::ordered_json j;
  j["query"] = r.query;
  if (r.query_row >= 0) j["query_row"] = r.query_row;
  j["k"] = k;
  j["index"] = index.source;
  j["results"] = nlohmann::ordered_json::array();
  for (size_t i = 0; i < r.hits.size(); ++i) j["results"].push_back(hit_json(index, r.hits[i], i + 1));
  return json_text(j, 2);
}

}  // namespace mg::index
