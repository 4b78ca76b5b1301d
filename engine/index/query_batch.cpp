#include "engine/index/query_batch.h"

#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <utility>

#include "engine/audio/decode.h"
#include "engine/io/json_text.h"

namespace mg::index {

namespace fs = std::filesystem;
using Json = nlohmann::json;

namespace {

std::string trim(const std::string& s) {
  const char* space = " \t\r\n";
  const size_t a = s.find_first_not_of(space);
  if (a == std::string::npos) return "";
  return s.substr(a, s.find_last_not_of(space) - a + 1);
}

std::vector<float> unit_vector(const Index& index, const Json& v) {
  if (!v.is_array()) throw IndexInputError("\"vector\" must be an array of numbers");
  if (static_cast<int64_t>(v.size()) != index.dim)
    throw IndexInputError("\"vector\" has " + std::to_string(v.size()) + " numbers; the index holds " +
                          std::to_string(index.dim) + "-dimensional vectors");
  std::vector<double> x;
  double sq = 0;
  for (const Json& e : v) {
    if (!e.is_number()) throw IndexInputError("\"vector\" must hold numbers only");
    const double d = e.get<double>();
    if (!std::isfinite(d)) throw IndexInputError("\"vector\" holds a value that is not finite");
    x.push_back(d);
    sq += d * d;
  }
  if (!(sq > 0) || !std::isfinite(sq)) throw IndexInputError("\"vector\" has no direction (its norm is 0)");
  const double inv = 1.0 / std::sqrt(sq);
  std::vector<float> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = static_cast<float>(x[i] * inv);
  return out;
}

QueryRequest json_request(const Index& index, const std::string& text) {
  const Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) throw IndexInputError("not valid JSON");
  if (!j.is_object() || j.size() != 1)
    throw IndexInputError(
        "a JSON query is one object with one key: {\"item\": ...}, {\"audio\": ...} or {\"vector\": [...]}");
  // The iterator, not items(): a structured binding to *items().begin() outlives the proxy.
  const auto first = j.begin();
  const std::string& key = first.key();
  const Json& value = first.value();
  QueryRequest r;
  if (key == "vector") {
    r.kind = QueryKind::Vector;
    r.vector = unit_vector(index, value);
    return r;
  }
  if (key != "item" && key != "audio")
    throw IndexInputError("unknown key \"" + key + "\" (expected item, audio or vector)");
  if (!value.is_string() || value.get<std::string>().empty())
    throw IndexInputError("\"" + key + "\" must be a non-empty string");
  r.kind = key == "item" ? QueryKind::Item : QueryKind::Audio;
  r.text = value.get<std::string>();
  return r;
}

const char* kind_name(QueryKind k) {
  switch (k) {
    case QueryKind::Item: return "item";
    case QueryKind::Audio: return "audio";
    case QueryKind::Vector: return "vector";
  }
  return "?";
}

}  // namespace

std::optional<QueryRequest> parse_query_line(const Index& index, const std::string& line) {
  const std::string text = trim(line);
  if (text.empty() || text[0] == '#') return std::nullopt;
  if (text[0] == '{') return json_request(index, text);
  QueryRequest r;
  r.text = text;
  if (index.find(text) >= 0) return r;  // an id wins over a file of the same name
  std::error_code ec;
  if (!fs::is_regular_file(text, ec)) {
    std::string msg = "'" + text + "' is neither an item of the index nor an audio file";
    const std::vector<std::string> near = similar_ids(index, text);
    if (!near.empty()) msg += " (items close to it: '" + near[0] + "'" + (near.size() > 1 ? ", ...)" : ")");
    throw IndexInputError(msg);
  }
  r.kind = QueryKind::Audio;
  return r;
}

BatchQuery::BatchQuery(Backend& be, const Index& index, const QueryFilter& filter, int k, std::string checkpoint,
                       const AnnSearcher* ann)
    : be_(be),
      index_(index),
      k_(k),
      checkpoint_(std::move(checkpoint)),
      filter_(filter),
      search_(be, index, filter, ann) {
  check_k(k);
}

