// The linear layer on the GPU: its two GEMMs through cuBLAS, the bias through our kernels
// (linear_cuda.cu). The CUDA twin of kernels/linear_cpu.h, same contracts: y overwritten; dx
// overwritten (skipped when null); dw and db accumulated (+=).
//
// cuBLAS is column-major, where a row-major [R, K] matrix reads as its transpose [K, R]. The
// handle must be bound to `stream` (cublasSetStream) and keep its own workspace
// (cublasSetWorkspace), so that a captured GEMM never allocates; its math mode decides FP32 or
// TF32.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "kernels/grow_buffer_cuda.h"

namespace mg {

// y [B, E] = x [B, C] w^T + b, w [E, C].
void linear_forward_cublas(cublasHandle_t handle, const float* x, const float* w, const float* b, float* y, int B,
                           int C, int E, cudaStream_t stream);
// dx [B, C] = dy w; dw [E, C] += dy^T x; db [E] += column sums of dy.
void linear_backward_cublas(cublasHandle_t handle, const float* dy, const float* x, const float* w, float* dx,
                            float* dw, float* db, int B, int C, int E, cudaStream_t stream);

// bf16 (kernels/bf16_cpu.h): x, w and dy rounded to bf16 into `staging`, each GEMM summing in
// float32 (CUBLAS_COMPUTE_32F) onto float32 outputs; db from the float32 dy. The staging
// grows on a call that needs more (never inside a capture: it throws there).
struct LinearBf16Staging {
  GrowBuffer x, w, dy;
};
void linear_forward_cublas_bf16(cublasHandle_t handle, const float* x, const float* w, const float* b, float* y, int B,
                                int C, int E, LinearBf16Staging& staging, cudaStream_t stream);
void linear_backward_cublas_bf16(cublasHandle_t handle, const float* dy, const float* x, const float* w, float* dx,
                                 float* dw, float* db, int B, int C, int E, LinearBf16Staging& staging,
                                 cudaStream_t stream);

}  // namespace mg
