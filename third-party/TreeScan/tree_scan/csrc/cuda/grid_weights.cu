// Weights of the 4-connected grid edges of a guide feature map, on the GPU:
// one thread per edge, accumulating over the channels (see cpu/grid_weights.cpp
// for the CPU version and grid_metric.h for the metrics).
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../grid_metric.h"

namespace tree_scan {
namespace cuda {
namespace {

constexpr int kThreads = 256;

template <typename scalar_t, GridMetric kMetric>
__global__ void __launch_bounds__(kThreads) grid_weights_kernel(const scalar_t* guide, int64_t s0, int64_t s1,
                                                                int64_t s2, int64_t s3, int64_t batch,
                                                                int64_t channels, int64_t height, int64_t width,
                                                                at::opmath_type<scalar_t>* weights) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t num_vertical = (height - 1) * width;
  const int64_t num_edges = num_vertical + height * (width - 1);
  const int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (index >= batch * num_edges) return;
  const int64_t b = index / num_edges, e = index % num_edges;
  // Pixels (r, col) and (r2, col2) joined by edge e (vertical edges first, raster order).
  int64_t r, col, r2, col2;
  if (e < num_vertical) {
    r = e / width, col = e % width, r2 = r + 1, col2 = col;
  } else {
    const int64_t h = e - num_vertical;
    r = h / (width - 1), col = h % (width - 1), r2 = r, col2 = col + 1;
  }
  const scalar_t* first = guide + b * s0 + r * s2 + col * s3;
  const scalar_t* second = guide + b * s0 + r2 * s2 + col2 * s3;
  acc_t sum = 0, first_squares = 0, second_squares = 0;
  for (int64_t c = 0; c < channels; ++c) {
    const acc_t a = static_cast<acc_t>(first[c * s1]), bv = static_cast<acc_t>(second[c * s1]);
    sum += pair_term<kMetric>(a, bv);
    if (kMetric == GridMetric::kCosine) {
      first_squares += a * a;
      second_squares += bv * bv;
    }
  }
  if (kMetric != GridMetric::kCosine) {
    weights[index] = sum;
    return;
  }
  const acc_t inverse_first = inverse_norm(first_squares), inverse_second = inverse_norm(second_squares);
  weights[index] = sums_overflowed(sum, inverse_first, inverse_second)
                       ? static_cast<acc_t>(rescaled_cosine_weight(first, second, s1, channels))
                       : cosine_weight(sum, inverse_first, inverse_second);
}

at::Tensor grid_edge_weights_cuda(const at::Tensor& guide, c10::string_view metric_name) {
  TORCH_CHECK_VALUE(guide.dim() == 4, "grid_edge_weights: guide must be (B, C, H, W), got ", guide.sizes());
  const GridMetric metric = parse_grid_metric(metric_name);
  const c10::cuda::OptionalCUDAGuard device_guard(guide.device());
  const int64_t batch = guide.size(0), channels = guide.size(1), height = guide.size(2), width = guide.size(3);
  const int64_t num_edges = std::max<int64_t>((height - 1) * width + height * (width - 1), 0);
  auto weights = at::empty({batch, num_edges}, guide.options().dtype(grid_weight_dtype(guide.scalar_type())));
  if (batch == 0 || num_edges == 0) return weights;
  const int64_t blocks = (batch * num_edges + kThreads - 1) / kThreads;
  TORCH_CHECK_VALUE(blocks <= INT_MAX, "grid_edge_weights: guide too large for one launch");
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, guide.scalar_type(), "grid_edge_weights_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    dispatch_grid_metric(metric, [&](auto kind) {
      grid_weights_kernel<scalar_t, decltype(kind)::value><<<blocks, kThreads, 0, stream>>>(
          guide.data_ptr<scalar_t>(), guide.stride(0), guide.stride(1), guide.stride(2), guide.stride(3), batch,
          channels, height, width, weights.data_ptr<acc_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return weights;
}

}  // namespace
}  // namespace cuda

TORCH_LIBRARY_IMPL(tree_scan, CUDA, m) {
  m.impl("grid_edge_weights", &cuda::grid_edge_weights_cuda);
}

}  // namespace tree_scan
