// Device memory that only grows, for the workspaces and staging buffers of library-backed ops
// (cuDNN's workspace, the bf16 operand copies). A replaced allocation is retired, not freed:
// CUDA graphs captured before the growth may still reference it. Growing allocates, which a
// stream capture forbids, so reserve() names the buffer and throws when it would grow while
// `stream` is being captured (run every shape eagerly once first).
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <string>
#include <vector>

#include "kernels/cuda_check.h"

namespace mg {

class GrowBuffer {
 public:
  GrowBuffer() = default;
  ~GrowBuffer() {
    for (void* p : retired_) (void)cudaFree(p);
    if (p_) (void)cudaFree(p_);
  }
  GrowBuffer(const GrowBuffer&) = delete;
  GrowBuffer& operator=(const GrowBuffer&) = delete;

  void* get() const { return p_; }
  float* floats() const { return static_cast<float*>(p_); }
  template <class T>
  T* as() const {
    return static_cast<T*>(p_);
  }
  size_t bytes() const { return bytes_; }

  void reserve(size_t bytes, cudaStream_t stream, const char* what) {
    if (bytes <= bytes_) return;
    throw_if_capturing(stream, std::string(what) + " must grow to " + std::to_string(bytes) +
                                   " bytes during a CUDA Graph capture, where allocating is not allowed; run "
                                   "every shape eagerly once before capturing");
    constexpr size_t kGranule = size_t{1} << 20;  // cudaMalloc rounds large blocks up anyway
    const size_t want = (bytes + kGranule - 1) / kGranule * kGranule;
    void* p = nullptr;
    MG_CUDA_CHECK(cudaMalloc(&p, want));
    if (p_) retired_.push_back(p_);
    p_ = p;
    bytes_ = want;
  }

 private:
  void* p_ = nullptr;
  size_t bytes_ = 0;
  std::vector<void*> retired_;
};

}  // namespace mg
