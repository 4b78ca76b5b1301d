// The CPU's exact top-k by cosine similarity (BLAS products, a bounded heap per query): the
// oracle of the CUDA backend's topk_cosine (kernels/topk_cuda.cu + cuBLAS), and the search of
// validation and `melgraph query` on the CPU.
#pragma once
#include <cstdint>
#include <span>

namespace mg {

// Exact top-k by cosine similarity for unit-norm rows (the similarity is the dot product; rows
// are not re-normalised). queries: [Q, D], items: [N, D], both row-major float32, N < 2^31.
// exclude: empty, or [Q] item indices to leave out per query (its own index; -1 for none).
// Writes out_items [Q, k] and out_sims [Q, k], best first; rows with fewer than k candidates
// are padded with item -1 and similarity -inf.
//
// Order: descending similarity, ties broken by the lower item index. A NaN similarity ranks
// below every number. The similarities are float32 BLAS dot products over fixed blocks of
// items (independent of the thread count), so results are the same for any number of threads.
// A query block of one row uses sgemv, larger ones sgemm: a query's similarities may differ in
// the last bit between a batch and a lone query, which can swap items within a rounding error.
// Parallel over item blocks with OpenMP, calling BLAS inside: set OpenBLAS to one thread first
// (blas_set_threads(1), as the CPU backend does) or the two thread pools oversubscribe the cores.
void topk_cosine(const float* queries, int64_t Q, const float* items, int64_t N, int D, int k,
                 std::span<const int32_t> exclude, int32_t* out_items, float* out_sims);

}  // namespace mg
