#include "kernels/linear_cublas.h"

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

}  // namespace mg
