// The CUDA backend: dispatch of the Backend interface to our kernels (kernels/*_cuda.cu),
// cuDNN (kernels/conv1d_cudnn.h), cuBLAS (the linear layer in kernels/linear_cublas.h, and the
// top-k's products) and cuFFT (inside MelCuda), all on one non-blocking stream, plus a copy
// stream for upload_async. Host synchronisation happens only in synchronize() and to_host().
//
// CUDA Graphs: nothing here allocates or frees while the stream is being captured. Buffers
// that grow with a new shape (cuBLAS's workspace is fixed; the clip-norm scratch, cuDNN's
// workspace, MelCuda's buffers) grow only outside capture, and a replaced buffer is retired,
// not freed, because a graph captured before the growth still points at it.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <limits>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "engine/cuda_backend.h"
#include "kernels/conv1d_cudnn.h"
#include "kernels/cuda_check.h"
#include "kernels/cuda_kernels.cuh"
#include "kernels/linear_cublas.h"
#include "kernels/mel_cuda.cuh"

namespace mg {

namespace {

std::string mib(size_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
  return buf;
}

auto mel_key(const MelParams& p) {
  return std::make_tuple(p.sample_rate, p.n_fft, p.hop, p.n_mels, p.f_min, p.f_max, static_cast<int>(p.scale),
                         static_cast<int>(p.norm), p.power, p.log_eps);
}

class CudaCaptured final : public Backend::Captured {
 public:
  CudaCaptured(cudaGraph_t g, cudaGraphExec_t e, cudaStream_t s) : graph_(g), exec_(e), stream_(s) {}
  ~CudaCaptured() override {
    cudaGraphExecDestroy(exec_);  // destructors must not throw; statuses ignored
    cudaGraphDestroy(graph_);
  }
  void replay() override { MG_CUDA_CHECK(cudaGraphLaunch(exec_, stream_)); }

 private:
  cudaGraph_t graph_;
  cudaGraphExec_t exec_;
  cudaStream_t stream_;
};

// CUDA events on the backend's stream: the GPU's own clock, with no host synchronisation
// between start() and stop(), so launch gaps inside the timed work are measured as they are.
class CudaStopwatch final : public Backend::Stopwatch {
 public:
  explicit CudaStopwatch(cudaStream_t s) : stream_(s) {
    MG_CUDA_CHECK(cudaEventCreate(&start_));
    MG_CUDA_CHECK(cudaEventCreate(&stop_));
  }
  ~CudaStopwatch() override {
    cudaEventDestroy(start_);  // destructors must not throw; statuses ignored
    cudaEventDestroy(stop_);
  }
  void start() override { MG_CUDA_CHECK(cudaEventRecord(start_, stream_)); }
  void stop() override { MG_CUDA_CHECK(cudaEventRecord(stop_, stream_)); }
  double seconds() override {
    MG_CUDA_CHECK(cudaEventSynchronize(stop_));
    float ms = 0;
    MG_CUDA_CHECK(cudaEventElapsedTime(&ms, start_, stop_));
    return ms / 1000.0;
  }

