// Private to kernels/conv1d_cudnn.cpp: the few element-wise kernels cuDNN's legacy API has no call
// for (kernels/conv1d_cudnn_kernels.cu). Every function enqueues on `stream`, never synchronises,
// checks its launch, and is a no-op for zero elements.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace mg::detail {

// Asymmetric padding, forward: cuDNN computed the symmetric-padding output full [rows, Tfull];
// y [rows, Tout] = full[:, offset : offset + Tout] + bias[r % C] (rows = B * C).
void conv_slice_bias_cuda(const float* full, const float* bias, float* y, int64_t rows, int C, int Tfull,
                          int Tout, int offset, cudaStream_t stream);
// bf16 (kernels/bf16_cpu.h): cuDNN's output is bf16, widened before the float32 bias is added.
void conv_slice_bias_cuda(const __nv_bfloat16* full, const float* bias, float* y, int64_t rows, int C, int Tfull,
                          int Tout, int offset, cudaStream_t stream);

// Its adjoint for the backward: full [rows, Tfull] = dy placed at columns [offset, offset + Tout),
// zeros in the columns the forward sliced off.
void conv_pad_grad_cuda(const float* dy, float* full, int64_t rows, int Tout, int Tfull, int offset,
                        cudaStream_t stream);
// bf16: dy rounded to bf16 on the way (symmetric shapes too: Tfull = Tout, offset 0).
void conv_pad_grad_cuda(const float* dy, __nv_bfloat16* full, int64_t rows, int Tout, int Tfull, int offset,
                        cudaStream_t stream);

}  // namespace mg::detail
