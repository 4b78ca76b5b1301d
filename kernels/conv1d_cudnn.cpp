// cuDNN 9, legacy API (cudnn_cnn.h / cudnn_ops.h). Policies, in one place:
//
// Conv1d as a 2-D cross-correlation with H = 1 (PyTorch's semantics): x [B, Cin, 1, Tin],
// w [Cout, Cin, 1, K], y [B, Cout, 1, Tout], NCHW float, compute type float, pad (0, P),
// stride 1, dilation 1.
//   - cuDNN pads symmetrically. Asymmetric padding ("same" with even K: pad_right =
//     pad_left + 1) runs with P = max(pad_left, pad_right), which yields the wanted outputs
//     plus |pad_right - pad_left| extra columns, into scratch; a slice kernel (fused with the
//     bias) copies the wanted columns out. The backward places dy into that padded layout with
//     zeros in the dropped columns and hands it to cuDNN: the exact adjoint of the slice.
//     Symmetric shapes (valid, odd-K same) go straight to cuDNN with bias via cudnnAddTensor.
//   - Math type requested: CUDNN_FMA_MATH without tf32 ("restricted to kernels that use FMA
//     instructions": fp32 parity with the CPU), CUDNN_TENSOR_OP_MATH with tf32 (Tensor Cores
//     permitted; for float data on sm_80+ that means TF32; no down-conversion to fp16, which
//     only *_ALLOW_CONVERSION permits). Each result of Get/Find carries the math type it runs
//     under, and that is what is accepted, per cuDNN's cudnnMathType_t documentation:
//       without tf32: FMA, or DEFAULT on GPUs before sm_80, where DEFAULT uses no Tensor Cores
//       and so is FMA math (from sm_80 on DEFAULT permits TF32: refused);
//       with tf32, and for bf16 data: anything but TENSOR_OP_MATH_ALLOW_CONVERSION.
//     (PyTorch asserts the same for fp32 without TF32: cuDNN answers an FMA request with FMA
//     results.) Each direction has its own descriptor, set to the chosen result's math type.
//     NVIDIA_TF32_OVERRIDE=0 in the environment disables TF32 whatever is set here.
//
// bf16 (Precision::BF16, kernels/bf16_cpu.h): x, w and the padded dy are rounded into bf16
// staging buffers, cuDNN runs with bf16 tensors and a float compute type (its
// PSEUDO_BFLOAT16_CONFIG, sm_80 and newer) and writes a bf16 result, which is widened into the
// caller's float32 tensors (y plus the bias, dx overwritten, dw accumulated). db comes from the
// float32 dy. Each precision has its own plan (descriptors, algorithms) per shape.
//
// Algorithm choice, once per shape (B, Cin, Cout, Tin, K, pads) and direction, on the first
// call that needs it:
//   - default mode: cudnnFind*AlgorithmEx times every algorithm (outputs go to scratch, never
//     to the caller's buffers: the backward filter accumulates, so Find must not touch dw);
//     the Find workspace is sized from the cudnnGet*Algorithm_v7 list, capped at 1 GiB.
//   - deterministic mode: cudnnGet*Algorithm_v7's heuristic order instead of Find's timings.
//     Timings are noisy, so Find can pick different (bitwise different) algorithms from one
//     run to the next; the heuristic depends only on the shape and the GPU.
//   Accepted: status SUCCESS, workspace <= 1 GiB (<= the Find workspace for Find), the
//   math type above, and in deterministic mode determinism == CUDNN_DETERMINISTIC. The first
//   accepted result wins (Find sorts by time). None accepted: CudaError listing the candidates.
//
// Memory: one workspace and one scratch buffer, grown only when a new shape needs more.
// Growth never frees the old buffer (it is kept until destruction): a CUDA graph captured
// earlier keeps valid pointers. Searches synchronise and growth allocates, so a new shape met
// while the stream is being captured throws CudaError: run every shape eagerly once first.
//
// Max-pool is not here: cuDNN documents no rule for ties, and after a ReLU half of all windows
// tie among zeros, so the pool is our own kernel (kernels/pool_cuda.cu) with the CPU's rule.
#include "kernels/conv1d_cudnn.h"

#include <cudnn.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/bf16_cuda.h"
#include "kernels/conv1d_cudnn_detail.h"
#include "kernels/cuda_check.h"
#include "kernels/grow_buffer_cuda.h"

