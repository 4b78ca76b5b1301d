// The arithmetic of the GEMM-shaped ops (conv1d, linear): float32 throughout, or bf16 operands
// with float32 sums (kernels/bf16_cpu.h states exactly where each rounds).
#pragma once

namespace mg {

enum class Precision { F32, BF16 };

inline const char* precision_name(Precision p) { return p == Precision::BF16 ? "bf16" : "fp32"; }

}  // namespace mg
