// Log-mel front end on the GPU, the twin of kernels/mel_cpu.h (same semantics, same output
// layout [B, n_mels, F]):
//   1. frame kernel: reflect padding + framing + periodic Hann window, written straight into
//      the cuFFT input buffer [B*F, n_fft];
//   2. cuFFT batched R2C (plan made once per (n_fft, B*F) and cached; the stream is set before
//      every exec; the work area belongs to this object);
//   3. one kernel fusing |X|^power, the sparse mel projection (the CPU's band-major CSR
//      filterbank, uploaded once) and log(mel + eps).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <memory>

#include "kernels/mel_cpu.h"

namespace mg {

class MelCuda {
 public:
  explicit MelCuda(const MelParams& p);
  ~MelCuda();
  MelCuda(const MelCuda&) = delete;
  MelCuda& operator=(const MelCuda&) = delete;

  // audio [B, S] device float -> out [B, n_mels, F] device float, on `stream`.
  void forward(const float* audio, float* out, int B, int64_t S, cudaStream_t stream);

  const MelParams& params() const { return p_; }

 private:
  struct Impl;
  MelParams p_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mg
