#include "kernels/linear_cublas.h"

#include "kernels/bf16_cuda.h"
#include "kernels/cuda_check.h"
#include "kernels/cuda_kernels.cuh"

namespace mg {

// y^T [E, B] = w [E, C] x^T [C, B], with w read as op_T of the stored (column-major) [C, E],
// accumulated onto the broadcast bias.
void linear_forward_cublas(cublasHandle_t handle, const float* x, const float* w, const float* b, float* y, int B,
                           int C, int E, cudaStream_t stream) {
  bias_broadcast_cuda(b, y, B, E, stream);
  const float one = 1.0f;
  MG_CUBLAS_CHECK(cublasSgemm(handle, CUBLAS_OP_T, CUBLAS_OP_N, E, B, C, &one, w, C, x, C, &one, y, E));
}

void linear_backward_cublas(cublasHandle_t handle, const float* dy, const float* x, const float* w, float* dx,
                            float* dw, float* db, int B, int C, int E, cudaStream_t stream) {
  const float one = 1.0f, zero = 0.0f;
  // dx^T [C, B] = w^T [C, E] dy^T [E, B]   (overwrite)
  if (dx) MG_CUBLAS_CHECK(cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, C, B, E, &one, w, C, dy, E, &zero, dx, C));
  // dw^T [C, E] += x^T [C, B] dy [B, E]    (accumulate)
  MG_CUBLAS_CHECK(cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_T, C, E, B, &one, x, C, dy, E, &one, dw, C));
  bias_grad_cuda(dy, db, B, E, stream);
}

namespace {

const __nv_bfloat16* staged(GrowBuffer& buf, const float* src, int64_t n, cudaStream_t stream, const char* what) {
  buf.reserve(static_cast<size_t>(n) * sizeof(__nv_bfloat16), stream, what);
  to_bf16_cuda(src, buf.as<__nv_bfloat16>(), n, stream);
  return buf.as<__nv_bfloat16>();
}

// C (float32) = alpha op(A) op(B) + beta C with bf16 A and B, summed in float32.
void gemm_bf16(cublasHandle_t handle, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
               const __nv_bfloat16* A, int lda, const __nv_bfloat16* B, int ldb, float beta, float* C, int ldc) {
  const float one = 1.0f;
  MG_CUBLAS_CHECK(cublasGemmEx(handle, ta, tb, m, n, k, &one, A, CUDA_R_16BF, lda, B, CUDA_R_16BF, ldb, &beta, C,
                               CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

}  // namespace

void linear_forward_cublas_bf16(cublasHandle_t handle, const float* x, const float* w, const float* b, float* y, int B,
                                int C, int E, LinearBf16Staging& staging, cudaStream_t stream) {
  const __nv_bfloat16* xb = staged(staging.x, x, int64_t{B} * C, stream, "linear: the bf16 input");
  const __nv_bfloat16* wb = staged(staging.w, w, int64_t{E} * C, stream, "linear: the bf16 weight");
  bias_broadcast_cuda(b, y, B, E, stream);
  gemm_bf16(handle, CUBLAS_OP_T, CUBLAS_OP_N, E, B, C, wb, C, xb, C, 1.0f, y, E);  // y^T [E, B] += w x^T
}

void linear_backward_cublas_bf16(cublasHandle_t handle, const float* dy, const float* x, const float* w, float* dx,
                                 float* dw, float* db, int B, int C, int E, LinearBf16Staging& staging,
                                 cudaStream_t stream) {
  const __nv_bfloat16* dyb = staged(staging.dy, dy, int64_t{B} * E, stream, "linear: the bf16 output gradient");
  const __nv_bfloat16* xb = staged(staging.x, x, int64_t{B} * C, stream, "linear: the bf16 input");
  const __nv_bfloat16* wb = staged(staging.w, w, int64_t{E} * C, stream, "linear: the bf16 weight");
  if (dx) gemm_bf16(handle, CUBLAS_OP_N, CUBLAS_OP_N, C, B, E, wb, C, dyb, E, 0.0f, dx, C);  // dx^T = w^T dy^T
  gemm_bf16(handle, CUBLAS_OP_N, CUBLAS_OP_T, C, E, B, xb, C, dyb, E, 1.0f, dw, C);          // dw^T += x^T dy
  bias_grad_cuda(dy, db, B, E, stream);
}

}  // namespace mg
