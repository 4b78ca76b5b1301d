// The one list of melgraph's ops: every Backend op family, once. The tables that must cover
// every op are made from it, so a new row that lacks one of them does not compile:
//
//   tests/test_backend_ops.cpp   add_<op>_cases(cases, seeds): the op's cases, each run on the
//                                CPU twice in CI and against the CUDA backend on a GPU
//   tests/test_ops_gradcheck.cpp <op>_grad_cases(): the backward against central differences
//                                in double (rows whose gradient is `central`)
//   tests/test_reference_ops.cpp <op>_reference_cases(seed): the CPU oracle against PyTorch in
//                                float64 (rows whose reference is `torch`); ref_ops.py must
//                                know the op (it is told the list and refuses a missing one)
//   bench/bench_backend_ops.cpp  register_<op>(family): its benchmarks per backend, counting
//                                FLOPs and bytes as engine/perf/roofline.h does
//
// Row: MG_OP(op, gradient, reference, kernels)
//   op         the name everywhere: the prefix of its test case and benchmark names, its key
//              in ref_ops.py
//   gradient   central: a backward, checked by central differences
//              none:    nothing to differentiate (no backward, or an optimizer step), or a
//                       bf16 op, whose backward rounds and so is no exact derivative
//                       (its float32 twin's row is checked)
//   reference  torch:   PyTorch autograd in float64 (tests/test_reference_ops.cpp)
//              own:     a check of its own, named in the row's comment (no outside library
//                       computes the same thing)
//   kernels    kernels/<kernels>_cpu.{h,cpp} holds the oracle; its CUDA twin is
//              <kernels>_cuda.cu, or a library-backed one (_cudnn, _cublas) beside it
//
// The order is the training step's: the front end, the model's layers, the losses, the
// optimizer; fill (initialisation) first, top-k (the index) last.
#pragma once

// One aligned row per op (clang-format would pack them).
// clang-format off
#define MELGRAPH_OPS(MG_OP)                                                                               \
  MG_OP(fill, none, own, "fill")                /* exact values; Philox streams: test_philox */          \
  MG_OP(mel, none, own, "mel")                  /* torchaudio: tests/test_reference_mel.cpp */           \
  MG_OP(band_norm, none, torch, "band_norm")                                                              \
  MG_OP(conv1d, central, torch, "conv1d")                                                                 \
  MG_OP(conv1d_bf16, none, own, "bf16")         /* rounding points vs float64: test_bf16 */              \
  MG_OP(relu, central, torch, "activation")                                                               \
  MG_OP(maxpool, central, torch, "pool")                                                                  \
  MG_OP(mean_time, central, torch, "reduce")                                                              \
  MG_OP(time_pool, central, own, "reduce")      /* max / L2 over time: hand cases in gradcheck */         \
  MG_OP(batchnorm, central, torch, "batchnorm")                                                           \
  MG_OP(dropout, central, own, "dropout")       /* the Philox mask: gradcheck Dropout.* */                \
  MG_OP(linear, central, torch, "linear")                                                                 \
  MG_OP(linear_bf16, none, own, "bf16")         /* rounding points vs float64: test_bf16 */              \
  MG_OP(l2norm, central, torch, "reduce")                                                                 \
  MG_OP(triplet, central, torch, "triplet_loss")                                                          \
  MG_OP(contrastive, central, torch, "contrastive_loss")                                                  \
  MG_OP(mine, none, own, "mining")              /* brute force over all triplets: test_mining */          \
  MG_OP(adam, none, torch, "optim")                                                                       \
  MG_OP(clip_grad_norm, none, torch, "optim")                                                             \
  MG_OP(topk, none, own, "topk")                /* float64 ranks: TopkCosineCuda.*, test_index */
// clang-format on

namespace mg {

// The same rows as data, for the checks that walk the list (every row has cases, names its
// files): the columns as strings.
struct OpRow {
  const char* op;
  const char* gradient;   // "central" or "none"
  const char* reference;  // "torch" or "own"
  const char* kernels;    // kernels/<kernels>_cpu.h ...
};
#define MG_OP_ROW(op, gradient, reference, kernels) OpRow{#op, #gradient, #reference, kernels},
inline constexpr OpRow kOpRows[] = {MELGRAPH_OPS(MG_OP_ROW)};
#undef MG_OP_ROW

}  // namespace mg