namespace mg {

namespace {

constexpr size_t kWorkspaceCap = size_t{1} << 30;

template <class T, cudnnStatus_t (*Create)(T*), cudnnStatus_t (*Destroy)(T)>
class Desc {
 public:
  Desc() { MG_CUDNN_CHECK(Create(&d_)); }
  ~Desc() {
    if (d_) (void)Destroy(d_);
  }
  Desc(const Desc&) = delete;
  Desc& operator=(const Desc&) = delete;
  T get() const { return d_; }

 private:
  T d_ = nullptr;
};

using TensorDesc = Desc<cudnnTensorDescriptor_t, cudnnCreateTensorDescriptor, cudnnDestroyTensorDescriptor>;
using FilterDesc = Desc<cudnnFilterDescriptor_t, cudnnCreateFilterDescriptor, cudnnDestroyFilterDescriptor>;
using ConvDesc =
    Desc<cudnnConvolutionDescriptor_t, cudnnCreateConvolutionDescriptor, cudnnDestroyConvolutionDescriptor>;

// A temporary allocation for an algorithm search (freed when the search ends).
class TempBuffer {
 public:
  TempBuffer() = default;
  ~TempBuffer() {
    if (p_) (void)cudaFree(p_);
  }
  TempBuffer(const TempBuffer&) = delete;
  TempBuffer& operator=(const TempBuffer&) = delete;

  void alloc(size_t bytes) {
    if (bytes == 0) return;
    void* p = nullptr;
    MG_CUDA_CHECK(cudaMalloc(&p, bytes));
    p_ = p;
    bytes_ = bytes;
  }
  // False (and nothing held) when the device is out of memory.
  bool try_alloc(size_t bytes) {
    if (bytes == 0) return true;
    void* p = nullptr;
    const cudaError_t search_workspace_malloc = cudaMalloc(&p, bytes);
    if (search_workspace_malloc == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();  // not sticky; clear it so later checks do not see it
      return false;
    }
    MG_CUDA_CHECK(search_workspace_malloc);
    p_ = p;
    bytes_ = bytes;
    return true;
  }
  void* get() const { return p_; }
  size_t bytes() const { return bytes_; }

 private:
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

template <class Algo>
struct AlgoChoice {
  Algo algo{};
  size_t ws_bytes = 0;
  bool ready = false;
};

struct ConvPlan {
  Conv1dDims d{};
  bool bf16 = false;  // x, w, y_full in bf16 (kernels/bf16_cpu.h); y and bias stay float32
  int P = 0;       // symmetric padding given to cuDNN
  int Tout = 0;    // the caller's output width
  int Tfull = 0;   // cuDNN's output width with padding P
  int offset = 0;  // column of the caller's first output in cuDNN's output
  bool asym = false;
  TensorDesc x, y_full, y, bias;
  FilterDesc w;
  ConvDesc conv_fwd, conv_bwd_data, conv_bwd_filter;  // one per direction: math types may differ
  AlgoChoice<cudnnConvolutionFwdAlgo_t> fwd;
  AlgoChoice<cudnnConvolutionBwdDataAlgo_t> bwd_data;
  AlgoChoice<cudnnConvolutionBwdFilterAlgo_t> bwd_filter;
};

using ConvKey = std::array<int, 8>;

std::string describe(const Conv1dDims& d) {
  return "B=" + std::to_string(d.B) + " Cin=" + std::to_string(d.Cin) + " Cout=" + std::to_string(d.Cout) +
         " Tin=" + std::to_string(d.Tin) + " K=" + std::to_string(d.K) + " pad=(" + std::to_string(d.pad_left) +
         "," + std::to_string(d.pad_right) + ")";
}

void check_dims(const Conv1dDims& d) {
  if (d.B < 0 || d.Cin < 1 || d.Cout < 1 || d.Tin < 1 || d.K < 1 || d.pad_left < 0 || d.pad_right < 0 ||
      d.Tout() < 1)
    throw std::invalid_argument("Conv1dCudnn conv1d: invalid shape " + describe(d) +
                                ": need B >= 0, Cin, Cout, Tin, K >= 1, pads >= 0 and Tin + pads >= K");
}

// cuDNN's 4-D descriptors take int sizes and compute int strides.
void check_int_elems(int64_t n, const char* what, const std::string& shape) {
  if (n > INT_MAX)
    throw std::invalid_argument(std::string("Conv1dCudnn: ") + what + " of " + shape + " has " + std::to_string(n) +
                                " elements, more than cuDNN's 4-D descriptors can address (2^31 - 1); "
                                "use a smaller batch");
}

const char* math_name(cudnnMathType_t m) {
  switch (m) {
    case CUDNN_DEFAULT_MATH: return "DEFAULT";
    case CUDNN_TENSOR_OP_MATH: return "TENSOR_OP";
    case CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION: return "TENSOR_OP_ALLOW_CONVERSION";
    case CUDNN_FMA_MATH: return "FMA";
  }
  return "?";
}

}  // namespace

struct Conv1dCudnn::Impl {
  cudaStream_t stream;
  Conv1dCudnnOptions opts;
  cudnnHandle_t handle = nullptr;
  GrowBuffer workspace;  // cuDNN's, shared by every call (all on one stream)
  GrowBuffer scratch;    // the padded conv output / gradient of asymmetric shapes
  // bf16: the operands rounded from float32 (x, w, the padded dy) and cuDNN's bf16 result (y,
  // dx or dw, one at a time: each is widened into the caller's float32 before the next).
  GrowBuffer bf_x, bf_w, bf_g, bf_out;
  std::map<ConvKey, std::unique_ptr<ConvPlan>> convs;
  bool ran_any = false;
  int compute_major = 0;  // the device's compute capability (sm_XY: X)

