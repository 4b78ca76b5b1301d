// Log-mel front end on the GPU; see kernels/mel_cuda.cuh for the pipeline and kernels/mel_cpu.cpp
// for the oracle whose formulas (reflect rule, |X|^power, accumulation order, + eps, log) are
// repeated here.
//
// Memory and CUDA Graphs. Everything device-side is owned by this object:
//   - the window and the CSR filterbank, uploaded once by the constructor (cudaMalloc +
//     cudaMemcpy: construction happens outside any graph capture, which
//     CudaBackend::mel_forward checks before making one);
//   - the frame buffer [rows, n_fft] and the spectrum buffer [rows, n_freqs] (rows = B * F),
//     sized for the largest rows seen so far and replaced by larger ones only when a larger
//     batch arrives;
//   - one cuFFT plan per rows value, each with its own work area (auto-allocation off), kept
//     until destruction.
// Growth and planning happen only on the first forward of a new shape, and never during
// stream capture: a new shape while the stream is capturing throws instead. A captured graph
// holds the buffer addresses of the moment it was captured, so replaced buffers are retired,
// not freed, until destruction: a graph captured with a smaller batch still replays after a
// larger batch ran eagerly (and nothing waits on the stream to free them).
//
// Streams and threads: one forward at a time, and successive forwards ordered on the device
// (same stream, or streams the caller orders), since they share the buffers. The object uses
// the device that was current at construction; the caller keeps it current.
#include <cufft.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cuda_check.h"
#include "kernels/mel_cuda.cuh"