BatchQuery::~BatchQuery() = default;

std::vector<std::string> BatchQuery::run(const std::vector<QueryLine>& lines) {
  const size_t D = static_cast<size_t>(index_.dim);
  struct Pending {
    const QueryLine* in;
    QueryRequest req;
    std::string error;
    int64_t row = -1;
    size_t at = 0;  // its row of `queries`
  };
  std::vector<Pending> pending;
  std::vector<float> queries;  // [searched, D]
  std::vector<int64_t> rows;   // [searched]
  for (const QueryLine& l : lines) {
    Pending p{&l, {}, {}, -1, 0};
    try {
      std::optional<QueryRequest> req = parse_query_line(index_, l.text);
      if (!req) continue;
      p.req = std::move(*req);
      std::vector<float> v;
      if (p.req.kind == QueryKind::Item) {
        p.row = require_item(index_, p.req.text);
        v.assign(index_.vector(p.row), index_.vector(p.row) + D);
      } else if (p.req.kind == QueryKind::Audio) {
        p.row = audio_query_row(index_, p.req.text, filter_);
        if (!embedder_) embedder_ = std::make_unique<AudioQueryEmbedder>(be_, index_, checkpoint_);
        v = embedder_->embed(p.req.text);
        ++audio_embedded_;
      } else {
        v = p.req.vector;
      }
      p.at = rows.size();
      rows.push_back(p.row);
      queries.insert(queries.end(), v.begin(), v.end());
    } catch (const IndexInputError& e) {
      p.error = e.what();
    } catch (const audio::AudioError& e) {
      p.error = e.what();
    }
    pending.push_back(std::move(p));
  }
  const std::vector<std::vector<QueryHit>> hits = search_.search(queries.data(), rows, k_);
  std::vector<std::string> out;
  out.reserve(pending.size());
  for (const Pending& p : pending) {
    nlohmann::ordered_json j;
    j["line"] = p.in->line;
    const bool vector = p.error.empty() && p.req.kind == QueryKind::Vector;
    j["query"] = vector ? nlohmann::ordered_json(nullptr)
                        : nlohmann::ordered_json(p.req.text.empty() ? trim(p.in->text) : p.req.text);
    if (!p.error.empty()) {
      j["error"] = p.error;
      ++failed_;
    } else {
      j["kind"] = kind_name(p.req.kind);
      j["k"] = k_;
      j["results"] = nlohmann::ordered_json::array();
      for (size_t i = 0; i < hits[p.at].size(); ++i) j["results"].push_back(hit_json(index_, hits[p.at][i], i + 1));
      ++answered_;
    }
    out.push_back(json_text(j));
  }
  return out;
}

int64_t read_query_batches(int fd, const std::string& source, size_t max_batch,
                           const std::function<void(const std::vector<QueryLine>&)>& on_batch) {
  if (max_batch < 1) throw std::invalid_argument("read_query_batches: max_batch must be positive");
  std::vector<QueryLine> batch;
  std::string partial;
  int64_t line = 0;
  char buf[1 << 16];
  auto flush = [&] {
    if (!batch.empty()) on_batch(batch);
    batch.clear();
  };
  for (;;) {
    const ssize_t got = ::read(fd, buf, sizeof buf);
    if (got < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error(source + ": cannot read the queries: " + std::strerror(errno));
    }
    if (got == 0) break;
    partial.append(buf, static_cast<size_t>(got));
    size_t start = 0;
    for (size_t nl; (nl = partial.find('\n', start)) != std::string::npos; start = nl + 1) {
      batch.push_back({++line, partial.substr(start, nl - start)});
      if (batch.size() == max_batch) flush();
    }
    partial.erase(0, start);
    // Nothing more to read right now: answer what has come (a pipeline may be waiting for it).
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 0) == 0) flush();
  }
  if (!partial.empty()) batch.push_back({++line, partial});
  flush();
  return line;
}

}  // namespace mg::index
