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
#include <cstdlib>
#include <functional>
#include <memory>
#include <new>
#include <string>

#include "engine/tensor.h"
#include "kernels/band_norm_cpu.h"
#include "kernels/batchnorm_cpu.h"
#include "kernels/contrastive_loss_cpu.h"
#include "kernels/conv1d_cpu.h"
#include "kernels/dropout_cpu.h"
#include "kernels/mel_cpu.h"
#include "kernels/mining_cpu.h"
#include "kernels/optim_cpu.h"
#include "kernels/precision.h"
#include "kernels/reduce_cpu.h"
#include "kernels/triplet_loss_cpu.h"

namespace mg {

// The largest k the CUDA backend's topk_cosine selects (kernels/topk_cuda.cu: half a tile).
constexpr int kMaxTopkCuda = 1024;

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
  // CUDA: the cudaStream_t the backend enqueues its work on, for libraries that enqueue theirs
  // in order with it (NCCL's collectives); null on the CPU.
  virtual void* native_stream() { return nullptr; }
  // Device memory to device memory, in order with the work around it; the regions must not
  // overlap.
  virtual void copy(void* dst, const void* src, size_t bytes) = 0;
  virtual void fill(float* p, int64_t n, float value) = 0;
  virtual void synchronize() = 0;

  // ---- staging for the input pipeline ----
  // Host memory the device can copy from asynchronously (CUDA: page-locked). The CPU backend
  // reads host memory directly, so its "upload" is a memcpy the trainer can skip.
  virtual void* alloc_host(size_t bytes) {
    void* p = std::aligned_alloc(256, (bytes + 255) / 256 * 256 + (bytes == 0 ? 256 : 0));
    if (!p) throw std::bad_alloc();
    return p;
  }
  virtual void free_host(void* p) { std::free(p); }
  // Copies host memory from alloc_host() to the device on a copy stream. The copy starts once
  // the device work enqueued before this call is done, so it never races work that reads or
  // writes dst, and it overlaps the work enqueued after this call, which therefore does not
  // see dst's new contents: wait_uploads() orders later work after the copy. src stays
  // untouched until the next synchronize(), which waits for the copies too. So, to overlap a
  // step with the next step's upload: wait_uploads(); upload_async(next); enqueue the step.
  // Default (host memory is device memory): to_device.
  virtual void upload_async(void* dst, const void* src_host, size_t bytes) { to_device(dst, src_host, bytes); }
  // Device work enqueued after this call waits for every upload_async() issued before it.
  virtual void wait_uploads() {}

  // ---- random init: p[i] = lo + (hi - lo) * philox_uniform(seed, stream, i) ----
  virtual void fill_uniform(float* p, int64_t n, float lo, float hi, uint64_t seed, uint64_t stream) = 0;

