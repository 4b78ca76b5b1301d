// Row-major GEMM overloads over OpenBLAS's CBLAS for float and double, so that templated CPU
// kernels call one name. C = alpha * op(A) op(B) + beta * C.
#pragma once

namespace mg {

void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
          const float* B, int ldb, float beta, float* C, int ldc);
void gemm(bool trans_a, bool trans_b, int M, int N, int K, double alpha, const double* A, int lda,
          const double* B, int ldb, double beta, double* C, int ldc);

// Row-major float GEMV: y = alpha * op(A) x + beta * y, A [M, N]. For one query against many
// rows, where a GEMM with M = 1 is several times slower (it packs B for reuse that never comes).
void gemv(bool trans_a, int M, int N, float alpha, const float* A, int lda, const float* x, float beta, float* y);

// The CPU kernels parallelise with OpenMP over clips and call single-threaded GEMMs inside;
// OpenBLAS's own threads on top would oversubscribe the cores. The CPU backend calls this once.
void blas_set_threads(int n);

}  // namespace mg
