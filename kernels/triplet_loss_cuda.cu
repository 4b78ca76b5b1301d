// The fused triplet loss on the GPU: one kernel, one thread block.
//
// Why one block: rows are shared between triplets (in-batch mining reuses an embedding as
// anchor of one triplet and negative of another), the gradient of a row must be summed in
// triplet order for determinism, and atomics are out. A single block can order its two phases
// with __syncthreads and needs no global scratch (so nothing to allocate, graph-capture safe).
// The batch is at most a few hundred rows (n_triplets <= max_batch), so one SM is enough:
// the work is O(n_triplets * E) for the dots and the updates plus O(N * n_triplets / 32) warp
// steps for the row scans (64 triplets, 192 rows, E = 128: a few microseconds). Triplets
// are processed in chunks of kChunk so any count works with fixed shared memory; beyond
// tens of thousands of triplets a multi-block design (per-row triplet lists) would pay off.
//
// Per chunk:
//   phase 1: warp w takes triplets w, w + nwarps, ...; lanes stride over E accumulating the
//            dots a.p, a.n (and p.n with swap) in double, a butterfly reduction gives every
//            lane the same bits, and the distances, hinge and axpy coefficients follow
//            triplet_loss_cpu's formulas exactly (eps clamp with >=, strict swap, hinge >= 0
//            active). Lane 0 stores them in shared memory.
//   phase 2: warp w owns rows w, w + nwarps, ... of demb for the whole kernel. For each of its
//            rows it finds, 32 triplets per ballot, the active triplets that touch the row and
//            applies them in triplet order, each term as the CPU's axpy does: out = float(out +
//            coef * x) in double with the product rounded first (no FMA), in the CPU's term order
//            (a += ca p, p += ca a, first += cn n, n += cn first), so a row that plays several
//            roles, even within one triplet, sees the CPU's sequence of roundings.
//   Thread 0 adds the chunk's hinge terms to the loss in triplet order (double).
// The only difference from the CPU is the summation order inside the three dot products
// (lane-strided + butterfly versus sequential): ~1e-16 relative in double.
//
// Unmined rows (-1, -1, -1) (kernels/mining_cpu.h) are skipped, and the mean runs over the
// other rows: a first pass counts them (an integer count in shared memory: order-free), so the
// scale 1 / valid is known before phase 1. With no valid row: loss 0, zero gradient.
//
// Bad rows: the CPU throws std::out_of_range; a kernel cannot, and the host cannot read the
// device table without a synchronisation. A triplet with a row outside [0, N) (other than an
// unmined row) is skipped and the kernel reports stats = {NaN, -1}; callers that read the stats
// (the trainer does, after each step) must treat active < 0 as "the triplet table refers to rows
// outside the batch".
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/cuda_check.h"
#include "kernels/cuda_kernels.cuh"
#include "kernels/cuda_launch.cuh"

