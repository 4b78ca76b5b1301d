// Triplet margin loss with cosine distance on unit vectors, fused with its gradients.
//   d(x, y) = sqrt(max(2 (1 - x.y), eps))
//   l_i = max(d(a, p) - d(a, n) + margin, 0),   loss = mean of l_i over the valid triplets
// With swap (torch.nn.TripletMarginWithDistanceLoss(swap=True)) the negative distance is
// min(d(a, n), d(p, n)); the swapped pair is used only when d(p, n) < d(a, n) strictly (on
// an exact tie PyTorch splits the gradient between both pairs; we give it to (a, n)).
// Gradient conventions follow PyTorch's: clamp_min passes the gradient when its input is
// >= the bound (so the hinge passes at exactly 0 and the eps clamp at exactly eps).
//
// Embeddings are rows of one matrix emb [N, E]; triplets [n_triplets, 3] hold row indices
// (anchor, positive, negative), so offline and in-batch mining share this kernel. A row
// (-1, -1, -1) is invalid: in-batch mining found no negative for that anchor
// (kernels/mining_cpu.h). It is skipped and the mean runs over the valid rows only; with none,
// the loss is 0 and the gradient zero. Any other index outside [0, N) is an error.
#pragma once
#include <cstdint>

namespace mg {

struct TripletLossParams {
  double margin = 0.2;
  bool swap = false;
  double eps = 1e-6;  // clamp of the squared distance 2 (1 - x.y)
};

struct TripletLossResult {
  double loss = 0;     // mean over valid triplets
  int64_t active = 0;  // triplets with hinge >= 0: those that carry gradient
  int64_t valid = 0;   // rows that are not (-1, -1, -1)
};

// demb [N, E] is overwritten with dloss/demb (zero rows for unused embeddings); may be null.
template <class T>
TripletLossResult triplet_loss_cpu(const T* emb, const int32_t* triplets, int n_triplets, int N,
                                   int E, const TripletLossParams& p, T* demb);

}  // namespace mg