  Impl(cudaStream_t s, const Conv1dCudnnOptions& o) : stream(s), opts(o) {}
  ~Impl() {
    convs.clear();
    if (handle) (void)cudnnDestroy(handle);
  }

  void init() {
    int device = 0;
    MG_CUDA_CHECK(cudaGetDevice(&device));
    MG_CUDA_CHECK(cudaDeviceGetAttribute(&compute_major, cudaDevAttrComputeCapabilityMajor, device));
    MG_CUDNN_CHECK(cudnnCreate(&handle));
    MG_CUDNN_CHECK(cudnnSetStream(handle, stream));
  }

  // bf16 data asks for Tensor Cores (sums stay float32: the descriptors' compute type).
  cudnnMathType_t requested_math(bool bf16) const { return bf16 || opts.tf32 ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH; }

  // New shapes allocate and searches synchronise: neither may happen inside a graph capture.
  void require_not_capturing(const std::string& what) const {
    throw_if_capturing(stream, "Conv1dCudnn: " + what +
                                   " first met during a CUDA Graph capture; cuDNN algorithm searches synchronise "
                                   "and buffers may grow, so every shape must run eagerly once before capture "
                                   "(see Conv1dCudnn::ready_for_capture)");
  }

  template <class Perf>
  bool acceptable(const Perf& p, size_t ws_limit, bool bf16) const {
    if (p.status != CUDNN_STATUS_SUCCESS || p.memory > ws_limit) return false;
    if (opts.deterministic && p.determinism != CUDNN_DETERMINISTIC) return false;
    // bf16 data sums in float32 under any math type but the one that may convert it (to fp16,
    // whose range is far narrower than bf16's); the same rule as TF32's.
    if (bf16 || opts.tf32) return p.mathType != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION;
    return p.mathType == CUDNN_FMA_MATH || (p.mathType == CUDNN_DEFAULT_MATH && compute_major < 8);
  }