namespace mg {

namespace {

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;
constexpr int kChunk = 512;  // triplets per pass; shared memory: 40 bytes each (20 KiB)

constexpr int kActive = 1;   // hinge >= 0: carries loss and gradient
constexpr int kSwapped = 2;  // the negative pair is (p, n)
constexpr int kInvalid = 4;  // a row index outside [0, N)

__device__ __forceinline__ bool unmined(int ia, int ip, int in) { return ia == -1 && ip == -1 && in == -1; }

struct Dist {
  double d;
  double gcoef;  // dd/dx = gcoef * y
};

// triplet_loss_cpu's cos_dist from the dot product: s = 2 (1 - x.y), d = sqrt(max(s, eps)),
// the clamp passing the gradient when s >= eps.
__device__ __forceinline__ Dist cos_dist(double dot, double eps) {
  const double s = 2.0 * (1.0 - dot);
  if (s >= eps) {
    const double d = sqrt(s);
    return {d, -1.0 / d};
  }
  return {sqrt(eps), 0.0};
}

// One term of the CPU's axpy: out = T(out + a * x), the product rounded before the sum.
__device__ __forceinline__ float axpy1(float out, double a, float x) {
  return static_cast<float>(__dadd_rn(static_cast<double>(out), __dmul_rn(a, static_cast<double>(x))));
}

__global__ void __launch_bounds__(kThreads)
    triplet_loss_kernel(const float* __restrict__ emb, const int32_t* __restrict__ triplets, int n_triplets, int N,
                        int E, double margin, bool swap, double eps, float* __restrict__ stats,
                        float* __restrict__ demb) {
  __shared__ int4 tri[kChunk];  // anchor, positive, negative, flags
  __shared__ double coef_ap[kChunk];
  __shared__ double coef_neg[kChunk];
  __shared__ double hinge[kChunk];
  __shared__ int bad;
  __shared__ int valid;

  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;

  if (threadIdx.x == 0) {
    bad = 0;
    valid = 0;
  }
  __syncthreads();
  {
    int mine = 0;
    for (int64_t t = threadIdx.x; t < n_triplets; t += blockDim.x)
      if (!unmined(triplets[3 * t + 0], triplets[3 * t + 1], triplets[3 * t + 2])) ++mine;
    if (mine) atomicAdd(&valid, mine);
  }
  // Overwrite contract: rows no triplet touches stay 0. Phase 2 reads these after the first
  // barrier below, which makes the zeros visible to every thread of the block.
  if (demb) {
    const int64_t total = static_cast<int64_t>(N) * E;
    for (int64_t i = threadIdx.x; i < total; i += blockDim.x) demb[i] = 0.0f;
  }
  __syncthreads();
  const double scale = valid > 0 ? 1.0 / static_cast<double>(valid) : 0.0;

  double loss = 0;     // thread 0's
  long long active = 0;  // thread 0's
  for (int64_t c0 = 0; c0 < n_triplets; c0 += kChunk) {
    const int cnt = n_triplets - c0 < kChunk ? static_cast<int>(n_triplets - c0) : kChunk;

    // ---- phase 1: per-triplet distances and coefficients ----
    for (int j = warp; j < cnt; j += kWarps) {
      const int64_t t = c0 + j;
      const int ia = triplets[3 * t + 0], ip = triplets[3 * t + 1], in = triplets[3 * t + 2];
      int flags = 0;
      double ca = 0, cn = 0, h = 0;
      if (unmined(ia, ip, in)) {
        // skipped: no loss, no gradient (flags 0)
      } else if (ia < 0 || ia >= N || ip < 0 || ip >= N || in < 0 || in >= N) {
        flags = kInvalid;  // warp-uniform: every lane read the same indices
      } else {
        const float* a = emb + static_cast<int64_t>(ia) * E;
        const float* pp = emb + static_cast<int64_t>(ip) * E;
        const float* n = emb + static_cast<int64_t>(in) * E;
        double ap = 0, an = 0, pn = 0;
        // Float products are exact in double, so FMA contraction cannot change these sums.
        for (int e = lane; e < E; e += 32) {
          const double xa = a[e], xp = pp[e], xn = n[e];
          ap += xa * xp;
          an += xa * xn;
          if (swap) pn += xp * xn;
        }
        ap = warp_sum(ap);
        an = warp_sum(an);
        if (swap) pn = warp_sum(pn);  // `swap` is a kernel argument: uniform
        const Dist dap = cos_dist(ap, eps);
        const Dist dan = cos_dist(an, eps);
        Dist dneg = dan;
        bool swapped = false;
        if (swap) {
          const Dist dpn = cos_dist(pn, eps);
          if (dpn.d < dan.d) {  // strict: on a tie the gradient goes to (a, n)
            dneg = dpn;
            swapped = true;
          }
        }
        h = dap.d - dneg.d + margin;
        if (!(h < 0)) {  // clamp_min(h, 0) passes the gradient at h == 0 (and a NaN stays in)
          flags = kActive | (swapped ? kSwapped : 0);
          ca = scale * dap.gcoef;
          cn = -scale * dneg.gcoef;
        }
      }
      if (lane == 0) {
        tri[j] = make_int4(ia, ip, in, flags);
        coef_ap[j] = ca;
        coef_neg[j] = cn;
        hinge[j] = h;
        if (flags & kInvalid) atomicOr(&bad, 1);  // an integer flag: order-independent
      }
    }
    __syncthreads();

    // ---- phase 2: each warp updates the rows it owns, triplets in order ----
    if (demb) {
      for (int r = warp; r < N; r += kWarps) {
        float* gr = demb + static_cast<int64_t>(r) * E;
        for (int g0 = 0; g0 < cnt; g0 += 32) {
          const int j = g0 + lane;
          bool hit = false;
          if (j < cnt) {
            const int4 q = tri[j];
            hit = (q.w & kActive) && (q.x == r || q.y == r || q.z == r);
          }
          unsigned mask = __ballot_sync(kFullWarpMask, hit);
          while (mask) {  // lowest lane first = triplet order
            const int k = __ffs(mask) - 1;
            mask &= mask - 1;
            const int4 q = tri[g0 + k];
            const double ca = coef_ap[g0 + k];
            const double cn = coef_neg[g0 + k];
            const bool swapped = (q.w & kSwapped) != 0;
            const float* a = emb + static_cast<int64_t>(q.x) * E;
            const float* pp = emb + static_cast<int64_t>(q.y) * E;
            const float* n = emb + static_cast<int64_t>(q.z) * E;
            const float* first = swapped ? pp : a;
            const int ifirst = swapped ? q.y : q.x;
            for (int e = lane; e < E; e += 32) {
              float v = gr[e];
              if (q.x == r) v = axpy1(v, ca, pp[e]);      // + d(a, p) w.r.t. a
              if (q.y == r) v = axpy1(v, ca, a[e]);       // + d(a, p) w.r.t. p
              if (ifirst == r) v = axpy1(v, cn, n[e]);    // - d(neg pair) w.r.t. a (or p if swapped)
              if (q.z == r) v = axpy1(v, cn, first[e]);   // - d(neg pair) w.r.t. n
              gr[e] = v;
            }
          }
        }
      }
    }

    // After this warp's phase 2 so that no lane of warp 0 is missing from the ballots above.
    if (threadIdx.x == 0)
      for (int j = 0; j < cnt; ++j)
        if (tri[j].w & kActive) {
          loss += hinge[j];
          ++active;
        }
    __syncthreads();  // the next chunk overwrites the shared tables
  }

  if (threadIdx.x == 0) {
    if (bad) {
      stats[0] = nanf("");
      stats[1] = -1.0f;
    } else {
      stats[0] = static_cast<float>(loss * scale);
      stats[1] = static_cast<float>(active);
    }
  }
}

}  // namespace

void triplet_loss_cuda(const float* emb, const int32_t* triplets, int n_triplets, int N, int E,
                       const TripletLossParams& p, float* stats, float* demb, cudaStream_t stream) {
  // The checks the host can make without reading the device table (the CPU makes the same).
  if (n_triplets <= 0) throw std::invalid_argument("triplet_loss_cuda: no triplets");
  if (N <= 0)
    throw std::out_of_range("triplet_loss_cuda: " + std::to_string(n_triplets) +
                            " triplets over an empty batch (N = " + std::to_string(N) + ")");
  if (E < 0) throw std::invalid_argument("triplet_loss_cuda: negative embedding size " + std::to_string(E));
  triplet_loss_kernel<<<1, kThreads, 0, stream>>>(emb, triplets, n_triplets, N, E, p.margin, p.swap, p.eps, stats,
                                                  demb);
  MG_CUDA_CHECK_LAUNCH();
}

}  // namespace mg
