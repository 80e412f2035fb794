// Weights of the 4-connected grid edges of a guide feature map, on the CPU.
//
// One pass over the guide: per image, every channel adds its contribution to
// per-pixel accumulators (squared norms, and the products or differences with
// the pixel below and to the right), then each edge's weight is finished from
// them. This reads the guide once, where the plain-PyTorch version (see
// reference.grid_edge_weights) makes several passes and temporaries.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <type_traits>
#include <vector>

#include "../grid_metric.h"
#include "simd.h"

namespace tree_scan {
namespace {

// sum over c < n of pair_term(a[c], b[c]), SIMD across the channels.
template <GridMetric kMetric, typename acc_t>
acc_t channel_sum(const acc_t* a, const acc_t* b, int64_t n) {
  using S = Simd<acc_t>;
  typename S::vec partial = {};
  int64_t c = 0;
  for (; c + S::kLanes <= n; c += S::kLanes) partial += pair_term<kMetric>(S::load(a + c), S::load(b + c));
  acc_t total = S::sum(partial);
  for (; c < n; ++c) total += pair_term<kMetric>(a[c], b[c]);
  return total;
}

template <typename scalar_t, GridMetric kMetric>
void grid_weights_cpu_typed(const at::Tensor& guide, at::Tensor& weights) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr bool kCosine = kMetric == GridMetric::kCosine;
  const int64_t batch = guide.size(0), channels = guide.size(1), height = guide.size(2), width = guide.size(3);
  const int64_t pixels = height * width;
  const int64_t num_vertical = (height - 1) * width;
  const int64_t num_horizontal = height * (width - 1);
  const scalar_t* data = guide.data_ptr<scalar_t>();
  const int64_t s0 = guide.stride(0), s1 = guide.stride(1), s2 = guide.stride(2), s3 = guide.stride(3);
  // Planes contiguous in raster order: the pixel loops are the inner ones and vectorise.
  const bool planar = s3 == 1 && s2 == width;
  // A vertex's channels contiguous, and already in the accumulation type (no conversion).
  const bool channels_contiguous = s1 == 1 && std::is_same<scalar_t, acc_t>::value;
  auto out = weights.accessor<acc_t, 2>();
  auto term = [](acc_t a, acc_t b) { return pair_term<kMetric>(a, b); };

  at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> squares(kCosine ? pixels : 0);
    std::vector<acc_t> vertical(num_vertical), horizontal(num_horizontal);
    for (int64_t b = begin; b < end; ++b) {
      std::fill(squares.begin(), squares.end(), acc_t(0));
      std::fill(vertical.begin(), vertical.end(), acc_t(0));
      std::fill(horizontal.begin(), horizontal.end(), acc_t(0));
      if (planar) {
        for (int64_t c = 0; c < channels; ++c) {
          const scalar_t* plane = data + b * s0 + c * s1;
          auto at = [&](int64_t p) { return static_cast<acc_t>(plane[p]); };
          if (kCosine) {
            for (int64_t p = 0; p < pixels; ++p) squares[p] += at(p) * at(p);
          }
          for (int64_t p = 0; p < num_vertical; ++p) vertical[p] += term(at(p), at(p + width));
          for (int64_t r = 0; r < height; ++r) {
            acc_t* row_out = horizontal.data() + r * (width - 1);
            for (int64_t col = 0; col + 1 < width; ++col) {
              row_out[col] += term(at(r * width + col), at(r * width + col + 1));
            }
          }
        }
      } else if (channels_contiguous) {
        // Channels-last (how GrootV passes its guide): pixel by pixel, SIMD over channels.
        auto pixel = [&](int64_t r, int64_t col) { return reinterpret_cast<const acc_t*>(data + b * s0 + r * s2 + col * s3); };
        for (int64_t r = 0; r < height; ++r) {
          for (int64_t col = 0; col < width; ++col) {
            const int64_t p = r * width + col;
            const acc_t* here = pixel(r, col);
            if (kCosine) squares[p] = channel_sum<GridMetric::kCosine>(here, here, channels);
            if (r + 1 < height) vertical[p] = channel_sum<kMetric>(here, pixel(r + 1, col), channels);
            if (col + 1 < width) horizontal[r * (width - 1) + col] = channel_sum<kMetric>(here, pixel(r, col + 1), channels);
          }
        }
      } else {
        // Any other layout: pixel by pixel, channels inside.
        auto value = [&](int64_t c, int64_t r, int64_t col) {
          return static_cast<acc_t>(data[b * s0 + c * s1 + r * s2 + col * s3]);
        };
        for (int64_t r = 0; r < height; ++r) {
          for (int64_t col = 0; col < width; ++col) {
            const int64_t p = r * width + col;
            for (int64_t c = 0; c < channels; ++c) {
              const acc_t here = value(c, r, col);
              if (kCosine) squares[p] += here * here;
              if (r + 1 < height) vertical[p] += term(here, value(c, r + 1, col));
              if (col + 1 < width) horizontal[r * (width - 1) + col] += term(here, value(c, r, col + 1));
            }
          }
        }
      }
      if (kCosine) {
        for (int64_t p = 0; p < pixels; ++p) squares[p] = inverse_norm(squares[p]);
        auto weight = [&](acc_t dot, int64_t p, int64_t q) {
          if (!sums_overflowed(dot, squares[p], squares[q])) return cosine_weight(dot, squares[p], squares[q]);
          const scalar_t* image = data + b * s0;
          return static_cast<acc_t>(rescaled_cosine_weight(image + (p / width) * s2 + (p % width) * s3,
                                                           image + (q / width) * s2 + (q % width) * s3, s1, channels));
        };
        for (int64_t p = 0; p < num_vertical; ++p) out[b][p] = weight(vertical[p], p, p + width);
        for (int64_t r = 0; r < height; ++r) {
          for (int64_t col = 0; col + 1 < width; ++col) {
            const int64_t e = r * (width - 1) + col, p = r * width + col;
            out[b][num_vertical + e] = weight(horizontal[e], p, p + 1);
          }
        }
      } else {
        for (int64_t e = 0; e < num_vertical; ++e) out[b][e] = vertical[e];
        for (int64_t e = 0; e < num_horizontal; ++e) out[b][num_vertical + e] = horizontal[e];
      }
    }
  });
}

at::Tensor grid_edge_weights_cpu(const at::Tensor& guide, c10::string_view metric_name) {
  TORCH_CHECK_VALUE(guide.dim() == 4, "grid_edge_weights: guide must be (B, C, H, W), got ", guide.sizes());
  const GridMetric metric = parse_grid_metric(metric_name);
  const int64_t height = guide.size(2), width = guide.size(3);
  const int64_t num_edges = (height - 1) * width + height * (width - 1);
  auto weights = at::empty({guide.size(0), std::max<int64_t>(num_edges, 0)},
                           guide.options().dtype(grid_weight_dtype(guide.scalar_type())));
  if (guide.size(0) == 0 || height == 0 || width == 0) return weights;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, guide.scalar_type(), "grid_edge_weights_cpu", [&] {
    dispatch_grid_metric(metric, [&](auto kind) { grid_weights_cpu_typed<scalar_t, decltype(kind)::value>(guide, weights); });
  });
  return weights;
}

}  // namespace

TORCH_LIBRARY_IMPL(tree_scan, CPU, m) {
  m.impl("grid_edge_weights", &grid_edge_weights_cpu);
}

}  // namespace tree_scan