  // One direction's search. get_v7(n, &returned, perf); find_ex(n, &returned, perf, out, ws,
  // ws_bytes) writes only to `out` (out_bytes of scratch); ws_size(algo, &bytes).
  template <class Perf, class GetV7, class FindEx, class WsSize>
  AlgoChoice<decltype(Perf::algo)> search(const char* direction, const ConvPlan& plan,
                                          cudnnConvolutionDescriptor_t conv, int max_count, size_t out_bytes,
                                          GetV7 get_v7, FindEx find_ex, WsSize ws_size) {
    const Conv1dDims& d = plan.d;
    require_not_capturing(std::string("the conv1d ") + direction + " algorithm search for " + describe(d));
    MG_CUDNN_CHECK(cudnnSetConvolutionMathType(conv, requested_math(plan.bf16)));
    const int n_req = std::max(max_count, 1);
    std::vector<Perf> perf(static_cast<size_t>(n_req));
    int returned = 0;
    MG_CUDNN_CHECK(get_v7(n_req, &returned, perf.data()));
    size_t ws_limit = kWorkspaceCap;
    if (!opts.deterministic) {
      size_t find_bytes = 0;
      for (int i = 0; i < returned; ++i)
        if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].memory <= kWorkspaceCap)
          find_bytes = std::max(find_bytes, perf[i].memory);
      TempBuffer find_ws, find_out;
      // Out of memory for the largest workspace: search with none; algorithms that need one
      // then report a failure status and are skipped.
      if (!find_ws.try_alloc(find_bytes)) find_bytes = 0;
      find_out.alloc(out_bytes);
      // Find runs on the handle's stream and synchronises; finish the caller's queued work
      // first so the timings are not skewed by it.
      MG_CUDA_CHECK(cudaStreamSynchronize(stream));
      returned = 0;
      MG_CUDNN_CHECK(find_ex(n_req, &returned, perf.data(), find_out.get(), find_ws.get(), find_bytes));
      ws_limit = find_bytes;
    }
    for (int i = 0; i < returned; ++i) {
      const Perf& p = perf[i];
      if (!acceptable(p, ws_limit, plan.bf16)) continue;
      if (cudnnSetConvolutionMathType(conv, p.mathType) != CUDNN_STATUS_SUCCESS) continue;
      size_t need = 0;
      if (ws_size(p.algo, &need) != CUDNN_STATUS_SUCCESS) continue;
      need = std::max(need, p.memory);
      if (need > kWorkspaceCap) continue;
      workspace.reserve(need, stream, "Conv1dCudnn: the cuDNN workspace");
      AlgoChoice<decltype(Perf::algo)> c;
      c.algo = p.algo;
      c.ws_bytes = need;
      c.ready = true;
      return c;
    }
    MG_CUDNN_CHECK(cudnnSetConvolutionMathType(conv, requested_math(plan.bf16)));
    std::string list;
    for (int i = 0; i < returned; ++i)
      list += std::string(i ? "; " : "") + "algo " + std::to_string(static_cast<int>(perf[i].algo)) + " " +
              cudnnGetErrorString(perf[i].status) + " " + math_name(perf[i].mathType) +
              (perf[i].determinism == CUDNN_DETERMINISTIC ? " deterministic" : " non-deterministic") + " " +
              std::to_string(perf[i].memory) + " B";
    throw CudaError(std::string("Conv1dCudnn: no usable cuDNN conv1d ") + direction + " algorithm for " + describe(d) +
                    " (" + (plan.bf16 ? "bf16, " : "") + "deterministic=" + (opts.deterministic ? "on" : "off") +
                    ", tf32=" + (opts.tf32 ? "on" : "off") +
                    ", workspace cap 1 GiB); candidates: " + (list.empty() ? "none" : list));
  }

