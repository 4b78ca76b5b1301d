#include "kernels/topk_cpu.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "kernels/blas.h"

namespace mg {

namespace {

// Items per sgemm block. Fixed (not derived from the thread count) so that every similarity
// comes from the same sgemm call shape whatever the number of threads. Blocks go to the
// threads dynamically (a thread the OS preempts holds nobody back); which thread ranks which
// block does not matter, since the merge keeps the unique top k of the union.
constexpr int64_t kItemBlock = 4096;
// Queries per sgemm block: each block of items is read once per this many queries.
constexpr int64_t kQueryBlock = 64;
// Similarities checked against the heap's threshold in one vectorised pass.
constexpr int64_t kScanChunk = 32;

struct Candidate {
  float key;  // the similarity, -inf for NaN (so that NaN ranks last)
  float sim;
  int32_t item;
};

// a ranks before b: higher similarity, then lower index. A strict total order over distinct
// items, so the top k is unique and the merge order of partial results does not matter.
bool ranks_before(const Candidate& a, const Candidate& b) {
  return a.key > b.key || (a.key == b.key && a.item < b.item);
}

// Bounded top-k: a heap whose front is the worst kept candidate.
class TopK {
 public:
  void reset(int k) {
    k_ = static_cast<size_t>(k);
    heap_.clear();
    heap_.reserve(k_);
  }
  void offer(const Candidate& c) {
    if (heap_.size() < k_) {
      heap_.push_back(c);
      std::push_heap(heap_.begin(), heap_.end(), ranks_before);
    } else if (ranks_before(c, heap_.front())) {
      std::pop_heap(heap_.begin(), heap_.end(), ranks_before);
      heap_.back() = c;
      std::push_heap(heap_.begin(), heap_.end(), ranks_before);
    }
  }
  // Below this key nothing can enter (once full); the common case of the scan.
  float threshold() const {
    return heap_.size() < k_ ? -std::numeric_limits<float>::infinity() : heap_.front().key;
  }
  const std::vector<Candidate>& items() const { return heap_; }

 private:
  size_t k_ = 0;
  std::vector<Candidate> heap_;
};

}  // namespace

void topk_cosine(const float* queries, int64_t Q, const float* items, int64_t N, int D, int k,
                 std::span<const int32_t> exclude, int32_t* out_items, float* out_sims) {
  if (Q < 0 || N < 0 || D < 1 || k < 1)
    throw std::invalid_argument("topk_cosine: need Q >= 0, N >= 0, D >= 1, k >= 1 (got Q " + std::to_string(Q) +
                                ", N " + std::to_string(N) + ", D " + std::to_string(D) + ", k " +
                                std::to_string(k) + ")");
  if (N > std::numeric_limits<int32_t>::max())
    throw std::invalid_argument("topk_cosine: " + std::to_string(N) + " items exceed the int32 item index");
  if (!exclude.empty() && static_cast<int64_t>(exclude.size()) != Q)
    throw std::invalid_argument("topk_cosine: exclude has " + std::to_string(exclude.size()) + " entries for " +
                                std::to_string(Q) + " queries (pass one per query, or none)");

  const int64_t n_blocks = (N + kItemBlock - 1) / kItemBlock;
  const int n_threads = std::max(1, static_cast<int>(std::min<int64_t>(omp_get_max_threads(), std::max<int64_t>(n_blocks, 1))));
  // Per thread: its top-k of every query of the current query block.
  std::vector<std::vector<TopK>> partial(static_cast<size_t>(n_threads), std::vector<TopK>(kQueryBlock));
  std::vector<Candidate> merged;

  for (int64_t q0 = 0; q0 < Q; q0 += kQueryBlock) {
    const int64_t qb = std::min(kQueryBlock, Q - q0);
    // Reset every slot here, not in the region: OpenMP may run fewer threads than asked
    // (nested or dynamic), and an unused slot must not carry the previous block's candidates.
    for (std::vector<TopK>& t : partial)
      for (TopK& top : t) top.reset(k);
#pragma omp parallel num_threads(n_threads)
    {
      std::vector<TopK>& mine = partial[static_cast<size_t>(omp_get_thread_num())];
      std::vector<float> sims(static_cast<size_t>(qb * kItemBlock));  // [qb, nb]
#pragma omp for schedule(dynamic, 1)
      for (int64_t b = 0; b < n_blocks; ++b) {
        const int64_t i0 = b * kItemBlock, nb = std::min(kItemBlock, N - i0);
        // sims [qb, nb] = queries[q0:q0+qb] [qb, D] x items[i0:i0+nb]^T [D, nb]; a lone query
        // (Q = 1, or the last of Q = 64n + 1) takes GEMV, which streams the items without packing.
        if (qb == 1)
          gemv(false, static_cast<int>(nb), D, 1.0f, items + i0 * D, D, queries + q0 * D, 0.0f, sims.data());
        else
          gemm(false, true, static_cast<int>(qb), static_cast<int>(nb), D, 1.0f, queries + q0 * D, D, items + i0 * D,
               D, 0.0f, sims.data(), static_cast<int>(nb));
        for (int64_t q = 0; q < qb; ++q) {
          TopK& top = mine[static_cast<size_t>(q)];
          const int32_t skip = exclude.empty() ? -1 : exclude[static_cast<size_t>(q0 + q)];
          const float* row = sims.data() + q * nb;
          float threshold = top.threshold();
          for (int64_t j0 = 0; j0 < nb; j0 += kScanChunk) {
            const int64_t j1 = std::min(nb, j0 + kScanChunk);
            // Once the heap is full almost no chunk holds a candidate: one vectorisable pass
            // says so. !(s < threshold) holds for s >= threshold and for NaN, exactly the
            // values the loop below offers, so skipping a chunk changes nothing.
            int any = 0;
            for (int64_t j = j0; j < j1; ++j) any |= static_cast<int>(!(row[j] < threshold));
            if (!any) continue;
            for (int64_t j = j0; j < j1; ++j) {
              const float s = row[j];
              if (s < threshold) continue;  // false for NaN: those take the slow path
              const auto item = static_cast<int32_t>(i0 + j);
              if (item == skip) continue;
              top.offer(Candidate{std::isnan(s) ? -std::numeric_limits<float>::infinity() : s, s, item});
              threshold = top.threshold();
            }
          }
        }
      }
    }
    for (int64_t q = 0; q < qb; ++q) {
      merged.clear();
      for (const std::vector<TopK>& t : partial)
        merged.insert(merged.end(), t[static_cast<size_t>(q)].items().begin(), t[static_cast<size_t>(q)].items().end());
      const size_t kept = std::min(merged.size(), static_cast<size_t>(k));
      std::partial_sort(merged.begin(), merged.begin() + static_cast<std::ptrdiff_t>(kept), merged.end(), ranks_before);
      int32_t* oi = out_items + (q0 + q) * k;
      float* os = out_sims + (q0 + q) * k;
      for (size_t r = 0; r < static_cast<size_t>(k); ++r) {
        oi[r] = r < kept ? merged[r].item : -1;
        os[r] = r < kept ? merged[r].sim : -std::numeric_limits<float>::infinity();
      }
    }
  }
}

}  // namespace mg
