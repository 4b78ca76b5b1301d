// In-batch negative mining: per anchor, a negative chosen from the batch by embedding distance,
// among the rows the preference graph says are far from the anchor.
//
// The batch. emb [N, E], N = 2B, unit rows: rows 0..B-1 are the anchors, row B + i is the
// positive of anchor i (drawn by the data pipeline within pos_hops of it). hops [N, N] uint8,
// row-major: hops[i * N + j] is the hop distance from the item of row i to the item of row j, as
// graph::TripletTables::batch_distance_matrix gives it (0 on the diagonal and between two rows of
// the same item, the exact distance below neg_hops, neg_hops for "far or unreachable"; any value
// >= neg_hops, 255 included, reads as far). Only the anchor rows 0..B-1 of hops are read.
//
// Candidates. For anchor i every row j != i with hops[i][j] >= neg_hops: the offline sampler's
// rule for negatives (graph/triplet_tables.h: distance >= neg_hops or unreachable), so both
// mining modes draw negatives from the same set. The anchor's own item (hops 0) and its positive
// (1..pos_hops < neg_hops) never qualify; anchors and positives of other pairs both can.
//
// Distance: the loss's, d(a, x) = sqrt(max(2 (1 - a.x), eps)) (kernels/triplet_loss_cpu.h).
//
// The positive stays the given row B + i in both modes. (pytorch-metric-learning's
// BatchHardMiner takes the hardest positive of the batch instead; here the positive is the one
// the pipeline drew from the graph, and other rows of a random batch are rarely within pos_hops
// of the anchor, so the hardest positive would almost always be that row anyway.)
//
//   BatchHard: the candidate with the smallest d(a, n) (BatchHardMiner's hardest negative).
//   SemiHard:  among candidates with d(a, p) < d(a, n) <= d(a, p) + margin (TripletMarginMiner
//              type "semihard"), the one with the smallest d(a, n). pml returns every such
//              triplet; a fixed-size table keeps one per anchor, the hardest of the band.
//              An anchor with no candidate in the band gets no triplet, as in pml: falling back
//              to a hard negative (d(a, n) <= d(a, p)) would bring back the collapse early in
//              training that semi-hard mining exists to avoid (FaceNet, section 3.2).
//
// Ties: the lowest row index wins among equal distances (the minimum of (d, j) pairs).
//
// Output. triplets [B, 3] int32: row i = (i, B + i, n) for an anchor with a negative, else
// (-1, -1, -1), an invalid row that the fused loss skips (it averages over valid rows only).
// Counts: valid = rows with a negative; candidates = (anchor, row) pairs that passed the graph
// mask, summed over anchors (how much choice the mask leaves).
//
// Summation order. Every dot product is summed in double in one fixed order that both backends
// share: 32 interleaved partial sums (element e goes to sum e mod 32, in increasing e), combined
// by the butterfly of a warp reduction (kernels/cuda_launch.cuh's warp_sum). Products of floats
// are exact in double, so FMA contraction changes nothing, and sqrt is correctly rounded: the CPU
// and the GPU compute bit-identical distances and so mine identical tables, ties included.
#pragma once
#include <cstdint>

namespace mg {

enum class NegativeMining { BatchHard, SemiHard };

struct MiningParams {
  NegativeMining rule = NegativeMining::BatchHard;
  int neg_hops = 3;     // candidates: hops >= neg_hops; 1..255
  double margin = 0.2;  // semi-hard band width: the loss's margin
  double eps = 1e-6;    // the loss's clamp of the squared distance
};

// The most anchors a backend mines per batch: the counts travel to the host as floats, exact
// only below 2^24, and 2 * 2896^2 < 2^24 <= 2 * 2897^2.
constexpr int kMaxMiningAnchors = 2896;

struct MiningCounts {
  int64_t valid = 0;       // anchors with a negative (rows not (-1, -1, -1))
  int64_t candidates = 0;  // (anchor, row) pairs passing the graph mask
};

// The shared summation order above (exposed for the tests' and the CUDA kernel's reference).
template <class T>
double mining_dot(const T* x, const T* y, int E);

// emb [2B, E], hops [2B, 2B] -> triplets [B, 3]. Throws std::invalid_argument for B < 1,
// E < 1, or neg_hops outside 1..255.
template <class T>
MiningCounts mine_triplets_cpu(const T* emb, const uint8_t* hops, int B, int E, const MiningParams& p,
                               int32_t* triplets);

}  // namespace mg