  ConvPlan& conv_plan(const Conv1dDims& d, bool bf16) {
    const ConvKey key{d.B, d.Cin, d.Cout, d.Tin, d.K, d.pad_left, d.pad_right, bf16 ? 1 : 0};
    if (auto it = convs.find(key); it != convs.end()) return *it->second;
    require_not_capturing(std::string("the conv1d shape ") + (bf16 ? "(bf16) " : "") + describe(d));
    if (bf16 && compute_major < 8)
      throw CudaError("Conv1dCudnn: bf16 convolutions need a GPU of compute capability 8.0 or newer (this one is " +
                      std::to_string(compute_major) + ".x); use train.precision = \"fp32\"");

    auto p = std::make_unique<ConvPlan>();
    p->d = d;
    p->bf16 = bf16;
    p->P = std::max(d.pad_left, d.pad_right);
    p->Tout = d.Tout();
    p->Tfull = d.Tin + 2 * p->P - d.K + 1;
    p->offset = p->P - d.pad_left;
    p->asym = d.pad_left != d.pad_right;
    const std::string shape = describe(d);
    check_int_elems(int64_t{d.B} * d.Cin * d.Tin, "the input", shape);
    check_int_elems(int64_t{d.B} * d.Cout * p->Tfull, "the output", shape);
    check_int_elems(int64_t{d.Cout} * d.Cin * d.K, "the weight", shape);

    // bf16: PSEUDO_BFLOAT16_CONFIG in cuDNN's terms (bf16 x, w, y; float compute type).
    const cudnnDataType_t data = bf16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
    MG_CUDNN_CHECK(cudnnSetTensor4dDescriptor(p->x.get(), CUDNN_TENSOR_NCHW, data, d.B, d.Cin, 1, d.Tin));
    MG_CUDNN_CHECK(cudnnSetTensor4dDescriptor(p->y_full.get(), CUDNN_TENSOR_NCHW, data, d.B, d.Cout, 1, p->Tfull));
    MG_CUDNN_CHECK(cudnnSetTensor4dDescriptor(p->y.get(), CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, d.B, d.Cout, 1, p->Tout));
    MG_CUDNN_CHECK(cudnnSetTensor4dDescriptor(p->bias.get(), CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, d.Cout, 1, 1));
    MG_CUDNN_CHECK(cudnnSetFilter4dDescriptor(p->w.get(), data, CUDNN_TENSOR_NCHW, d.Cout, d.Cin, 1, d.K));
    for (cudnnConvolutionDescriptor_t c : {p->conv_fwd.get(), p->conv_bwd_data.get(), p->conv_bwd_filter.get()}) {
      MG_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(c, 0, p->P, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
      MG_CUDNN_CHECK(cudnnSetConvolutionMathType(c, requested_math(bf16)));
    }
    int n = 0, c = 0, h = 0, w = 0;
    MG_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(p->conv_fwd.get(), p->x.get(), p->w.get(), &n, &c, &h, &w));
    if (n != d.B || c != d.Cout || h != 1 || w != p->Tfull)
      throw CudaError("Conv1dCudnn: cuDNN's conv output for " + shape + " is [" + std::to_string(n) + ", " +
                      std::to_string(c) + ", " + std::to_string(h) + ", " + std::to_string(w) + "], expected [" +
                      std::to_string(d.B) + ", " + std::to_string(d.Cout) + ", 1, " + std::to_string(p->Tfull) + "]");
    const int64_t nx = int64_t{d.B} * d.Cin * d.Tin, nw = int64_t{d.Cout} * d.Cin * d.K,
                  ny_full = int64_t{d.B} * d.Cout * p->Tfull;
    if (p->asym && !bf16) scratch.reserve(static_cast<size_t>(ny_full) * sizeof(float), stream, "Conv1dCudnn: scratch");
    if (bf16) {
      constexpr size_t half = sizeof(__nv_bfloat16);
      bf_x.reserve(static_cast<size_t>(nx) * half, stream, "Conv1dCudnn: the bf16 input");
      bf_w.reserve(static_cast<size_t>(nw) * half, stream, "Conv1dCudnn: the bf16 weight");
      bf_g.reserve(static_cast<size_t>(ny_full) * half, stream, "Conv1dCudnn: the bf16 output gradient");
      bf_out.reserve(static_cast<size_t>(std::max({nx, nw, ny_full})) * half, stream, "Conv1dCudnn: the bf16 result");
    }
    return *convs.emplace(key, std::move(p)).first->second;
  }

