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

}  // namespace tree_scan
