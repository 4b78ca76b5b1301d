// bf16 mixed precision on the GPU: the conversions around the cuDNN and cuBLAS calls that take
// bf16 operands (kernels/conv1d_cudnn.cpp, kernels/linear_cublas.cpp). kernels/bf16_cpu.h is
// the oracle and says where each op rounds. Every function enqueues on `stream`, checks its
// launch, never synchronises, and does nothing for n = 0.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace mg {

// y[i] = x[i] rounded to nearest bf16, ties to even (round_bf16).
void to_bf16_cuda(const float* x, __nv_bfloat16* y, int64_t n, cudaStream_t stream);
// y[i] = x[i] (accumulate: y[i] += x[i]), widened exactly to float32.
void from_bf16_cuda(const __nv_bfloat16* x, float* y, int64_t n, bool accumulate, cudaStream_t stream);

}  // namespace mg
