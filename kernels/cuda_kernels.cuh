// The CUDA twins of kernels/*_cpu.h that are our own kernels (conv and pool go through
// cuDNN in engine/cudnn_ops.h, the linear layer's GEMMs through cuBLAS in the backend).
// Every function enqueues on `stream`, never synchronises, checks its launches, and takes
// the same pointers and sizes as its CPU twin (device pointers here). Sizes need not be
// multiples of any block size; every index is guarded.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/optim_cpu.h"
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

// ---- reduce_cuda.cu ----
void mean_time_forward_cuda(const float* x, float* y, int64_t rows, int Tn, cudaStream_t stream);
void mean_time_backward_cuda(const float* dy, float* dx, int64_t rows, int Tn, cudaStream_t stream);
void l2norm_forward_cuda(const float* x, float* y, int B, int E, double eps, cudaStream_t stream);
void l2norm_backward_cuda(const float* dy, const float* x, const float* y, float* dx, int B, int E, double eps,
                          cudaStream_t stream);

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

}  // namespace mg
