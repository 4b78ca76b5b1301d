// The CUDA backend: the whole Backend interface on one GPU and one stream.
// Our kernels (kernels/*_cuda.cu), cuDNN for conv (kernels/conv1d_cudnn.h), cuBLAS for
// the linear layer, cuFFT for the mel front end. No host synchronisation inside a training
// step; capture() records it as a CUDA Graph.
#pragma once
#include <memory>
#include <string>

#include "engine/backend.h"

namespace mg {

struct CudaOptions {
  int device = 0;
  bool deterministic = false;  // deterministic cuDNN conv algorithms (our kernels always are)
  bool tf32 = false;           // TF32 tensor-core math in cuBLAS and cuDNN (off: fp32 parity)
};

// Number of usable CUDA devices; 0 with the reason in *why (no driver, no device, ...).
int cuda_device_count(std::string* why);

// Throws CudaError when the device cannot be used.
std::unique_ptr<Backend> make_cuda_backend(const CudaOptions& opts);

}  // namespace mg
