#include "engine/index/ann.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "engine/io/atomic_file.h"
#include "engine/timer.h"

#ifdef MELGRAPH_HAVE_FAISS
#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/impl/FaissException.h>
#include <faiss/impl/io.h>
#include <faiss/index_io.h>
#endif

namespace mg::index {

namespace fs = std::filesystem;
using Json = nlohmann::json;

AnnKind parse_ann_kind(const std::string& text) {
  if (text == "ivf") return AnnKind::Ivf;
  if (text == "hnsw") return AnnKind::Hnsw;
  throw IndexInputError("--ann '" + text + "': expected ivf or hnsw");
}

std::string ann_path(const std::string& index_path) { return index_path + ".ann"; }

void check_ann_size(const AnnOptions& o, int64_t n) {
  if (o.kind != AnnKind::Ivf) return;
  if (n < 39)
    throw IndexInputError("--ann ivf needs at least 39 items to train its lists (the index has " + std::to_string(n) +
                          "); use --ann hnsw, or the exact search");
  if (o.nlist > n)
    throw IndexInputError("--ann ivf: " + std::to_string(o.nlist) + " lists for " + std::to_string(n) + " items");
}

#ifndef MELGRAPH_HAVE_FAISS

bool ann_built() { return false; }

AnnSummary write_ann(const Index&, const std::string&, const AnnOptions&) {
  throw IndexInputError(
      "--ann needs FAISS, and this melgraph was built without it: install libfaiss-dev and configure again");
}

struct AnnSearcher::State {};
AnnSearcher::AnnSearcher() = default;
AnnSearcher::~AnnSearcher() = default;

std::unique_ptr<AnnSearcher> AnnSearcher::open(const Index&, const std::string& index_path) {
  if (!fs::exists(ann_path(index_path))) return nullptr;
  throw IndexInputError(ann_path(index_path) +
                        " is an approximate index, and this melgraph was built without FAISS to read it: pass --exact "
                        "for the exact search, or install libfaiss-dev and configure again");
}

void AnnSearcher::search(const float*, int64_t, int, const std::vector<int32_t>&, std::vector<int32_t>&,
                         std::vector<float>&) const {
  throw std::logic_error("AnnSearcher::search without FAISS");
}

void AnnSearcher::set_breadth(int) {}

std::string AnnSearcher::describe() const { return "none"; }

#else

bool ann_built() { return true; }

namespace {

constexpr char kMagic[8] = {'M', 'G', 'A', 'N', 'N', 0, 0, 1};

const char* kind_name(AnnKind k) { return k == AnnKind::Ivf ? "ivf" : "hnsw"; }

// The lists of an IVF over n items: 4 sqrt(n), at most n / 39 (FAISS's k-means wants 39 points
// per centroid), at least 1.
int default_nlist(int64_t n) {
  const int64_t want = static_cast<int64_t>(4 * std::sqrt(static_cast<double>(n)));
  return static_cast<int>(std::max<int64_t>(1, std::min(want, n / 39)));
}

std::unique_ptr<faiss::Index> build(const Index& x, const AnnOptions& o, Json& params) {
  const int64_t n = x.size();
  const int d = x.dim;
  if (o.kind == AnnKind::Ivf) {
    check_ann_size(o, n);
    const int nlist = o.nlist > 0 ? o.nlist : default_nlist(n);
    const int nprobe = o.nprobe > 0 ? std::min(o.nprobe, nlist) : std::min(nlist, std::max(8, nlist / 64));
    auto quantizer = std::make_unique<faiss::IndexFlatIP>(d);
    auto ivf = std::make_unique<faiss::IndexIVFFlat>(quantizer.get(), d, static_cast<size_t>(nlist),
                                                     faiss::METRIC_INNER_PRODUCT);
    ivf->own_fields = true;                  // the IVF deletes its quantizer
    static_cast<void>(quantizer.release());  // so this no longer may
    ivf->cp.seed = 1234;                   // k-means' sample and initial centroids: the same file for the same vectors
    ivf->cp.max_points_per_centroid = 64;  // k-means on at most 64 nlist points: minutes, not hours, at 10M
    ivf->verbose = false;
    ivf->train(n, x.vectors.data());
    ivf->add(n, x.vectors.data());
    ivf->nprobe = static_cast<size_t>(nprobe);
    params = {{"nlist", nlist}, {"nprobe", nprobe}};
    return ivf;
  }
  auto hnsw = std::make_unique<faiss::IndexHNSWFlat>(d, o.hnsw_m, faiss::METRIC_INNER_PRODUCT);
  hnsw->hnsw.efConstruction = o.ef_construction;
  hnsw->verbose = false;
  hnsw->add(n, x.vectors.data());
  params = {{"m", o.hnsw_m}, {"ef_construction", o.ef_construction}, {"ef_search", o.ef_search}};
  return hnsw;
}

// FAISS's serialiser handing its bytes to `append`, or with none only counting them: the
// header records the count, so that a file cut short or padded is refused before FAISS reads
// it (FAISS 1.7's read_index leaks what it has read when it throws on a short file).
struct ByteSink final : faiss::IOWriter {
  explicit ByteSink(const AppendBytes* a) : append(a) {}
  size_t operator()(const void* ptr, size_t size, size_t nitems) override {
    if (append) (*append)(ptr, size * nitems);
    bytes += static_cast<int64_t>(size * nitems);
    return nitems;
  }
  const AppendBytes* append;
  int64_t bytes = 0;
};

// Serialises `idx` into `append` (null: nowhere); returns the bytes it made.
int64_t serialise(const faiss::Index& idx, const AppendBytes* append) {
  ByteSink sink(append);
  try {
    faiss::write_index(&idx, &sink);
  } catch (const faiss::FaissException& e) {
    throw std::runtime_error(std::string("FAISS could not write the ANN: ") + e.what());
  }
  return sink.bytes;
}

}  // namespace

AnnSummary write_ann(const Index& x, const std::string& index_path, const AnnOptions& o) {
  const auto sum = x.meta.find("vectors_sha256");
  if (sum == x.meta.end())
    throw IndexInputError(index_path +
                          ": the index has no meta vectors_sha256 (made by an older melgraph): export it "
                          "again, then build the ANN");
  if (x.size() < 1) throw IndexInputError(index_path + ": an empty index needs no ANN");
  AnnSummary s;
  s.path = ann_path(index_path);
  const auto t0 = WallClock::now();
  Json header{{"format", "melgraph-ann"},
              {"kind", kind_name(o.kind)},
              {"vectors_sha256", sum->second},
              {"items", x.size()},
              {"dim", x.dim}};
  Json params;
  std::unique_ptr<faiss::Index> idx;
  try {
    idx = build(x, o, params);
  } catch (const faiss::FaissException& e) {
    throw std::runtime_error(std::string("FAISS could not build the ANN: ") + e.what());
  }
  header["params"] = params;
  s.build_seconds = seconds_since(t0);
  const auto t1 = WallClock::now();
  const int64_t index_bytes = serialise(*idx, nullptr);  // a counting pass: nothing is kept
  header["index_bytes"] = index_bytes;
  const std::string head = header.dump();
  const uint32_t len = static_cast<uint32_t>(head.size());
  // Streamed into the file as FAISS serialises it: the index holds every vector (and HNSW its
  // links), and a copy of it in memory would double the export's peak.
  write_file_atomic_streamed(s.path, [&](const AppendBytes& append) {
    append(kMagic, sizeof kMagic);
    append(&len, sizeof len);
    append(head.data(), head.size());
    const int64_t written = serialise(*idx, &append);
    if (written != index_bytes)
      throw std::logic_error("write_ann: FAISS wrote " + std::to_string(written) + " bytes after counting " +
                             std::to_string(index_bytes));
  });
  s.write_seconds = seconds_since(t1);
  s.bytes = static_cast<int64_t>(sizeof kMagic + sizeof len + head.size()) + index_bytes;
  s.description = std::string(kind_name(o.kind)) + " " + header["params"].dump();
  return s;
}

// NOLINTNEXTLINE(bugprone-exception-escape): its implicit members hold a default Json (null), which allocates nothing
struct AnnSearcher::State {
  std::unique_ptr<faiss::Index> index;
  Json header;
  AnnKind kind = AnnKind::Hnsw;
  int ef_search = 0, nprobe = 0;  // 0: the file's
  std::mutex searching;           // HNSW's breadth is a field of the FAISS index
};

AnnSearcher::AnnSearcher() : s_(std::make_unique<State>()) {}
AnnSearcher::~AnnSearcher() = default;

std::unique_ptr<AnnSearcher> AnnSearcher::open(const Index& x, const std::string& index_path) {
  const std::string path = ann_path(index_path);
  if (!fs::exists(path)) return nullptr;
  const std::string damaged = path +
                              ": not a melgraph ANN file, or damaged: remove it (or pass --exact), or build it "
                              "again with melgraph export --ann";
  // FAISS reads the index straight from the file, after the header: the index holds every
  // vector, and the file read into memory first would be two more copies of them.
  const std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) throw IndexInputError(path + ": cannot open: " + std::strerror(errno));
  // The size of the file opened: a new one renamed over `path` meanwhile must not be measured.
  struct stat st {};
  const bool size_error = ::fstat(::fileno(f.get()), &st) != 0;
  const uintmax_t file_bytes = size_error ? 0 : static_cast<uintmax_t>(st.st_size);
  char magic[sizeof kMagic];
  uint32_t len = 0;
  if (size_error || std::fread(magic, 1, sizeof magic, f.get()) != sizeof magic ||
      std::memcmp(magic, kMagic, sizeof kMagic) != 0 || std::fread(&len, sizeof len, 1, f.get()) != 1 ||
      sizeof kMagic + sizeof len + len > file_bytes)
    throw IndexInputError(damaged);
  std::string head(len, '\0');
  if (std::fread(head.data(), 1, len, f.get()) != len) throw IndexInputError(damaged);
  auto a = std::unique_ptr<AnnSearcher>(new AnnSearcher());
  a->s_->header = Json::parse(head, nullptr, false);
  const Json& h = a->s_->header;
  if (!h.is_object() || h.value("format", "") != "melgraph-ann") throw IndexInputError(damaged);
  const auto sum = x.meta.find("vectors_sha256");
  if (sum == x.meta.end() || h.value("vectors_sha256", "") != sum->second)
    throw IndexInputError(path + " was built for other vectors than " + index_path +
                          " holds (the index was exported again since): build it again with melgraph export --ann " +
                          h.value("kind", "hnsw") + ", or pass --exact");
  a->s_->kind = parse_ann_kind(h.value("kind", ""));
  a->s_->ef_search = h.contains("params") ? h["params"].value("ef_search", 0) : 0;
  // FAISS's part is exactly the size the header records (files before the field: checked by
  // where FAISS stops reading, below).
  const uintmax_t body = sizeof kMagic + sizeof len + len;
  if (h.contains("index_bytes")) {
    const Json& n = h["index_bytes"];
    if (!n.is_number_integer() || n.get<int64_t>() < 0 || static_cast<uintmax_t>(n.get<int64_t>()) != file_bytes - body)
      throw IndexInputError(damaged);
  }
  try {
    a->s_->index.reset(faiss::read_index(f.get()));
  } catch (const faiss::FaissException& e) {
    throw IndexInputError(damaged + " (" + e.what() + ")");
  }
  // Bytes after the index: not a file export wrote.
  const long end = std::ftell(f.get());
  if (end < 0 || static_cast<uintmax_t>(end) != file_bytes) throw IndexInputError(damaged);
  if (a->s_->index->ntotal != x.size() || a->s_->index->d != x.dim) throw IndexInputError(damaged);
  return a;
}

