// The roofline floor of one training step: how long the step must take at least on a device,
// from the FLOPs it has to do and the bytes it has to move, whatever the implementation.
//
//   floor = max(FLOPs / peak FLOP/s, bytes / peak bandwidth)
//
// FLOPs: a multiply-add is 2, an add, multiply, compare, square root or log 1. The
// transforms (mel front end, conv, linear) count their arithmetic, the element-wise ops one per
// element; see each function below. The FFT is a real-input transform of n points, counted
// 2.5 n log2 n (benchFFT's convention for real data: half of the 5 n log2 n of a complex one).
// The mel projection counts the filterbank's non-zero weights, not a dense product.
//
// Bytes (float32), the least any implementation must move through memory, in this model:
//   - the audio is read once;
//   - every forward activation (log-mel, each conv output after ReLU, each pool output, the
//     pooled features, with dropout its output and mask, linear, embedding) is written once and
//     read once, and so is every activation gradient (the log-mel has none: the front end has
//     no parameters);
//   - the parameters are read once, their gradients written once, and the optimizer reads
//     parameters, gradients and both moments and writes parameters and moments (9 floats per
//     parameter in all).
// A real step moves more (backward re-reads activations, ReLU and max-pool are separate passes
// unless fused), so the floor is a bound, not a prediction.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/config.h"
#include "kernels/conv1d_cpu.h"
#include "kernels/mel_cpu.h"

namespace mg {

// ---- FLOPs per op ----------------------------------------------------------------------
// conv forward: 2 B Cout Cin K Tout multiply-adds, plus the bias, B Cout Tout.
double conv_forward_flops(const Conv1dDims& d);
// conv backward to the input: 2 B Cout Cin K Tout.
double conv_backward_data_flops(const Conv1dDims& d);
// conv backward to the weights and bias: 2 B Cout Cin K Tout + B Cout Tout.
double conv_backward_filter_flops(const Conv1dDims& d);
// One real-input FFT of n points: 2.5 n log2 n.
double fft_flops(int n);
// Log-mel of B clips of S samples, per frame: window (n_fft), FFT, power (3 per bin:
// re^2 + im^2), projection (2 per filterbank non-zero), log (n_mels adds of log_eps, n_mels logs).
double mel_flops(const MelParams& p, int B, int64_t S, int64_t filter_nonzeros);
// Dense layer y [B, E] = x [B, C] w^T + b: forward 2 B C E + B E; backward (dx, dw, db)
// 4 B C E + B E.
double linear_forward_flops(int B, int C, int E);
double linear_backward_flops(int B, int C, int E);
// L2 normalisation of B rows of E: forward 3 B E (squares, sum, scale), backward 5 B E.
double l2norm_forward_flops(int B, int E);
double l2norm_backward_flops(int B, int E);
// Fused triplet loss with its gradient, per triplet: 2 dot products of E forward (3 with
// swap), 8 E for the three gradient rows.
double triplet_loss_flops(int n_triplets, int E, bool swap);
// Fused contrastive loss with its gradient over N rows of E: three sweeps of the N x N pairs
// (the similarities for the row statistics, again for the coefficients, then the weighted sum
// of rows), 2 E each, plus an exp per pair and sweep that needs one: 6 N^2 E + 2 N^2.
double contrastive_loss_flops(int N, int E);
// Batch normalisation of B rows of D: forward 5 B D (two statistics passes, standardise, scale
// and shift), backward 8 B D (the statistics again, two sums, dx).
double batchnorm_forward_flops(int B, int D);
double batchnorm_backward_flops(int B, int D);
// Per-band standardisation of n values: a subtraction and a division each.
double band_norm_flops(int64_t n);
// Adam per parameter: moments 7, update 7, decoupled or L2 weight decay 2 more; clipping by
// the global norm 3 (square-add, scale).
double adam_flops(int64_t n_params, const OptimConfig& o);

// ---- one training step ----------------------------------------------------------------
struct CostPart {
  std::string name;
  double flops = 0;
  double bytes = 0;
};

struct StepCost {
  // "mel", "conv stack fwd+bwd", "head + loss", "optimizer": the split melgraph bench prints.
  std::vector<CostPart> parts;
  double flops() const;
  double bytes() const;
};

// One step of `batch` clips with `n_triplets` triplets (the offline layout: batch = 3 n; with
// the contrastive loss n anchors and their positives: batch = 2 n), forward (with the input
// standardisation and batch norm the config has), fused loss, backward, clipping (when
// configured) and Adam.
StepCost training_step_cost(const Config& c, int batch, int n_triplets);

// ---- device peaks ---------------------------------------------------------------------
struct DevicePeak {
  std::string device;        // e.g. "NVIDIA H200 (132 SMs)" or "cpu, 2 threads"
  double flops_per_s = 0;    // FP32
  double bytes_per_s = 0;    // main memory
  std::string source;        // where the numbers come from, one line
  int64_t cache_bytes = 0;   // last-level cache (GPU L2), for benchmarks that must miss it
};

// Measured on this machine with `threads` threads (a few hundred ms): one single-threaded
// sgemm (1024^3, OpenBLAS) per thread at once, as the CPU kernels run them, and a parallel
// copy of 128 MiB (read + write counted). An achievable peak, below the datasheet's.
DevicePeak measure_cpu_peak(int threads);

// The CUDA device's FP32 peak and memory bandwidth: from NVIDIA's datasheet for the H100 and
// H200 (matched by name), otherwise derived from the device properties (SMs x FP32 lanes per SM
// x 2 x boost clock; 2 x memory clock x bus width). Throws without a CUDA build or device.
DevicePeak cuda_peak(int device);

struct RooflineFloor {
  double compute_seconds = 0;  // FLOPs / peak FLOP/s
  double memory_seconds = 0;   // bytes / peak bandwidth
  double seconds() const { return compute_seconds > memory_seconds ? compute_seconds : memory_seconds; }
  bool compute_bound() const { return compute_seconds >= memory_seconds; }
};

RooflineFloor roofline_floor(double flops, double bytes, const DevicePeak& peak);

}  // namespace mg