 private:
  cudaStream_t stream_;
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
};

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(const CudaOptions& o) : opts_(o) {
    MG_CUDA_CHECK(cudaSetDevice(o.device));
    cudaDeviceProp prop{};
    MG_CUDA_CHECK(cudaGetDeviceProperties(&prop, o.device));
    name_ = prop.name;
    cc_ = std::to_string(prop.major) + "." + std::to_string(prop.minor);
    MG_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    MG_CUDA_CHECK(cudaStreamCreateWithFlags(&copy_stream_, cudaStreamNonBlocking));
    MG_CUDA_CHECK(cudaEventCreateWithFlags(&copied_, cudaEventDisableTiming));
    MG_CUDA_CHECK(cudaEventCreateWithFlags(&enqueued_, cudaEventDisableTiming));
    MG_CUBLAS_CHECK(cublasCreate(&cublas_));
    MG_CUBLAS_CHECK(cublasSetStream(cublas_, stream_));
    // A workspace of our own, set after the stream (cublasSetStream resets the handle to the
    // library's default pool): without it cuBLAS may allocate inside a graph capture, and a
    // captured GEMM could pick another kernel than the eager one. Size: the cuBLAS guide's
    // recommendation, 32 MiB from Hopper on, 4 MiB before.
    cublas_ws_bytes_ = prop.major >= 9 ? size_t{32} << 20 : size_t{4} << 20;
    MG_CUDA_CHECK(cudaMalloc(&cublas_ws_, cublas_ws_bytes_));
    MG_CUBLAS_CHECK(cublasSetWorkspace(cublas_, cublas_ws_, cublas_ws_bytes_));
    // Default math is plain FP32; TF32 tensor-core math only when asked for.
    MG_CUBLAS_CHECK(cublasSetMathMode(cublas_, o.tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
    cudnn_ = std::make_unique<Conv1dCudnn>(stream_, Conv1dCudnnOptions{o.deterministic, o.tf32});
  }

  // Statuses are ignored: a destructor must not throw, and a failing teardown has no remedy.
  // The streams are drained first: cuFFT plans, cuDNN's and cuBLAS's workspaces and every
  // buffer below may still be in use by queued work.
  ~CudaBackend() override {
    cudaStreamSynchronize(copy_stream_);
    cudaStreamSynchronize(stream_);
    mel_.clear();
    cudnn_.reset();
    if (norm_partials_) cudaFree(norm_partials_);
    if (topk_ws_) cudaFree(topk_ws_);
    for (void* p : retired_) cudaFree(p);
    cublasDestroy(cublas_);
    if (cublas_ws_) cudaFree(cublas_ws_);
    cudaEventDestroy(copied_);
    cudaEventDestroy(enqueued_);
    cudaStreamDestroy(copy_stream_);
    cudaStreamDestroy(stream_);
  }

  Device device() const override { return Device::CUDA; }
  std::string describe() const override {
    return "cuda:" + std::to_string(opts_.device) + " (" + name_ + ", sm " + cc_ + (opts_.tf32 ? ", TF32" : "") +
           (opts_.deterministic ? ", deterministic" : "") + ")";
  }

  void* alloc_bytes(size_t bytes) override {
    void* p = nullptr;
    const cudaError_t st = cudaMalloc(&p, bytes ? bytes : 256);
    if (st == cudaErrorMemoryAllocation) {
      cudaGetLastError();  // clear the sticky-free error state
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      throw CudaError("cudaMalloc of " + mib(bytes) + " failed: out of memory on " + name_ + " (" + mib(free_b) +
                      " free of " + mib(total_b) + "); try a smaller batch (train.batch_triplets) or shorter clips");
    }
    MG_CUDA_CHECK(st);
    return p;
  }
  void free_bytes(void* p) override {
    if (p) cudaFree(p);  // called from destructors: never throws
  }
  // Stream-ordered. From pageable memory cudaMemcpyAsync returns once the source is staged,
  // so the caller may reuse it at once.
  void to_device(void* dst, const void* src, size_t bytes) override {
    MG_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_));
  }
  void to_host(void* dst, const void* src, size_t bytes) override {
    MG_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
    MG_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  void* native_stream() override { return stream_; }
  void copy(void* dst, const void* src, size_t bytes) override {
    MG_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_));
  }
  void* alloc_host(size_t bytes) override {
    void* p = nullptr;
    const cudaError_t st = cudaMallocHost(&p, bytes ? bytes : 256);
    if (st == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      throw CudaError("cudaMallocHost of " + mib(bytes) +
                      " failed: not enough page-locked host memory; try fewer loader threads or a smaller batch");
    }
    MG_CUDA_CHECK(st);
    return p;
  }
  void free_host(void* p) override {
    if (p) cudaFreeHost(p);
  }
  // Backend::upload_async: copy_stream_ waits for the compute stream's work so far (event
  // enqueued_), then copies; copied_ marks the copy's end for wait_uploads(). Copies on the one
  // copy stream run in call order, so copied_ covers every earlier upload as well.
  void upload_async(void* dst, const void* src, size_t bytes) override {
    MG_CUDA_CHECK(cudaEventRecord(enqueued_, stream_));
    MG_CUDA_CHECK(cudaStreamWaitEvent(copy_stream_, enqueued_, 0));
    MG_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, copy_stream_));
    MG_CUDA_CHECK(cudaEventRecord(copied_, copy_stream_));
  }
  void wait_uploads() override { MG_CUDA_CHECK(cudaStreamWaitEvent(stream_, copied_, 0)); }
  void fill(float* p, int64_t n, float value) override { fill_cuda(p, n, value, stream_); }
  void synchronize() override {
    MG_CUDA_CHECK(cudaStreamSynchronize(copy_stream_));
    MG_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  void fill_uniform(float* p, int64_t n, float lo, float hi, uint64_t seed, uint64_t stream) override {
    fill_uniform_cuda(p, n, lo, hi, seed, stream, stream_);
  }

  void mel_forward(const float* audio, float* out, int B, int64_t S, const MelParams& p) override {
    auto key = mel_key(p);
    auto it = mel_.find(key);
    if (it == mel_.end()) {
      // Its filterbank and window are allocated and uploaded when it is made.
      throw_if_capturing(stream_,
                         "CudaBackend::mel_forward: mel parameters new during a CUDA Graph capture (their filterbank "
                         "must be allocated and uploaded, which cannot be done while capturing); run one forward "
                         "with them before capturing");
      it = mel_.emplace(key, std::make_unique<MelCuda>(p)).first;
    }
    it->second->forward(audio, out, B, S, stream_);
  }
  void conv1d_forward(const float* x, const float* w, const float* b, float* y, const Conv1dDims& d,
                      Precision prec) override {
    cudnn_->conv1d_forward(x, w, b, y, d, prec);
  }
  void conv1d_backward(const float* dy, const float* x, const float* w, float* dx, float* dw, float* db,
                       const Conv1dDims& d, Precision prec) override {
    cudnn_->conv1d_backward(dy, x, w, dx, dw, db, d, prec);
  }
  void relu_forward(const float* x, float* y, int64_t n) override { relu_forward_cuda(x, y, n, stream_); }
  void relu_backward(const float* dy, const float* y, float* dx, int64_t n) override {
    relu_backward_cuda(dy, y, dx, n, stream_);
  }
  void maxpool_forward(const float* x, float* y, int64_t rows, int Tin, int w) override {
    maxpool1d_forward_cuda(x, y, rows, Tin, w, stream_);
  }
  void maxpool_backward(const float* dy, const float* x, float* dx, int64_t rows, int Tin, int w) override {
    maxpool1d_backward_cuda(dy, x, dx, rows, Tin, w, stream_);
  }
  void mean_time_forward(const float* x, float* y, int64_t rows, int Tn, const RowOut& out) override {
    mean_time_forward_cuda(x, y, rows, Tn, out, stream_);
  }
  void mean_time_backward(const float* dy, float* dx, int64_t rows, int Tn, const RowOut& out,
                          bool accumulate) override {
    mean_time_backward_cuda(dy, dx, rows, Tn, out, accumulate, stream_);
  }
  void max_time_forward(const float* x, float* y, int64_t rows, int Tn, const RowOut& out) override {
    max_time_forward_cuda(x, y, rows, Tn, out, stream_);
  }
  void max_time_backward(const float* dy, const float* x, float* dx, int64_t rows, int Tn, const RowOut& out,
                         bool accumulate) override {
    max_time_backward_cuda(dy, x, dx, rows, Tn, out, accumulate, stream_);
  }
  void l2_time_forward(const float* x, float* y, int64_t rows, int Tn, const RowOut& out) override {
    l2_time_forward_cuda(x, y, rows, Tn, out, stream_);
  }
  void l2_time_backward(const float* dy, const float* x, float* dx, int64_t rows, int Tn, const RowOut& out,
                        bool accumulate) override {
    l2_time_backward_cuda(dy, x, dx, rows, Tn, out, accumulate, stream_);
  }
  void dropout_forward(const float* x, float* y, float* mask, int64_t n, double p, const uint64_t* rng) override {
    dropout_forward_cuda(x, y, mask, n, p, rng, stream_);
  }
  void dropout_backward(const float* dy, const float* mask, float* dx, int64_t n) override {
    dropout_backward_cuda(dy, mask, dx, n, stream_);
  }

  void band_norm_forward(const float* x, const float* mean, const float* std, float* y, int64_t B, int C,
                         int64_t Tn) override {
    band_norm_forward_cuda(x, mean, std, y, B, C, Tn, stream_);
  }
  void batchnorm_forward(const float* x, const float* gamma, const float* beta, float* y, float* running_mean,
                         float* running_var, int B, int D, const BatchNormParams& p, bool training) override {
    batchnorm_forward_cuda(x, gamma, beta, y, running_mean, running_var, B, D, p, training, stream_);
  }
  void batchnorm_backward(const float* dy, const float* x, const float* gamma, float* dx, float* dgamma, float* dbeta,
                          int B, int D, const BatchNormParams& p) override {
    batchnorm_backward_cuda(dy, x, gamma, dx, dgamma, dbeta, B, D, p, stream_);
  }

  void linear_forward(const float* x, const float* w, const float* b, float* y, int B, int C, int E,
                      Precision prec) override {
    if (prec == Precision::BF16)
      linear_forward_cublas_bf16(cublas_, x, w, b, y, B, C, E, linear_bf16_, stream_);
    else
      linear_forward_cublas(cublas_, x, w, b, y, B, C, E, stream_);
  }
  void linear_backward(const float* dy, const float* x, const float* w, float* dx, float* dw, float* db, int B, int C,
                       int E, Precision prec) override {
    if (prec == Precision::BF16)
      linear_backward_cublas_bf16(cublas_, dy, x, w, dx, dw, db, B, C, E, linear_bf16_, stream_);
    else
      linear_backward_cublas(cublas_, dy, x, w, dx, dw, db, B, C, E, stream_);
  }
  void l2norm_forward(const float* x, float* y, int B, int E, double eps) override {
    l2norm_forward_cuda(x, y, B, E, eps, stream_);
  }
  void l2norm_backward(const float* dy, const float* x, const float* y, float* dx, int B, int E,
                       double eps) override {
    l2norm_backward_cuda(dy, x, y, dx, B, E, eps, stream_);
  }
  void triplet_loss(const float* emb, const int32_t* triplets, int n_triplets, int N, int E,
                    const TripletLossParams& p, float* stats, float* demb) override {
    triplet_loss_cuda(emb, triplets, n_triplets, N, E, p, stats, demb, stream_);
  }
  void contrastive_loss(const float* emb, const uint8_t* hops, int N, int E, const ContrastiveLossParams& p,
                        float* stats, float* demb, void* workspace) override {
    contrastive_loss_cuda(emb, hops, N, E, p, stats, demb, workspace, stream_);
  }
  void mine_triplets(const float* emb, const uint8_t* hops, int B, int E, const MiningParams& p, int32_t* triplets,
                     float* counts) override {
    mine_triplets_cuda(emb, hops, B, E, p, triplets, counts, stream_);
  }
  void adam_step(float* p, const float* g, float* m, float* v, int64_t n, const AdamParams& a,
                 const double* scalars) override {
    adam_step_cuda(p, g, m, v, n, a, scalars, stream_);
  }
  void clip_grad_norm(float* g, int64_t n, double max_norm, float* norm_out) override {
    const int64_t need = global_norm_partials_size(n);
    if (need > norm_partials_size_) {
      require_not_capturing("clip_grad_norm's scratch for " + std::to_string(n) + " gradients");
      // The old buffer is kept until destruction: a graph captured earlier still points at it.
      if (norm_partials_) retired_.push_back(norm_partials_);
      norm_partials_ = static_cast<double*>(alloc_bytes(static_cast<size_t>(need) * sizeof(double)));
      norm_partials_size_ = need;
    }
    clip_grad_norm_cuda(g, n, max_norm, norm_out, norm_partials_, stream_);
  }

  // Backend::topk_cosine: per block of up to kTopkQueries queries and per chunk of up to
  // kTopkChunk items, sims [qb, nc] = queries x items^T (cuBLAS), the chunk's best k of every
  // tile written beside the running best k, and selection passes until k keys are left
  // (kernels/topk_cuda.cu). Workspace: sims [qb, chunk] floats and two key buffers [qb, ld],
  // ld = k + tiles(chunk) * k, kept between calls.
  void topk_cosine(const float* queries, int64_t Q, const float* items, int64_t N, int D, int k,
                   const int32_t* exclude, int32_t* out_items, float* out_sims) override {
    if (Q < 0 || N < 0 || D < 1 || k < 1 || k > kMaxTopkCuda)
      throw std::invalid_argument("topk_cosine (CUDA): need Q >= 0, N >= 0, D >= 1, 1 <= k <= " +
                                  std::to_string(kMaxTopkCuda) + " (got Q " + std::to_string(Q) + ", N " +
                                  std::to_string(N) + ", D " + std::to_string(D) + ", k " + std::to_string(k) + ")");
    if (N > std::numeric_limits<int32_t>::max())
      throw std::invalid_argument("topk_cosine: " + std::to_string(N) + " items exceed the int32 item index");
    if (Q == 0) return;
    const int64_t qmax = std::min<int64_t>(Q, kTopkQueries);
    const int64_t chunk = std::clamp<int64_t>(N, 1, kTopkChunk);
    const int64_t ld = k + topk_tiles(chunk) * k;
    const size_t sims_bytes = (static_cast<size_t>(qmax * chunk) * sizeof(float) + 255) / 256 * 256;
    const size_t keys_bytes = (static_cast<size_t>(qmax * ld) * sizeof(uint64_t) + 255) / 256 * 256;
    if (sims_bytes + 2 * keys_bytes > topk_ws_bytes_) {
      require_not_capturing("topk_cosine's workspace");
      if (topk_ws_) cudaFree(topk_ws_);  // waits for the work that used it (never captured: checked above)
      topk_ws_ = nullptr;
      topk_ws_bytes_ = 0;
      topk_ws_ = alloc_bytes(sims_bytes + 2 * keys_bytes);
      topk_ws_bytes_ = sims_bytes + 2 * keys_bytes;
    }
    auto* sims = static_cast<float*>(topk_ws_);
    auto* run = reinterpret_cast<uint64_t*>(static_cast<char*>(topk_ws_) + sims_bytes);  // running best k first
    auto* alt = reinterpret_cast<uint64_t*>(static_cast<char*>(topk_ws_) + sims_bytes + keys_bytes);

    // FP32 products whatever --tf32 says: TF32 would rank by 10-bit mantissas.
    cublasMath_t mode = CUBLAS_DEFAULT_MATH;
    MG_CUBLAS_CHECK(cublasGetMathMode(cublas_, &mode));
    MG_CUBLAS_CHECK(cublasSetMathMode(cublas_, CUBLAS_DEFAULT_MATH));
    struct RestoreMath {
      cublasHandle_t h;
      cublasMath_t m;
      ~RestoreMath() { cublasSetMathMode(h, m); }
    } restore{cublas_, mode};

    const float one = 1.0f, zero = 0.0f;
    for (int64_t q0 = 0; q0 < Q; q0 += qmax) {
      const int64_t qb = std::min(qmax, Q - q0);
      MG_CUDA_CHECK(cudaMemsetAsync(run, 0, static_cast<size_t>(qb * ld) * sizeof(uint64_t), stream_));
      for (int64_t i0 = 0; i0 < N; i0 += chunk) {
        const int64_t nc = std::min(chunk, N - i0);
        // Row-major sims [qb, nc] is column-major sims^T [nc, qb] = items_c [nc, D] x queries^T [D, qb],
        // the row-major items read as op_T of column-major [D, nc].
        MG_CUBLAS_CHECK(cublasSgemm(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(nc), static_cast<int>(qb), D,
                                    &one, items + i0 * D, D, queries + q0 * D, D, &zero, sims, static_cast<int>(nc)));
        topk_select_sims_cuda(sims, qb, nc, i0, exclude ? exclude + q0 : nullptr, k, run + k, ld, stream_);
        int64_t m = k + topk_tiles(nc) * k;
        uint64_t *in = run, *out = alt;
        while (m > k) {
          topk_select_keys_cuda(in, ld, qb, m, k, out, ld, stream_);
          m = topk_tiles(m) * k;
          std::swap(in, out);
        }
        if (in != run)
          MG_CUDA_CHECK(cudaMemcpy2DAsync(run, static_cast<size_t>(ld) * sizeof(uint64_t), in,
                                          static_cast<size_t>(ld) * sizeof(uint64_t), static_cast<size_t>(k) * sizeof(uint64_t),
                                          static_cast<size_t>(qb), cudaMemcpyDeviceToDevice, stream_));
      }
      topk_decode_cuda(run, ld, qb, k, out_items + q0 * k, out_sims + q0 * k, stream_);
    }
  }

  std::unique_ptr<Stopwatch> stopwatch() override { return std::make_unique<CudaStopwatch>(stream_); }

  std::unique_ptr<Captured> capture(const std::function<void()>& work) override {
    if (!cudnn_->ready_for_capture()) return nullptr;  // run eagerly until every shape is planned
    MG_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    try {
      work();
    } catch (...) {
      cudaGraph_t g = nullptr;
      cudaStreamEndCapture(stream_, &g);  // leave capture mode before reporting
      if (g) cudaGraphDestroy(g);
      throw;
    }
    cudaGraph_t graph = nullptr;
    MG_CUDA_CHECK(cudaStreamEndCapture(stream_, &graph));
    cudaGraphExec_t exec = nullptr;
    const cudaError_t st = cudaGraphInstantiate(&exec, graph, 0);
    if (st != cudaSuccess) cudaGraphDestroy(graph);
    MG_CUDA_CHECK(st);
    return std::make_unique<CudaCaptured>(graph, exec, stream_);
  }

 private:
  // A buffer that must grow cannot be allocated while the stream is being captured.
  void require_not_capturing(const std::string& what) const {
    throw_if_capturing(stream_, "CudaBackend: " + what +
                                    " must grow during a CUDA Graph capture, where nothing may be allocated; run "
                                    "the step eagerly once with its largest sizes before capturing");
  }

  CudaOptions opts_;
  std::string name_, cc_;
  cudaStream_t stream_ = nullptr;
  cudaStream_t copy_stream_ = nullptr;  // upload_async: input batches, overlapping compute
  cudaEvent_t copied_ = nullptr;        // the last upload's completion
  cudaEvent_t enqueued_ = nullptr;      // the compute work enqueued before the last upload
  cublasHandle_t cublas_ = nullptr;
  void* cublas_ws_ = nullptr;  // cuBLAS's workspace (cublasSetWorkspace), fixed size
  size_t cublas_ws_bytes_ = 0;
  std::unique_ptr<Conv1dCudnn> cudnn_;
  LinearBf16Staging linear_bf16_;  // the linear layer's bf16 operands (train.precision = "bf16")
  std::map<decltype(mel_key(MelParams{})), std::unique_ptr<MelCuda>> mel_;
  double* norm_partials_ = nullptr;
  int64_t norm_partials_size_ = 0;
  static constexpr int64_t kTopkQueries = 256;   // queries per block (grid rows <= 65535)
  static constexpr int64_t kTopkChunk = 65536;   // items per GEMM
  void* topk_ws_ = nullptr;                      // topk_cosine's workspace
  size_t topk_ws_bytes_ = 0;
  std::vector<void*> retired_;
};

}  // namespace

int cuda_device_count(std::string* why) {
  int n = 0;
  const cudaError_t st = cudaGetDeviceCount(&n);
  if (st != cudaSuccess) {
    cudaGetLastError();
    if (why) {
      *why = std::string(cudaGetErrorString(st)) + " (" + cudaGetErrorName(st) + ")";
      // Both mean "no usable NVIDIA driver here" far more often than a version problem.
      if (st == cudaErrorInsufficientDriver || st == cudaErrorNoDevice)
        *why += "; is there an NVIDIA GPU and driver on this machine?";
    }
    return 0;
  }
  if (n == 0 && why) *why = "no CUDA device present";
  return n;
}

std::unique_ptr<Backend> make_cuda_backend(const CudaOptions& opts) {
  std::string why;
  const int n = cuda_device_count(&why);
  if (n == 0) throw CudaError("no usable CUDA device: " + why);
  if (opts.device < 0 || opts.device >= n)
    throw CudaError("CUDA device " + std::to_string(opts.device) + " does not exist (" + std::to_string(n) +
                    " present)");
  return std::make_unique<CudaBackend>(opts);
}

}  // namespace mg
