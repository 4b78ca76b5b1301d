// Principal component analysis for the report's map of an embedding: the leading eigenvectors
// of the d x d covariance of the centred rows, in float64. Embeddings have d <= a few thousand,
// so the covariance is formed explicitly and its top eigenvectors found by subspace iteration
// with Rayleigh-Ritz steps (a handful of vectors beyond the ones wanted, so that convergence
// depends on the gap to the first eigenvalue not asked for, not on the gap between the two wanted).
#pragma once
#include <cstdint>
#include <vector>

namespace mg::report {

struct PrincipalAxes {
  int dim = 0;
  std::vector<double> mean;               // [dim]
  std::vector<std::vector<double>> axes;  // unit and orthogonal, [count][dim], by falling variance;
                                          // sign: the largest-magnitude entry is positive
  std::vector<double> variance;           // along each axis (sample covariance, divisor n - 1)
  double total_variance = 0;              // trace of the covariance: the sum over all axes
  int iterations = 0;
  bool converged = false;  // every residual |C v - lambda v| <= kPcaTolerance * lambda_1
};

inline constexpr double kPcaTolerance = 1e-10;
inline constexpr int kPcaMaxIterations = 500;

// The `count` leading axes of rows [n, d] (row-major float32). Throws std::invalid_argument for
// n < 1, d < 1 or count outside [1, d]. With n = 1, or all rows equal, the variances are 0 and
// the axes are arbitrary orthonormal vectors.
PrincipalAxes principal_axes(const float* rows, int64_t n, int d, int count = 2);

// A row's coordinates along the axes: (row - mean) . axis.
std::vector<double> project(const PrincipalAxes& p, const float* row);

}  // namespace mg::report
