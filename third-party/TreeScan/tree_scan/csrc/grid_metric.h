// The edge metrics of the grid (SPEC §1, paper Table 5), shared by the CPU and
// CUDA kernels of grid_edge_weights.
#pragma once

#include <c10/core/ScalarType.h>
#include <c10/util/Exception.h>
#include <c10/util/string_view.h>

#include <cmath>
#include <type_traits>

#include "host_device.h"

namespace tree_scan {

enum class GridMetric { kCosine, kEuclidean, kManhattan };

inline GridMetric parse_grid_metric(c10::string_view name) {
  if (name == "cosine") return GridMetric::kCosine;
  if (name == "euclidean") return GridMetric::kEuclidean;
  if (name == "manhattan") return GridMetric::kManhattan;
  TORCH_CHECK_VALUE(false, "grid_edge_weights: metric must be cosine, euclidean or manhattan, got ", name);
}

// Weights are float32, or float64 for a float64 guide (as in the reference).
inline c10::ScalarType grid_weight_dtype(c10::ScalarType guide) {
  return guide == c10::kDouble ? c10::kDouble : c10::kFloat;
}

// What one channel adds to an edge's accumulator: the product (cosine), the
// squared difference (euclidean) or the absolute difference (manhattan).
// (A template parameter, so that the kernels' inner loops carry no branch.)
template <GridMetric kMetric, typename acc_t>
TREE_SCAN_HOST_DEVICE inline acc_t pair_term(acc_t a, acc_t b) {
  if (kMetric == GridMetric::kCosine) return a * b;
  const acc_t d = a - b;
  return kMetric == GridMetric::kEuclidean ? d * d : (d < 0 ? -d : d);
}

// Calls body(std::integral_constant<GridMetric, metric>{}).
template <typename Body>
void dispatch_grid_metric(GridMetric metric, const Body& body) {
  switch (metric) {
    case GridMetric::kCosine:
      return body(std::integral_constant<GridMetric, GridMetric::kCosine>{});
    case GridMetric::kEuclidean:
      return body(std::integral_constant<GridMetric, GridMetric::kEuclidean>{});
    case GridMetric::kManhattan:
      return body(std::integral_constant<GridMetric, GridMetric::kManhattan>{});
  }
}

// 1 / max(|f|, 1e-8), as torch.cosine_similarity normalises each vector.
template <typename acc_t>
TREE_SCAN_HOST_DEVICE inline acc_t inverse_norm(acc_t squared_norm) {
  const acc_t norm = sqrt(squared_norm);
  return acc_t(1) / (norm > acc_t(1e-8) ? norm : acc_t(1e-8));
}

// exp(-cos): the release's weight; exp is increasing, so the tree is that of -cos.
template <typename acc_t>
TREE_SCAN_HOST_DEVICE inline acc_t cosine_weight(acc_t dot, acc_t inverse_norm_a, acc_t inverse_norm_b) {
  return exp(-(dot * inverse_norm_a * inverse_norm_b));
}

// Whether the one-pass sums of an edge can be trusted: with entries above ~1e19 the
// float32 sums of squares overflow (the inverse norm becomes 0) and the product sum may
// too, which would make the weight NaN or 1 and the tree arbitrary.
template <typename acc_t>
TREE_SCAN_HOST_DEVICE inline bool sums_overflowed(acc_t dot, acc_t inverse_norm_a, acc_t inverse_norm_b) {
#if defined(__CUDA_ARCH__)
  const bool finite = isfinite(dot);
#else
  const bool finite = std::isfinite(dot);
#endif
  return !finite || inverse_norm_a == acc_t(0) || inverse_norm_b == acc_t(0);
}

// exp(-cos) of the pixels at `a` and `b` (channels `stride` apart) for such edges, in
// double from each vector divided by its largest magnitude: cosine does not depend on
// the scale, and the 1e-8 floor still applies to each unscaled norm.
template <typename scalar_t>
TREE_SCAN_HOST_DEVICE inline double rescaled_cosine_weight(const scalar_t* a, const scalar_t* b, int64_t stride,
                                                           int64_t channels) {
  double largest_a = 0, largest_b = 0;
  for (int64_t c = 0; c < channels; ++c) {
    const double va = static_cast<double>(a[c * stride]), vb = static_cast<double>(b[c * stride]);
    largest_a = fabs(va) > largest_a ? fabs(va) : largest_a;  // NaN never compares larger: it stays in va
    largest_b = fabs(vb) > largest_b ? fabs(vb) : largest_b;
  }
  if (largest_a == 0 || largest_b == 0) return 1.0;  // a zero vector: cos = 0
  double dot = 0, squares_a = 0, squares_b = 0;
  for (int64_t c = 0; c < channels; ++c) {
    const double va = static_cast<double>(a[c * stride]) / largest_a, vb = static_cast<double>(b[c * stride]) / largest_b;
    dot += va * vb;
    squares_a += va * va;
    squares_b += vb * vb;
  }
  // largest / max(largest * |scaled|, 1e-8), the factor each unscaled vector is divided by.
  const double norm_a = sqrt(squares_a), norm_b = sqrt(squares_b);
  const double factor_a = largest_a * norm_a > 1e-8 ? 1.0 / norm_a : largest_a / 1e-8;
  const double factor_b = largest_b * norm_b > 1e-8 ? 1.0 / norm_b : largest_b / 1e-8;
  return exp(-(dot * factor_a * factor_b));
}

}  // namespace tree_scan
