// The CUDA backend: dispatch of the Backend interface to our kernels (kernels/*_cuda.cu),
// cuDNN (engine/cudnn_ops.h), cuBLAS (the linear layer) and cuFFT (inside MelCuda), all on
// one non-blocking stream. Host synchronisation happens only in synchronize() and to_host().
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "engine/cuda_backend.h"
#include "engine/cudnn_ops.h"
#include "kernels/cuda_check.h"
#include "kernels/cuda_kernels.cuh"
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

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(const CudaOptions& o) : opts_(o) {
    MG_CUDA_CHECK(cudaSetDevice(o.device));
    cudaDeviceProp prop{};
    MG_CUDA_CHECK(cudaGetDeviceProperties(&prop, o.device));
    name_ = prop.name;
    cc_ = std::to_string(prop.major) + "." + std::to_string(prop.minor);
    MG_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    MG_CUBLAS_CHECK(cublasCreate(&cublas_));
    MG_CUBLAS_CHECK(cublasSetStream(cublas_, stream_));
    // Default math is plain FP32; TF32 tensor-core math only when asked for.
    MG_CUBLAS_CHECK(cublasSetMathMode(cublas_, o.tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
    cudnn_ = std::make_unique<CudnnOps>(stream_, CudnnOptions{o.deterministic, o.tf32});
  }

  ~CudaBackend() override {
    mel_.clear();
    cudnn_.reset();
    if (norm_partials_) cudaFree(norm_partials_);
    for (void* p : retired_) cudaFree(p);
    cublasDestroy(cublas_);
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
  void fill(float* p, int64_t n, float value) override { fill_cuda(p, n, value, stream_); }
  void synchronize() override { MG_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

  void fill_uniform(float* p, int64_t n, float lo, float hi, uint64_t seed, uint64_t stream) override {
    fill_uniform_cuda(p, n, lo, hi, seed, stream, stream_);
  }

  void mel_forward(const float* audio, float* out, int B, int64_t S, const MelParams& p) override {
    auto key = mel_key(p);
    auto it = mel_.find(key);
    if (it == mel_.end()) it = mel_.emplace(key, std::make_unique<MelCuda>(p)).first;
    it->second->forward(audio, out, B, S, stream_);
  }
  void conv1d_forward(const float* x, const float* w, const float* b, float* y, const Conv1dDims& d) override {
    cudnn_->conv1d_forward(x, w, b, y, d);
  }
  void conv1d_backward(const float* dy, const float* x, const float* w, float* dx, float* dw, float* db,
                       const Conv1dDims& d) override {
    cudnn_->conv1d_backward(dy, x, w, dx, dw, db, d);
  }
  void relu_forward(const float* x, float* y, int64_t n) override { relu_forward_cuda(x, y, n, stream_); }
  void relu_backward(const float* dy, const float* y, float* dx, int64_t n) override {
    relu_backward_cuda(dy, y, dx, n, stream_);
  }
  void maxpool_forward(const float* x, float* y, int64_t rows, int Tin, int w) override {
    cudnn_->maxpool_forward(x, y, rows, Tin, w);
  }
  void maxpool_backward(const float* dy, const float* x, float* dx, int64_t rows, int Tin, int w) override {
    cudnn_->maxpool_backward(dy, x, dx, rows, Tin, w);
  }
  void mean_time_forward(const float* x, float* y, int64_t rows, int Tn) override {
    mean_time_forward_cuda(x, y, rows, Tn, stream_);
  }
  void mean_time_backward(const float* dy, float* dx, int64_t rows, int Tn) override {
    mean_time_backward_cuda(dy, dx, rows, Tn, stream_);
  }

  // Row-major y [B, E] = x [B, C] w^T + b. cuBLAS is column-major, where a row-major [R, K]
  // matrix reads as its transpose [K, R]; so y^T [E, B] = w [E, C] x^T [C, B] with w read as
  // op_T of the stored [C, E].
  void linear_forward(const float* x, const float* w, const float* b, float* y, int B, int C, int E) override {
    bias_broadcast_cuda(b, y, B, E, stream_);
    const float one = 1.0f;
    MG_CUBLAS_CHECK(cublasSgemm(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, E, B, C, &one, w, C, x, C, &one, y, E));
  }
  void linear_backward(const float* dy, const float* x, const float* w, float* dx, float* dw, float* db, int B,
                       int C, int E) override {
    const float one = 1.0f, zero = 0.0f;
    // dx^T [C, B] = w^T [C, E] dy^T [E, B]   (overwrite)
    if (dx) MG_CUBLAS_CHECK(cublasSgemm(cublas_, CUBLAS_OP_N, CUBLAS_OP_N, C, B, E, &one, w, C, dy, E, &zero, dx, C));
    // dw^T [C, E] += x^T [C, B] dy [B, E]    (accumulate)
    MG_CUBLAS_CHECK(cublasSgemm(cublas_, CUBLAS_OP_N, CUBLAS_OP_T, C, E, B, &one, x, C, dy, E, &one, dw, C));
    bias_grad_cuda(dy, db, B, E, stream_);
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
  void adam_step(float* p, const float* g, float* m, float* v, int64_t n, const AdamParams& a,
                 const double* scalars) override {
    adam_step_cuda(p, g, m, v, n, a, scalars, stream_);
  }
  void clip_grad_norm(float* g, int64_t n, double max_norm, float* norm_out) override {
    const int64_t need = global_norm_partials_size(n);
    if (need > norm_partials_size_) {  // first use of a size: never inside a capture
      // The old buffer is kept until destruction: a graph captured earlier still points at it.
      if (norm_partials_) retired_.push_back(norm_partials_);
      norm_partials_ = static_cast<double*>(alloc_bytes(static_cast<size_t>(need) * sizeof(double)));
      norm_partials_size_ = need;
    }
    clip_grad_norm_cuda(g, n, max_norm, norm_out, norm_partials_, stream_);
  }

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
  CudaOptions opts_;
  std::string name_, cc_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  std::unique_ptr<CudnnOps> cudnn_;
  std::map<decltype(mel_key(MelParams{})), std::unique_ptr<MelCuda>> mel_;
  double* norm_partials_ = nullptr;
  int64_t norm_partials_size_ = 0;
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
