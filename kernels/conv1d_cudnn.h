// Every cuDNN call of melgraph lives behind this wrapper (legacy API; a graph-API version must
// be able to replace this file without touching the backend). A 1-D conv over time is a 2-D
// conv with H = 1: x [B, Cin, 1, Tin], w [Cout, Cin, 1, K], padding (0, pad) — asymmetric
// "same" padding (even K) is handled by the caller's choice below.
//
// Algorithms are chosen once per shape and cached: by cudnnFind*AlgorithmEx (measured; status,
// workspace size and math type checked), or in deterministic mode by cudnnGet*Algorithm_v7
// (cuDNN's ranking, no timing, so two runs pick the same algorithm) keeping only those marked
// CUDNN_DETERMINISTIC. One workspace, grown on the first call of a new shape, is owned here.
// Max-pool is our own kernel (kernels/pool_cuda.cu): cuDNN documents no rule for ties.
#pragma once
#include <cuda_runtime.h>

#include <memory>

#include "kernels/conv1d_cpu.h"
#include "kernels/precision.h"

namespace mg {

struct Conv1dCudnnOptions {
  bool deterministic = false;  // only deterministic algorithms
  bool tf32 = false;           // allow TF32 tensor-core math in convolutions
};

class Conv1dCudnn {
 public:
  Conv1dCudnn(cudaStream_t stream, const Conv1dCudnnOptions& opts);
  ~Conv1dCudnn();
  Conv1dCudnn(const Conv1dCudnn&) = delete;
  Conv1dCudnn& operator=(const Conv1dCudnn&) = delete;

  // Same contracts as conv1d_forward_cpu / conv1d_backward_cpu (kernels/conv1d_cpu.h):
  // y overwritten; dx overwritten (skipped when null); dw, db accumulated (+=). bf16: as
  // kernels/bf16_cpu.h's conv1d_*_bf16_cpu.
  void conv1d_forward(const float* x, const float* w, const float* b, float* y, const Conv1dDims& d, Precision prec);
  void conv1d_backward(const float* dy, const float* x, const float* w, float* dx, float* dw, float* db,
                       const Conv1dDims& d, Precision prec);
  // Called before a graph capture begins: algorithm searches synchronise, so they must all
  // have happened. True once any convolution has run eagerly; the caller runs what it captures
  // eagerly first (TrainStep runs each phase once before capturing it), and a shape met first
  // inside a capture throws, naming it, rather than searching.
  bool ready_for_capture() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mg