  // ---- model ops (shapes as in the kernels/*_cpu.h headers) ----
  // audio [B, S] -> out [B, n_mels, 1 + S / hop]
  virtual void mel_forward(const float* audio, float* out, int B, int64_t S, const MelParams& p) = 0;
  // x, y [B, C, T] -> (x - mean[c]) / std[c], mean and std [C] (kernels/band_norm_cpu.h); y
  // may alias x. No backward: it standardises the mel front end's output.
  virtual void band_norm_forward(const float* x, const float* mean, const float* std, float* y, int64_t B, int C,
                                 int64_t Tn) = 0;
  // conv1d and linear compute in `prec`: float32, or bf16 operands with float32 sums (rounded
  // where kernels/bf16_cpu.h says; the CPU emulates the CUDA path). Tensors stay float32.
  virtual void conv1d_forward(const float* x, const float* w, const float* b, float* y, const Conv1dDims& d,
                              Precision prec) = 0;
  virtual void conv1d_backward(const float* dy, const float* x, const float* w, float* dx, float* dw, float* db,
                               const Conv1dDims& d, Precision prec) = 0;
  virtual void relu_forward(const float* x, float* y, int64_t n) = 0;
  virtual void relu_backward(const float* dy, const float* y, float* dx, int64_t n) = 0;
  virtual void maxpool_forward(const float* x, float* y, int64_t rows, int Tin, int window) = 0;
  virtual void maxpool_backward(const float* dy, const float* x, float* dx, int64_t rows, int Tin, int window) = 0;
  // Reductions over time: x [rows, Tn] -> one value per row, written through `out`
  // (kernels/reduce_cpu.h RowOut; the default is a contiguous y [rows]), so the head can
  // concatenate [mean | max | l2] per clip in one buffer. Their backward passes read dy through
  // the same layout. Their backward passes take `accumulate` (dx += instead of dx =): the
  // head's mean backward writes dx, the max's and the L2's add to it; with every stage pooled
  // (model.pool_stages = all) a lower stage's mean adds to the gradient the next stage wrote.
  virtual void mean_time_forward(const float* x, float* y, int64_t rows, int Tn, const RowOut& out = {}) = 0;
  virtual void mean_time_backward(const float* dy, float* dx, int64_t rows, int Tn, const RowOut& out = {},
                                  bool accumulate = false) = 0;
  virtual void max_time_forward(const float* x, float* y, int64_t rows, int Tn, const RowOut& out) = 0;
  virtual void max_time_backward(const float* dy, const float* x, float* dx, int64_t rows, int Tn, const RowOut& out,
                                 bool accumulate) = 0;
  virtual void l2_time_forward(const float* x, float* y, int64_t rows, int Tn, const RowOut& out) = 0;
  virtual void l2_time_backward(const float* dy, const float* x, float* dx, int64_t rows, int Tn, const RowOut& out,
                                bool accumulate) = 0;
  // Inverted dropout (kernels/dropout_cpu.h) over x, y, mask [n]: rng is device uint64 [2] =
  // {seed, stream}, read on the device so a captured step draws each replay's mask; the mask
  // (0 or 1 / (1 - p)) is stored for the backward, dx = dy * mask. Bit-identical across backends.
  virtual void dropout_forward(const float* x, float* y, float* mask, int64_t n, double p, const uint64_t* rng) = 0;
  virtual void dropout_backward(const float* dy, const float* mask, float* dx, int64_t n) = 0;
  // Batch normalisation over x, y [B, D] (kernels/batchnorm_cpu.h). Training: batch statistics,
  // running_mean and running_var [D] updated in place (device memory: a captured step updates
  // them at each replay). Eval: the running statistics. Backward (of a training forward on the
  // same x): dx overwritten (may be null), dgamma and dbeta accumulated.
  virtual void batchnorm_forward(const float* x, const float* gamma, const float* beta, float* y, float* running_mean,
                                 float* running_var, int B, int D, const BatchNormParams& p, bool training) = 0;
  virtual void batchnorm_backward(const float* dy, const float* x, const float* gamma, float* dx, float* dgamma,
                                  float* dbeta, int B, int D, const BatchNormParams& p) = 0;
  virtual void linear_forward(const float* x, const float* w, const float* b, float* y, int B, int C, int E,
                              Precision prec) = 0;
  virtual void linear_backward(const float* dy, const float* x, const float* w, float* dx, float* dw, float* db, int B,
                               int C, int E, Precision prec) = 0;
  virtual void l2norm_forward(const float* x, float* y, int B, int E, double eps) = 0;
  virtual void l2norm_backward(const float* dy, const float* x, const float* y, float* dx, int B, int E,
                               double eps) = 0;
  // Fused loss + gradient. triplets: device int32 [n_triplets, 3]; rows (-1, -1, -1) are
  // invalid (unmined) and skipped. stats: device float [2] = {mean loss over the valid rows (0
  // when none), active triplets}. demb [N, E] overwritten.
  virtual void triplet_loss(const float* emb, const int32_t* triplets, int n_triplets, int N, int E,
                            const TripletLossParams& p, float* stats, float* demb) = 0;
  // Fused supervised contrastive loss + gradient (kernels/contrastive_loss_cpu.h) over emb
  // [N, E] with hops: device uint8 [N, N] graph distances between the rows' items. stats: device
  // float [2] = {mean loss over rows with a positive (0 when none), those rows}; demb [N, E]
  // overwritten. workspace: device memory of contrastive_workspace_bytes(N), owned by the
  // caller (allocated outside any capture; the CPU backend ignores it). N <= kMaxContrastiveRows.
  virtual void contrastive_loss(const float* emb, const uint8_t* hops, int N, int E, const ContrastiveLossParams& p,
                                float* stats, float* demb, void* workspace) = 0;
  // In-batch mining (kernels/mining_cpu.h): emb [2B, E] = B anchors then their B positives,
  // hops: device uint8 [2B, 2B] graph distances. Writes triplets: device int32 [B, 3], row i =
  // (i, B + i, negative) or (-1, -1, -1) when anchor i has none, and counts: device float [2] =
  // {valid triplets, candidate (anchor, row) pairs}. Bit-identical across backends; no host
  // synchronisation (capturable). 1 <= B <= kMaxMiningAnchors.
  virtual void mine_triplets(const float* emb, const uint8_t* hops, int B, int E, const MiningParams& p,
                             int32_t* triplets, float* counts) = 0;

  // ---- retrieval ----
  // Exact top-k by cosine similarity with engine/retrieval_metrics.h topk_cosine's contract:
  // queries [Q, D] and items [N, D] unit rows (similarity = dot product), exclude null or
  // int32 [Q] (an item to leave out per query, -1 none), out_items int32 [Q, k] and out_sims
  // [Q, k]: best first, ties to the lower item index, NaN below every number, rows with fewer
  // than k candidates padded with item -1 and similarity -inf. The CPU backend calls
  // topk_cosine; the CUDA backend multiplies with cuBLAS in FP32 (TF32 off, whatever --tf32
  // says) and selects with kernels/topk_cuda.cu, for k <= kMaxTopkCuda (std::invalid_argument
  // beyond). The backends' GEMMs sum in different orders, so two items whose similarities
  // differ by a rounding error may come in either order; equal similarities are ordered alike.
  virtual void topk_cosine(const float* queries, int64_t Q, const float* items, int64_t N, int D, int k,
                           const int32_t* exclude, int32_t* out_items, float* out_sims) = 0;

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

  // ---- timing (benchmarks) ----
  // Measures the device work enqueued between start() and stop(). The CUDA backend records
  // events on its stream (no host synchronisation until seconds()); the default synchronises
  // at both ends and reads the host clock. seconds() waits for the work to finish.
  class Stopwatch {
   public:
    virtual ~Stopwatch() = default;
    virtual void start() = 0;
    virtual void stop() = 0;
    virtual double seconds() = 0;
  };
  virtual std::unique_ptr<Stopwatch> stopwatch();

  template <class T>
  T* alloc(int64_t n) {
    return static_cast<T*>(alloc_bytes(static_cast<size_t>(n) * sizeof(T)));
  }
};

// A device allocation of n T's, freed on every way out of the scope that owns it.
template <class T>
struct DeviceArray {
  DeviceArray(Backend& be, int64_t n) : be_(be), p(be.alloc<T>(n)) {}
  ~DeviceArray() { be_.free_bytes(p); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  Backend& be_;
  T* p;
};

// threads <= 0: all cores (OpenMP's default).
std::unique_ptr<Backend> make_cpu_backend(int threads = 0);

}  // namespace mg