  void choose_forward(ConvPlan& p, const void* x, const void* w) {
    int max_count = 0;
    MG_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(handle, &max_count));
    const cudnnConvolutionDescriptor_t conv = p.conv_fwd.get();
    const size_t out_bytes = static_cast<size_t>(int64_t{p.d.B} * p.d.Cout * p.Tfull) * sizeof(float);
    p.fwd = search<cudnnConvolutionFwdAlgoPerf_t>(
        "forward", p, conv, max_count, out_bytes,
        [&](int req, int* ret, cudnnConvolutionFwdAlgoPerf_t* perf) {
          return cudnnGetConvolutionForwardAlgorithm_v7(handle, p.x.get(), p.w.get(), conv, p.y_full.get(), req, ret,
                                                        perf);
        },
        [&](int req, int* ret, cudnnConvolutionFwdAlgoPerf_t* perf, void* out, void* ws, size_t ws_bytes) {
          return cudnnFindConvolutionForwardAlgorithmEx(handle, p.x.get(), x, p.w.get(), w, conv, p.y_full.get(), out,
                                                        req, ret, perf, ws, ws_bytes);
        },
        [&](cudnnConvolutionFwdAlgo_t algo, size_t* bytes) {
          return cudnnGetConvolutionForwardWorkspaceSize(handle, p.x.get(), p.w.get(), conv, p.y_full.get(), algo,
                                                         bytes);
        });
  }

  void choose_backward_data(ConvPlan& p, const void* w, const void* dy_full) {
    int max_count = 0;
    MG_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(handle, &max_count));
    const cudnnConvolutionDescriptor_t conv = p.conv_bwd_data.get();
    const size_t out_bytes = static_cast<size_t>(int64_t{p.d.B} * p.d.Cin * p.d.Tin) * sizeof(float);
    p.bwd_data = search<cudnnConvolutionBwdDataAlgoPerf_t>(
        "backward-data", p, conv, max_count, out_bytes,
        [&](int req, int* ret, cudnnConvolutionBwdDataAlgoPerf_t* perf) {
          return cudnnGetConvolutionBackwardDataAlgorithm_v7(handle, p.w.get(), p.y_full.get(), conv, p.x.get(), req,
                                                             ret, perf);
        },
        [&](int req, int* ret, cudnnConvolutionBwdDataAlgoPerf_t* perf, void* out, void* ws, size_t ws_bytes) {
          return cudnnFindConvolutionBackwardDataAlgorithmEx(handle, p.w.get(), w, p.y_full.get(), dy_full, conv,
                                                             p.x.get(), out, req, ret, perf, ws, ws_bytes);
        },
        [&](cudnnConvolutionBwdDataAlgo_t algo, size_t* bytes) {
          return cudnnGetConvolutionBackwardDataWorkspaceSize(handle, p.w.get(), p.y_full.get(), conv, p.x.get(), algo,
                                                              bytes);
        });
  }

  void choose_backward_filter(ConvPlan& p, const void* x, const void* dy_full) {
    int max_count = 0;
    MG_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(handle, &max_count));
    const cudnnConvolutionDescriptor_t conv = p.conv_bwd_filter.get();
    const size_t out_bytes = static_cast<size_t>(int64_t{p.d.Cout} * p.d.Cin * p.d.K) * sizeof(float);
    p.bwd_filter = search<cudnnConvolutionBwdFilterAlgoPerf_t>(
        "backward-filter", p, conv, max_count, out_bytes,
        [&](int req, int* ret, cudnnConvolutionBwdFilterAlgoPerf_t* perf) {
          return cudnnGetConvolutionBackwardFilterAlgorithm_v7(handle, p.x.get(), p.y_full.get(), conv, p.w.get(), req,
                                                               ret, perf);
        },
        [&](int req, int* ret, cudnnConvolutionBwdFilterAlgoPerf_t* perf, void* out, void* ws, size_t ws_bytes) {
          return cudnnFindConvolutionBackwardFilterAlgorithmEx(handle, p.x.get(), x, p.y_full.get(), dy_full, conv,
                                                               p.w.get(), out, req, ret, perf, ws, ws_bytes);
        },
        [&](cudnnConvolutionBwdFilterAlgo_t algo, size_t* bytes) {
          return cudnnGetConvolutionBackwardFilterWorkspaceSize(handle, p.x.get(), p.y_full.get(), conv, p.w.get(),
                                                                algo, bytes);
        });
  }
};

Conv1dCudnn::Conv1dCudnn(cudaStream_t stream, const Conv1dCudnnOptions& opts) : impl_(std::make_unique<Impl>(stream, opts)) {
  impl_->init();  // on a throw, impl_'s destructor releases what init created
}

Conv1dCudnn::~Conv1dCudnn() = default;

void Conv1dCudnn::conv1d_forward(const float* x, const float* w, const float* b, float* y, const Conv1dDims& d,
                                 Precision prec) {
  check_dims(d);
  if (d.B == 0) return;
  Impl& m = *impl_;
  const bool bf16 = prec == Precision::BF16;
  ConvPlan& p = m.conv_plan(d, bf16);
  const float one = 1.0f, zero = 0.0f;
  const void* xin = x;
  const void* win = w;
  void* out = p.asym ? m.scratch.get() : y;
  if (bf16) {
    to_bf16_cuda(x, m.bf_x.as<__nv_bfloat16>(), int64_t{d.B} * d.Cin * d.Tin, m.stream);
    to_bf16_cuda(w, m.bf_w.as<__nv_bfloat16>(), int64_t{d.Cout} * d.Cin * d.K, m.stream);
    xin = m.bf_x.get();
    win = m.bf_w.get();
    out = m.bf_out.get();
  }
  if (!p.fwd.ready) m.choose_forward(p, xin, win);
  MG_CUDNN_CHECK(cudnnConvolutionForward(m.handle, &one, p.x.get(), xin, p.w.get(), win, p.conv_fwd.get(), p.fwd.algo,
                                         m.workspace.get(), p.fwd.ws_bytes, &zero, p.y_full.get(), out));
  const int64_t rows = int64_t{d.B} * d.Cout;
  if (bf16)  // widened, then the float32 bias (symmetric shapes too: offset 0, Tfull = Tout)
    detail::conv_slice_bias_cuda(static_cast<const __nv_bfloat16*>(out), b, y, rows, d.Cout, p.Tfull, p.Tout, p.offset,
                                 m.stream);
  else if (p.asym)
    detail::conv_slice_bias_cuda(static_cast<const float*>(out), b, y, rows, d.Cout, p.Tfull, p.Tout, p.offset,
                                 m.stream);
  else
    MG_CUDNN_CHECK(cudnnAddTensor(m.handle, &one, p.bias.get(), b, &one, p.y.get(), y));
  m.ran_any = true;
}