namespace mg {

namespace {

constexpr int kFrameThreads = 256;
constexpr int kMelThreads = 256;
// Frames per block of the fused kernel: 32 makes each warp one band over 32 consecutive
// frames, so each output write is one 128-byte run of a row of out[b, m, :].
constexpr int kMaxTileLog2 = 5;
// Shared-memory budget per block of the fused kernel. n_fft = 1024 (513 bins) fits 32 frames
// (65.7 KB, 3 blocks per H100 SM); larger n_fft get fewer frames per tile rather than one
// huge block per SM. The same value (capped by the device) is set as the kernel's
// dynamic-shared-memory limit by every MelCuda, so objects with different n_fft never lower
// each other's limit.
constexpr size_t kMelSmemBudget = 96 * 1024;
// Grid-stride loops: no more blocks than this; the loops cover the rest.
constexpr int64_t kMaxBlocks = 1 << 16;

int grid_for(int64_t work_items) { return static_cast<int>(std::min<int64_t>(std::max<int64_t>(work_items, 1), kMaxBlocks)); }

// One block per frame (grid-stride over frames), threads over the n_fft samples: one int64
// division per frame instead of per sample, and coalesced reads and writes along the frame.
// Frame f of clip b starts at s0 = f * hop - n_fft/2 in the unpadded clip; samples outside
// [0, S) are mirrored without repeating the edge sample (numpy "reflect", mel_cpu.cpp's rule).
// With S > n_fft/2 (checked by forward) one reflection always lands inside the clip:
// k >= -n_fft/2 > -S gives -k < S, and k <= (S/hop)*hop + n_fft/2 - 1 <= S + n_fft/2 - 1 gives
// 2(S-1) - k >= S - n_fft/2 - 1 >= 0.
__global__ void mel_frame_kernel(const float* __restrict__ audio, const float* __restrict__ window,
                                 float* __restrict__ frames, int64_t rows, int F, int64_t S, int n_fft, int hop) {
  const int64_t pad = n_fft / 2;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const int64_t b = r / F;
    const int64_t f = r - b * F;
    const float* x = audio + b * S;
    const int64_t s0 = f * hop - pad;
    float* dst = frames + r * n_fft;
    for (int j = static_cast<int>(threadIdx.x); j < n_fft; j += static_cast<int>(blockDim.x)) {
      int64_t k = s0 + j;
      if (k < 0) {
        k = -k;
      } else if (k >= S) {
        k = 2 * (S - 1) - k;
      }
      dst[j] = x[k] * window[j];
    }
  }
}

// Fused |X|^power, sparse mel projection and log. A block takes one clip and a tile of
// (1 << tile_log2) consecutive frames (grid-stride over tiles):
//   1. the tile's spectra are one contiguous run of spec, read coalesced, turned into
//      |X|^power and stored in shared memory as pw[frame][bin] with an odd row stride ld, so
//      that 32 frames reading the same bin hit 32 different banks;
//   2. thread i computes band m = i >> tile_log2 for frame i & (tile - 1): the warp's lanes
//      share the band (same bins, same weight: broadcast reads, no divergence) and write
//      consecutive frames of out[b, m, :].
// Each output is one sequential sum over the band's bins starting from 0, then + eps, then
// log, as band_logs() on the CPU: the result does not depend on the launch configuration.
__global__ void mel_power_band_log_kernel(const float2* __restrict__ spec, const int32_t* __restrict__ band_start,
                                          const int32_t* __restrict__ band_count,
                                          const int32_t* __restrict__ band_offset,
                                          const float* __restrict__ weights, float* __restrict__ out, int B, int F,
                                          int nf, int ld, int n_mels, int tile_log2, int pmode, float half_power,
                                          float eps) {
  extern __shared__ float pw[];  // [tile][ld]
  const int tile = 1 << tile_log2;
  const int tiles_per_clip = (F + tile - 1) / tile;
  const int64_t n_tiles = static_cast<int64_t>(B) * tiles_per_clip;
  const int n_out = n_mels << tile_log2;
  // t depends on blockIdx only, so every thread of the block runs the same iterations and
  // reaches the same barriers.
  for (int64_t t = blockIdx.x; t < n_tiles; t += gridDim.x) {
    const int64_t b = t / tiles_per_clip;
    const int f0 = static_cast<int>(t - b * tiles_per_clip) * tile;
    const int nb = min(tile, F - f0);  // frames in this tile (the last one may be partial)
    const float2* src = spec + (b * F + f0) * static_cast<int64_t>(nf);
    const int n_load = nb * nf;

    __syncthreads();  // the previous tile's readers are done with pw
    for (int i = static_cast<int>(threadIdx.x); i < n_load; i += static_cast<int>(blockDim.x)) {
      const int f = i / nf;
      const int k = i - f * nf;
      const float2 c = src[i];
      const float p2 = c.x * c.x + c.y * c.y;
      float v = p2;
      if (pmode == 1) {
        v = sqrtf(p2);
      } else if (pmode == 0) {
        v = powf(p2, half_power);  // |X|^power = (|X|^2)^(power/2), as the CPU
      }
      pw[f * ld + k] = v;
    }
    __syncthreads();

    float* dst = out + b * n_mels * static_cast<int64_t>(F) + f0;
    for (int i = static_cast<int>(threadIdx.x); i < n_out; i += static_cast<int>(blockDim.x)) {
      const int fl = i & (tile - 1);
      if (fl >= nb) continue;  // rows of pw past nb were not loaded for this tile
      const int m = i >> tile_log2;
      const int cnt = band_count[m];
      const float* w = weights + band_offset[m];
      const float* p = pw + fl * ld + band_start[m];
      float acc = 0.0f;
      for (int q = 0; q < cnt; ++q) acc += w[q] * p[q];
      dst[static_cast<int64_t>(m) * F + fl] = logf(acc + eps);
    }
  }
}

template <typename T>
void upload(T** dst, const std::vector<T>& src) {
  // At least one element: a zero-byte cudaMalloc may hand back nullptr, which the kernels
  // never dereference but which is clearer to avoid.
  const size_t n = std::max<size_t>(src.size(), 1);
  MG_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(dst), n * sizeof(T)));
  if (!src.empty()) MG_CUDA_CHECK(cudaMemcpy(*dst, src.data(), src.size() * sizeof(T), cudaMemcpyHostToDevice));
}

}  // namespace

struct MelCuda::Impl {
  struct Plan {
    cufftHandle handle = 0;
    void* work = nullptr;
  };

  int n_fft = 0;
  int nf = 0;
  int ld = 0;         // row stride of the shared-memory power tile (odd)
  int tile_log2 = 0;  // frames per fused-kernel block = 1 << tile_log2
  size_t smem_bytes = 0;

  float* window = nullptr;
  int32_t* band_start = nullptr;
  int32_t* band_count = nullptr;
  int32_t* band_offset = nullptr;
  float* weights = nullptr;