void AnnSearcher::search(const float* queries, int64_t Q, int k, const std::vector<int32_t>& exclude,
                         std::vector<int32_t>& out_items, std::vector<float>& out_sims) const {
  const int64_t n = s_->index->ntotal;
  const int ask = static_cast<int>(std::min<int64_t>(k + (exclude.empty() ? 0 : 1), n));
  out_items.assign(static_cast<size_t>(Q) * static_cast<size_t>(k), -1);
  out_sims.assign(out_items.size(), -INFINITY);
  if (Q == 0 || ask < 1) return;
  std::vector<float> sims(static_cast<size_t>(Q) * static_cast<size_t>(ask));
  std::vector<faiss::Index::idx_t> labels(sims.size());
  const std::lock_guard<std::mutex> one_at_a_time(s_->searching);
  try {
    if (s_->kind == AnnKind::Hnsw) {
      // The index's own field: FAISS 1.7's IndexHNSW::search does not read SearchParametersHNSW.
      // Every search sets it before searching, so searches never depend on an earlier one.
      auto* hnsw = dynamic_cast<faiss::IndexHNSW*>(s_->index.get());
      if (!hnsw) throw std::logic_error("AnnSearcher: an hnsw file that does not hold an IndexHNSW");
      hnsw->hnsw.efSearch = s_->ef_search > 0 ? s_->ef_search : std::max(64, 2 * ask);
      s_->index->search(Q, queries, ask, sims.data(), labels.data());
    } else if (s_->nprobe > 0) {
      faiss::SearchParametersIVF p;
      p.nprobe = static_cast<size_t>(s_->nprobe);
      s_->index->search(Q, queries, ask, sims.data(), labels.data(), &p);
    } else {
      s_->index->search(Q, queries, ask, sims.data(), labels.data());
    }
  } catch (const faiss::FaissException& e) {
    throw std::runtime_error(std::string("FAISS search failed: ") + e.what());
  }
  for (int64_t q = 0; q < Q; ++q) {
    int kept = 0;
    for (int j = 0; j < ask && kept < k; ++j) {
      const auto row = labels[static_cast<size_t>(q * ask + j)];
      if (row < 0 || (!exclude.empty() && row == exclude[static_cast<size_t>(q)])) continue;
      out_items[static_cast<size_t>(q * k + kept)] = static_cast<int32_t>(row);
      out_sims[static_cast<size_t>(q * k + kept)] = sims[static_cast<size_t>(q * ask + j)];
      ++kept;
    }
  }
}

void AnnSearcher::set_breadth(int breadth) {
  if (breadth < 0) throw std::invalid_argument("AnnSearcher::set_breadth: " + std::to_string(breadth) + " < 0");
  if (s_->kind == AnnKind::Hnsw) {
    s_->ef_search = breadth > 0 ? breadth : s_->header["params"].value("ef_search", 0);
  } else {
    s_->nprobe = breadth;
  }
}

std::string AnnSearcher::describe() const {
  std::string params = s_->header.contains("params") ? s_->header["params"].dump() : "{}";
  if (s_->kind == AnnKind::Hnsw && s_->ef_search > 0) params += " efSearch " + std::to_string(s_->ef_search);
  if (s_->kind == AnnKind::Ivf && s_->nprobe > 0) params += " nprobe " + std::to_string(s_->nprobe);
  return s_->header.value("kind", "?") + " " + params + " over " + std::to_string(s_->index->ntotal) + " items";
}

#endif

}  // namespace mg::index
