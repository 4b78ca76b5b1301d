// Approximate nearest neighbours for large indexes: FAISS's IVF-Flat or HNSW-Flat over the
// index's unit vectors with the inner product (= cosine), in a file beside the SQLite index,
// `<index>.ann`, that `melgraph export --ann ivf|hnsw` writes and `melgraph query` uses when it
// is there (`--exact` bypasses it).
//
// The file: 8 bytes "MGANN\0\0\1", a little-endian uint32 n, n bytes of JSON
// {"kind", "vectors_sha256", "items", "dim", parameters}, then FAISS's own serialisation
// (faiss::write_index). "vectors_sha256" is the index's meta of that name (index_format.h
// vectors_checksum): an ANN file whose checksum differs from the index's (the index was
// exported again, or another index sits there) is refused, never used. Written atomically.
//
// FAISS is optional (Debian's libfaiss-dev, CPU): without it ann_built() is false, writing is
// refused with a message, and a query beside an ANN file needs --exact.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/index/index_format.h"

namespace mg::index {

enum class AnnKind { Ivf, Hnsw };

struct AnnOptions {
  AnnKind kind = AnnKind::Hnsw;
  int nlist = 0;             // IVF: lists (0: 4 sqrt(n), at most n / 39 so that k-means has 39 points a list)
  int nprobe = 0;            // IVF: lists visited per query (0: nlist / 64, at least 8, at most nlist)
  int hnsw_m = 32;           // HNSW: links per node
  int ef_construction = 80;  // HNSW: candidate list while building
  int ef_search = 0;         // HNSW: candidate list per query (0: max(64, 2 k))
};

struct AnnSummary {
  std::string path, description;
  double build_seconds = 0, write_seconds = 0;
  int64_t bytes = 0;
};

// Whether this build has FAISS (MELGRAPH_HAVE_FAISS).
bool ann_built();
// "ivf" | "hnsw"; IndexInputError otherwise.
AnnKind parse_ann_kind(const std::string& text);
// `<index_path>.ann`.
std::string ann_path(const std::string& index_path);

// Throws IndexInputError when `options` cannot be built over n items: IVF needs 39 items and
// no more lists than items. Export checks it before writing anything.
void check_ann_size(const AnnOptions& options, int64_t n);

// Builds the ANN over `index` (which must carry meta vectors_sha256, as read_index of an
// exported file or an Index passed to write_index does) and writes ann_path(index_path).
// IndexInputError without FAISS or for an index too small for the kind (IVF needs 39 items).
AnnSummary write_ann(const Index& index, const std::string& index_path, const AnnOptions& options);

// A loaded ANN file, searched with the parameters it was built with (or the caller's).
class AnnSearcher {
 public:
  // The ANN file beside index_path, or null when there is none. IndexInputError when it is
  // stale (its vectors_sha256 is not the index's), damaged, or this build has no FAISS.
  static std::unique_ptr<AnnSearcher> open(const Index& index, const std::string& index_path);
  ~AnnSearcher();
  AnnSearcher(const AnnSearcher&) = delete;
  AnnSearcher& operator=(const AnnSearcher&) = delete;

  // queries [Q, dim] -> items [Q, k] (rows, -1 padding) and sims [Q, k], best first, as
  // Searcher::search; exclude: empty or [Q] rows to leave out (the search asks for k + 1).
  // Searches from several threads take turns (FAISS parallelises each batch itself).
  void search(const float* queries, int64_t Q, int k, const std::vector<int32_t>& exclude,
              std::vector<int32_t>& out_items, std::vector<float>& out_sims) const;
  // The search's breadth from now on, instead of the file's: HNSW's efSearch or IVF's nprobe
  // (wider: higher recall, slower). 0: the file's.
  void set_breadth(int breadth);
  // "hnsw {...} over 1000000 items" for logs.
  std::string describe() const;

 private:
  AnnSearcher();
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace mg::index