  float* frames = nullptr;       // [capacity_rows, n_fft]
  cufftComplex* spec = nullptr;  // [capacity_rows, nf]
  int64_t capacity_rows = 0;
  std::vector<void*> retired;     // outgrown frame / spectrum buffers, freed at destruction
  std::map<int64_t, Plan> plans;  // keyed by rows = B * F

  Impl() = default;
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  // No throwing here: statuses are ignored (a failing free at teardown has no remedy). The
  // owner has synchronised its stream before destroying the object.
  ~Impl() {
    for (auto& kv : plans) {
      (void)cufftDestroy(kv.second.handle);
      if (kv.second.work) (void)cudaFree(kv.second.work);
    }
    for (void* p : retired) (void)cudaFree(p);
    for (void* p : {static_cast<void*>(frames), static_cast<void*>(spec), static_cast<void*>(window),
                    static_cast<void*>(band_start), static_cast<void*>(band_count),
                    static_cast<void*>(band_offset), static_cast<void*>(weights)}) {
      if (p) (void)cudaFree(p);
    }
  }

  // Buffers for `rows` frames. The old ones are retired, not freed: queued work and graphs
  // captured earlier still use them.
  void grow_buffers(int64_t rows) {
    float* new_frames = nullptr;
    cufftComplex* new_spec = nullptr;
    MG_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&new_frames),
                             static_cast<size_t>(rows) * static_cast<size_t>(n_fft) * sizeof(float)));
    const cudaError_t spec_malloc = cudaMalloc(reinterpret_cast<void**>(&new_spec),
                                               static_cast<size_t>(rows) * static_cast<size_t>(nf) * sizeof(cufftComplex));
    if (spec_malloc != cudaSuccess) (void)cudaFree(new_frames);
    MG_CUDA_CHECK(spec_malloc);
    if (frames) retired.push_back(frames);
    if (spec) retired.push_back(spec);
    frames = new_frames;
    spec = new_spec;
    capacity_rows = rows;
  }

  // Batched 1-D R2C plan over `rows` contiguous frames (idist = n_fft reals, odist = nf
  // complex), with a work area of our own. The 64-bit planner accepts rows * n_fft >= 2^31.
  std::map<int64_t, Plan>::iterator make_plan(int64_t rows) {
    Plan plan;
    MG_CUFFT_CHECK(cufftCreate(&plan.handle));
    try {
      MG_CUFFT_CHECK(cufftSetAutoAllocation(plan.handle, 0));
      long long n[1] = {n_fft};
      long long inembed[1] = {n_fft};
      long long onembed[1] = {nf};
      size_t work_bytes = 0;
      MG_CUFFT_CHECK(cufftMakePlanMany64(plan.handle, 1, n, inembed, 1, n_fft, onembed, 1, nf, CUFFT_R2C,
                                         static_cast<long long>(rows), &work_bytes));
      MG_CUFFT_CHECK(cufftGetSize(plan.handle, &work_bytes));
      // Always a real area, even when cuFFT asks for none, so that no plan runs without one.
      MG_CUDA_CHECK(cudaMalloc(&plan.work, std::max<size_t>(work_bytes, 256)));
      MG_CUFFT_CHECK(cufftSetWorkArea(plan.handle, plan.work));
      return plans.emplace(rows, plan).first;
    } catch (...) {
      (void)cufftDestroy(plan.handle);
      if (plan.work) (void)cudaFree(plan.work);
      throw;
    }
  }
};