void Conv1dCudnn::conv1d_backward(const float* dy, const float* x, const float* w, float* dx, float* dw, float* db,
                                  const Conv1dDims& d, Precision prec) {
  check_dims(d);
  if (d.B == 0) return;  // no clips: dx is empty and dw, db get nothing added
  Impl& m = *impl_;
  const bool bf16 = prec == Precision::BF16;
  ConvPlan& p = m.conv_plan(d, bf16);
  const float one = 1.0f, zero = 0.0f;
  const int64_t rows = int64_t{d.B} * d.Cout, nx = int64_t{d.B} * d.Cin * d.Tin, nw = int64_t{d.Cout} * d.Cin * d.K;
  const void* g = dy;  // the gradient in cuDNN's (padding P) output layout
  const void* xin = x;
  const void* win = w;
  if (bf16) {
    // The forward's bf16 copies are gone (every stage shares the buffers): round again.
    detail::conv_pad_grad_cuda(dy, m.bf_g.as<__nv_bfloat16>(), rows, p.Tout, p.Tfull, p.offset, m.stream);
    to_bf16_cuda(x, m.bf_x.as<__nv_bfloat16>(), nx, m.stream);
    to_bf16_cuda(w, m.bf_w.as<__nv_bfloat16>(), nw, m.stream);
    g = m.bf_g.get();
    xin = m.bf_x.get();
    win = m.bf_w.get();
  } else if (p.asym) {
    detail::conv_pad_grad_cuda(dy, m.scratch.floats(), rows, p.Tout, p.Tfull, p.offset, m.stream);
    g = m.scratch.get();
  }
  if (dx) {
    if (!p.bwd_data.ready) m.choose_backward_data(p, win, g);
    void* dx_out = bf16 ? m.bf_out.get() : dx;
    MG_CUDNN_CHECK(cudnnConvolutionBackwardData(m.handle, &one, p.w.get(), win, p.y_full.get(), g,
                                                p.conv_bwd_data.get(), p.bwd_data.algo, m.workspace.get(),
                                                p.bwd_data.ws_bytes, &zero, p.x.get(), dx_out));
    if (bf16) from_bf16_cuda(m.bf_out.as<__nv_bfloat16>(), dx, nx, false, m.stream);
  }
  if (!p.bwd_filter.ready) m.choose_backward_filter(p, xin, g);
  // float32 accumulates in place (beta 1); bf16 sums into its own buffer and is widened onto dw.
  void* dw_out = bf16 ? m.bf_out.get() : dw;
  const float* dw_beta = bf16 ? &zero : &one;
  MG_CUDNN_CHECK(cudnnConvolutionBackwardFilter(m.handle, &one, p.x.get(), xin, p.y_full.get(), g,
                                                p.conv_bwd_filter.get(), p.bwd_filter.algo, m.workspace.get(),
                                                p.bwd_filter.ws_bytes, dw_beta, p.w.get(), dw_out));
  if (bf16) from_bf16_cuda(m.bf_out.as<__nv_bfloat16>(), dw, nw, true, m.stream);
  // The bias gradient from the float32 dy, whatever the precision (p.y and p.bias are float32).
  MG_CUDNN_CHECK(cudnnConvolutionBackwardBias(m.handle, &one, p.y.get(), dy, &one, p.bias.get(), db));
  m.ran_any = true;
}

// Shapes are not known in advance: this says that at least one op has run (so the caller did
// an eager pass). The real guard is per call: a new shape met during capture throws.
bool Conv1dCudnn::ready_for_capture() const { return impl_->ran_any; }

}  // namespace mg
