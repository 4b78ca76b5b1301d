// The CUDA twins of kernels/*_cpu.h that are our own kernels (conv goes through cuDNN in
// kernels/conv1d_cudnn.h, the linear layer's GEMMs through cuBLAS in kernels/linear_cublas.h).
// Every function enqueues on `stream`, never synchronises, checks its launches, and takes
// the same pointers and sizes as its CPU twin (device pointers here). Sizes need not be
// multiples of any block size; every index is guarded.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/batchnorm_cpu.h"
#include "kernels/contrastive_loss_cpu.h"
#include "kernels/mining_cpu.h"
#include "kernels/optim_cpu.h"
#include "kernels/reduce_cpu.h"
#include "kernels/triplet_loss_cpu.h"

namespace mg {

// ---- fill_cuda.cu ----
void fill_cuda(float* p, int64_t n, float value, cudaStream_t stream);
// p[i] = lo + (hi - lo) * philox_uniform(seed, stream_id, i): bit-identical to the CPU.
void fill_uniform_cuda(float* p, int64_t n, float lo, float hi, uint64_t seed, uint64_t stream_id,
                       cudaStream_t stream);

// ---- activation_cuda.cu ----
void relu_forward_cuda(const float* x, float* y, int64_t n, cudaStream_t stream);               // y may alias x
void relu_backward_cuda(const float* dy, const float* y, float* dx, int64_t n, cudaStream_t stream);  // dx may alias dy

// ---- pool_cuda.cu ----
// Max-pool 1d, window = stride, floor mode (kernels/pool_cpu.h): x [rows, Tin] -> y [rows,
// Tin / window]; dx [rows, Tin] overwritten, zero on the dropped tail. Bit-identical to the
// CPU, ties (the first maximum wins) and NaN (the first NaN wins) included. invalid_argument
// for rows < 0, Tin < 0 or window < 1.
void maxpool1d_forward_cuda(const float* x, float* y, int64_t rows, int Tin, int window, cudaStream_t stream);
void maxpool1d_backward_cuda(const float* dy, const float* x, float* dx, int64_t rows, int Tin, int window,
                             cudaStream_t stream);

// ---- reduce_cuda.cu ----
// Reductions over time write through RowOut (kernels/reduce_cpu.h). max: bit-identical to the
// CPU (a selection); mean: bit-identical for T <= 64, else a few ulps of double apart; l2: the
// norm summed in another order (a few ulps of double), so forward and backward may differ by
// one float rounding. Backward dx must not alias x.
void mean_time_forward_cuda(const float* x, float* y, int64_t rows, int Tn, const RowOut& out, cudaStream_t stream);
void mean_time_backward_cuda(const float* dy, float* dx, int64_t rows, int Tn, const RowOut& out, bool accumulate,
                             cudaStream_t stream);
void max_time_forward_cuda(const float* x, float* y, int64_t rows, int Tn, const RowOut& out, cudaStream_t stream);
void max_time_backward_cuda(const float* dy, const float* x, float* dx, int64_t rows, int Tn, const RowOut& out,
                            bool accumulate, cudaStream_t stream);
void l2_time_forward_cuda(const float* x, float* y, int64_t rows, int Tn, const RowOut& out, cudaStream_t stream);
void l2_time_backward_cuda(const float* dy, const float* x, float* dx, int64_t rows, int Tn, const RowOut& out,
                           bool accumulate, cudaStream_t stream);
void l2norm_forward_cuda(const float* x, float* y, int B, int E, double eps, cudaStream_t stream);
void l2norm_backward_cuda(const float* dy, const float* x, const float* y, float* dx, int B, int E, double eps,
                          cudaStream_t stream);

// ---- dropout_cuda.cu ----
// rng: device uint64 [2] = {seed, stream}, read by the kernel (capturable). Bit-identical to
// dropout_forward_cpu / dropout_backward_cpu.
void dropout_forward_cuda(const float* x, float* y, float* mask, int64_t n, double p, const uint64_t* rng,
                          cudaStream_t stream);
void dropout_backward_cuda(const float* dy, const float* mask, float* dx, int64_t n, cudaStream_t stream);

// ---- band_norm_cuda.cu ----
// x, y [B, C, T] -> (x - mean[c]) / std[c] (kernels/band_norm_cpu.h); bit-identical to the CPU.
void band_norm_forward_cuda(const float* x, const float* mean, const float* std, float* y, int64_t B, int C,
                            int64_t Tn, cudaStream_t stream);

// ---- batchnorm_cuda.cu ----
// kernels/batchnorm_cpu.h over x [B, D]: training (batch statistics, the running ones updated)
// or eval (the running statistics); the backward recomputes the batch statistics from x.
// Deterministic; within double rounding of the CPU, then one float rounding. dx may be null.
void batchnorm_forward_cuda(const float* x, const float* gamma, const float* beta, float* y, float* running_mean,
                            float* running_var, int B, int D, const BatchNormParams& p, bool training,
                            cudaStream_t stream);
void batchnorm_backward_cuda(const float* dy, const float* x, const float* gamma, float* dx, float* dgamma,
                             float* dbeta, int B, int D, const BatchNormParams& p, cudaStream_t stream);

// ---- linear_cuda.cu (the GEMMs are cuBLAS calls in the backend) ----
// y [B, E] = bias broadcast over rows (before the GEMM accumulates x w^T into it).
void bias_broadcast_cuda(const float* b, float* y, int B, int E, cudaStream_t stream);
// db [E] += column sums of dy [B, E], summed in a fixed order (deterministic).
void bias_grad_cuda(const float* dy, float* db, int B, int E, cudaStream_t stream);

// ---- triplet_loss_cuda.cu ----
// One fused kernel: loss, active count and dL/demb. stats [2] = {mean loss, active};
// demb [N, E] overwritten. Deterministic: rows shared between triplets are accumulated
// in triplet order, never with atomics.
void triplet_loss_cuda(const float* emb, const int32_t* triplets, int n_triplets, int N, int E,
                       const TripletLossParams& p, float* stats, float* demb, cudaStream_t stream);

// ---- contrastive_loss_cuda.cu ----
// The supervised contrastive loss (kernels/contrastive_loss_cpu.h): emb [N, E], hops [N, N]
// uint8 -> stats [2] = {mean loss, valid rows}, demb [N, E] overwritten (null: loss only).
// Similarities bit-identical to the CPU (mining_dot's order); the exponentials are the
// device's, so loss and gradient agree with the CPU to double rounding, then one float
// rounding. workspace: contrastive_workspace_bytes(N) bytes of device memory. N <= 2^16.
void contrastive_loss_cuda(const float* emb, const uint8_t* hops, int N, int E, const ContrastiveLossParams& p,
                           float* stats, float* demb, void* workspace, cudaStream_t stream);

// ---- mining_cuda.cu ----
// In-batch mining (kernels/mining_cpu.h): emb [2B, E], hops [2B, 2B] uint8 -> triplets [B, 3]
// (invalid rows (-1, -1, -1)), counts [2] = {valid, candidates} as floats. Bit-identical to the
// CPU (the same dot-product order). Zeroes counts with a memset on the stream; B <= 2896.
void mine_triplets_cuda(const float* emb, const uint8_t* hops, int B, int E, const MiningParams& p, int32_t* triplets,
                        float* counts, cudaStream_t stream);

// ---- optim_cuda.cu ----
// scalars [2] = {lr, step} in device memory (so a captured graph reads each replay's values).
void adam_step_cuda(float* p, const float* g, float* m, float* v, int64_t n, const AdamParams& a,
                    const double* scalars, cudaStream_t stream);
// Global norm with a fixed two-level reduction (deterministic), then the scale when
// max_norm > 0 and norm > max_norm (clip_grad_norm_'s rule). `partials` is scratch of
// global_norm_partials_size(n) doubles owned by the caller.
int64_t global_norm_partials_size(int64_t n);
void clip_grad_norm_cuda(float* g, int64_t n, double max_norm, float* norm_out, double* partials,
                         cudaStream_t stream);

// ---- topk_cuda.cu ----
// Exact top-k selection for the backend's topk_cosine (its cuBLAS product gives the
// similarities). Keys are uint64 whose unsigned order is the ranking order (descending
// similarity, then lower item; NaN as -inf); key 0 = no candidate. Every selection writes, per
// row and per tile of kTopkTile inputs, that tile's best k keys in descending order at
// out[row * ld_out + tile * k ...]. 1 <= k <= kTopkTile / 2, rows <= 65535.
constexpr int kTopkTile = 2048;
int64_t topk_tiles(int64_t n);  // tiles of n inputs
// sims [rows, n] (row stride n) of items item0 .. item0 + n - 1; exclude: null or [rows] items
// to leave out (-1 none).
void topk_select_sims_cuda(const float* sims, int64_t rows, int64_t n, int64_t item0, const int32_t* exclude, int k,
                           uint64_t* out, int64_t ld_out, cudaStream_t stream);
// keys [rows, m] (row stride ld_in) -> topk_tiles(m) runs of k keys per row. out must not alias in.
void topk_select_keys_cuda(const uint64_t* in, int64_t ld_in, int64_t rows, int64_t m, int k, uint64_t* out,
                           int64_t ld_out, cudaStream_t stream);
// keys [rows, k] (row stride ld) -> out_items [rows, k] (-1 for key 0), out_sims [rows, k] (-inf).
void topk_decode_cuda(const uint64_t* keys, int64_t ld, int64_t rows, int k, int32_t* out_items, float* out_sims,
                      cudaStream_t stream);

}  // namespace mg