MelCuda::MelCuda(const MelParams& p) : p_(p), impl_(std::make_unique<Impl>()) {
  // impl_ is a constructed member: if anything below throws, its destructor frees what was
  // allocated so far.
  validate_mel_params(p_);
  Impl& im = *impl_;
  im.n_fft = p_.n_fft;
  im.nf = p_.n_freqs();
  im.ld = im.nf | 1;

  int device = 0;
  MG_CUDA_CHECK(cudaGetDevice(&device));
  int optin = 0;
  MG_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  const size_t budget = std::min(kMelSmemBudget, static_cast<size_t>(optin));
  const size_t row_bytes = static_cast<size_t>(im.ld) * sizeof(float);
  im.tile_log2 = -1;
  for (int l = kMaxTileLog2; l >= 0; --l) {
    if ((row_bytes << l) <= budget) {
      im.tile_log2 = l;
      break;
    }
  }
  if (im.tile_log2 < 0)
    throw std::invalid_argument("mel.n_fft: " + std::to_string(p_.n_fft) +
                                " is too large for the CUDA front end (one frame's power spectrum, " +
                                std::to_string(row_bytes) + " bytes, must fit in " + std::to_string(budget) +
                                " bytes of shared memory); use a smaller mel.n_fft or the CPU backend");
  im.smem_bytes = row_bytes << im.tile_log2;
  MG_CUDA_CHECK(cudaFuncSetAttribute(mel_power_band_log_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     static_cast<int>(budget)));
  // Loads the frame kernel's module now (lazy loading would otherwise do it on the first
  // launch, which may be inside a capture).
  cudaFuncAttributes attr{};
  MG_CUDA_CHECK(cudaFuncGetAttributes(&attr, mel_frame_kernel));

  const MelFilterbank fb = make_mel_filterbank(p_);
  upload(&im.window, hann_window_periodic(p_.n_fft));
  upload(&im.band_start, fb.start);
  upload(&im.band_count, fb.count);
  upload(&im.band_offset, fb.offset);
  upload(&im.weights, fb.weights);
}

MelCuda::~MelCuda() = default;

void MelCuda::forward(const float* audio, float* out, int B, int64_t S, cudaStream_t stream) {
  const int n_fft = p_.n_fft;
  const int64_t pad = n_fft / 2;
  if (B < 0) throw std::invalid_argument("MelCuda::forward: batch size B=" + std::to_string(B) + " must be >= 0");
  if (S <= pad)
    throw std::invalid_argument("MelCuda::forward: clip length S=" + std::to_string(S) + " must exceed n_fft/2=" +
                                std::to_string(pad) +
                                " (reflect padding mirrors n_fft/2 samples at each end); use longer clips "
                                "or a smaller mel.n_fft");
  if (S / p_.hop >= INT_MAX)
    throw std::invalid_argument("MelCuda::forward: clip length S=" + std::to_string(S) + " gives more than " +
                                std::to_string(INT_MAX) + " frames at mel.hop=" + std::to_string(p_.hop) +
                                "; split the clip");
  if (B == 0) return;

  Impl& im = *impl_;
  const int F = mel_frames(S, p_.hop);
  const int64_t rows = static_cast<int64_t>(B) * F;

  const bool need_buffers = rows > im.capacity_rows;
  auto plan_it = im.plans.find(rows);
  if (need_buffers || plan_it == im.plans.end()) {
    throw_if_capturing(stream, "MelCuda::forward: batch shape B=" + std::to_string(B) + ", S=" + std::to_string(S) +
                                   " is new during CUDA Graph capture (it needs buffers and a cuFFT plan, which "
                                   "cannot be made while capturing); run one forward with this shape before "
                                   "capturing");
    if (need_buffers) im.grow_buffers(rows);
    if (plan_it == im.plans.end()) plan_it = im.make_plan(rows);
  }

  mel_frame_kernel<<<grid_for(rows), kFrameThreads, 0, stream>>>(audio, im.window, im.frames, rows, F, S, n_fft,
                                                                  p_.hop);
  MG_CUDA_CHECK_LAUNCH();

  const cufftHandle plan = plan_it->second.handle;
  MG_CUFFT_CHECK(cufftSetStream(plan, stream));
  MG_CUFFT_CHECK(cufftExecR2C(plan, im.frames, im.spec));

  const int tile = 1 << im.tile_log2;
  const int64_t n_tiles = static_cast<int64_t>(B) * ((F + tile - 1) / tile);
  const int pmode = p_.power == 2.0 ? 2 : p_.power == 1.0 ? 1 : 0;
  mel_power_band_log_kernel<<<grid_for(n_tiles), kMelThreads, im.smem_bytes, stream>>>(
      im.spec, im.band_start, im.band_count, im.band_offset, im.weights, out, B, F, im.nf, im.ld, p_.n_mels,
      im.tile_log2, pmode, static_cast<float>(p_.power / 2.0), static_cast<float>(p_.log_eps));
  MG_CUDA_CHECK_LAUNCH();
}

}  // namespace mg
