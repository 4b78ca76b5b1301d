// The backend interface: everything the model, optimizer and trainer need from a device.
// Model and trainer code is written once against it; the CPU backend (cpu_backend.cpp)
// is the numerical oracle and the CUDA backend mirrors it op for op.
//
// Conventions for every op (llm.c's):
//   - all pointers are device pointers of this backend, float32 unless stated;
//   - forward ops overwrite their output;
//   - backward ops OVERWRITE activation gradients (dx) and ACCUMULATE (+=) parameter
//     gradients (dw, db), so the caller zeroes the gradient buffer once per step;
//   - a null dx skips the input gradient (the first layer's input is data);
//   - ops are asynchronous on devices that can be; synchronize() waits, and host reads go
//     through to_host().
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "engine/tensor.h"
#include "kernels/conv1d_cpu.h"
#include "kernels/mel_cpu.h"
#include "kernels/optim_cpu.h"
#include "kernels/triplet_loss_cpu.h"

namespace mg {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;
  virtual std::string describe() const = 0;  // one line: device, threads / GPU name

  // ---- memory (bytes; allocations are 256-byte aligned) ----
  virtual void* alloc_bytes(size_t bytes) = 0;
  virtual void free_bytes(void* p) = 0;
  virtual void to_device(void* dst, const void* src_host, size_t bytes) = 0;
  virtual void to_host(void* dst_host, const void* src, size_t bytes) = 0;
  virtual void fill(float* p, int64_t n, float value) = 0;
  virtual void synchronize() = 0;

  // ---- random init: p[i] = lo + (hi - lo) * philox_uniform(seed, stream, i) ----
  virtual void fill_uniform(float* p, int64_t n, float lo, float hi, uint64_t seed, uint64_t stream) = 0;

  // ---- model ops (shapes as in the kernels/*_cpu.h headers) ----
  // audio [B, S] -> out [B, n_mels, 1 + S / hop]
  virtual void mel_forward(const float* audio, float* out, int B, int64_t S, const MelParams& p) = 0;
  virtual void conv1d_forward(const float* x, const float* w, const float* b, float* y, const Conv1dDims& d) = 0;
  virtual void conv1d_backward(const float* dy, const float* x, const float* w, float* dx, float* dw,
                               float* db, const Conv1dDims& d) = 0;
  virtual void relu_forward(const float* x, float* y, int64_t n) = 0;
  virtual void relu_backward(const float* dy, const float* y, float* dx, int64_t n) = 0;
  virtual void maxpool_forward(const float* x, float* y, int64_t rows, int Tin, int window) = 0;
  virtual void maxpool_backward(const float* dy, const float* x, float* dx, int64_t rows, int Tin, int window) = 0;
  virtual void mean_time_forward(const float* x, float* y, int64_t rows, int Tn) = 0;
  virtual void mean_time_backward(const float* dy, float* dx, int64_t rows, int Tn) = 0;
  virtual void linear_forward(const float* x, const float* w, const float* b, float* y, int B, int C, int E) = 0;
  virtual void linear_backward(const float* dy, const float* x, const float* w, float* dx, float* dw,
                               float* db, int B, int C, int E) = 0;
  virtual void l2norm_forward(const float* x, float* y, int B, int E, double eps) = 0;
  virtual void l2norm_backward(const float* dy, const float* x, const float* y, float* dx, int B, int E,
                               double eps) = 0;
  // Fused loss + gradient. triplets: device int32 [n_triplets, 3]. stats: device float [2] =
  // {mean loss, active triplets}. demb [N, E] overwritten.
  virtual void triplet_loss(const float* emb, const int32_t* triplets, int n_triplets, int N, int E,
                            const TripletLossParams& p, float* stats, float* demb) = 0;

  // ---- optimizer ops over flat buffers ----
  // The learning rate and the 1-based step count come from device memory, scalars [2] =
  // {lr, step} (double), so a captured step (see capture()) reads the values of each replay.
  // a.lr is ignored.
  virtual void adam_step(float* p, const float* g, float* m, float* v, int64_t n, const AdamParams& a,
                         const double* scalars) = 0;
  // norm_out: device float [1] = the norm before clipping. max_norm <= 0 only measures.
  virtual void clip_grad_norm(float* g, int64_t n, double max_norm, float* norm_out) = 0;

  // ---- capture and replay (CUDA Graphs) ----
  // Records the device work `work` enqueues, for replay without re-issuing it. Host code in
  // `work` runs once, at capture: everything that changes between replays must be read from
  // device memory (see adam_step's scalars). Backends without capture return null and the
  // caller runs `work` directly each time.
  class Captured {
   public:
    virtual ~Captured() = default;
    virtual void replay() = 0;
  };
  virtual std::unique_ptr<Captured> capture(const std::function<void()>& work) {
    (void)work;
    return nullptr;
  }

  template <class T>
  T* alloc(int64_t n) {
    return static_cast<T*>(alloc_bytes(static_cast<size_t>(n) * sizeof(T)));
  }
};

// threads <= 0: all cores (OpenMP's default).
std::unique_ptr<Backend> make_cpu_backend(int threads = 0);

}  // namespace mg
