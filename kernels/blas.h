// Row-major GEMM overloads over OpenBLAS's CBLAS for float and double, so that templated CPU
// kernels call one name. C = alpha * op(A) op(B) + beta * C.
#pragma once

namespace mg {

void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
          const float* B, int ldb, float beta, float* C, int ldc);
void gemm(bool trans_a, bool trans_b, int M, int N, int K, double alpha, const double* A, int lda,
          const double* B, int ldb, double beta, double* C, int ldc);

// The CPU kernels parallelise with OpenMP over clips and call single-threaded GEMMs inside;
// OpenBLAS's own threads on top would oversubscribe the cores. The CPU backend calls this once.
void blas_set_threads(int n);

}  // namespace mg
