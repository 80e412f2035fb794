// Tree scans on the CPU: the all-roots scan (vision) and the causal scan
// (language), forward and backward.
//
// Work is split into tasks of one image and kTile channels. A task copies its
// channels into buffers laid out [BFS position][channel], so that
//  - walking the tree is a sweep over consecutive buffer rows (the random
//    access happens once, in the copy),
//  - the inner loops run over kTile contiguous channels and vectorise.
// Arithmetic is in at::opmath_type (float for half/bfloat16/float, double
// for double); outputs are written in the input dtype.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <memory>
#include <vector>

namespace tree_scan {
namespace {

constexpr int64_t kTile = 16;

template <typename T>
struct Strided3 {
  T* data;
  int64_t s0, s1, s2;
  explicit Strided3(const at::Tensor& t)
      : data(static_cast<T*>(t.data_ptr())), s0(t.stride(0)), s1(t.stride(1)), s2(t.stride(2)) {}
  T& operator()(int64_t b, int64_t c, int64_t l) const {
    return data[b * s0 + c * s1 + l * s2];
  }
};

// For every BFS position k, the BFS position of its vertex's parent (-1 at a
// root). Checks that `order` is a permutation and that parents come first,
// which is what lets one sweep in each direction finish every vertex.
at::Tensor parent_positions(const at::Tensor& order, const at::Tensor& parent) {
  const int64_t batch = order.size(0);
  const int64_t length = order.size(1);
  auto positions = at::empty({batch, length}, order.options());
  const auto order_in = order.accessor<int64_t, 2>();
  const auto parent_in = parent.accessor<int64_t, 2>();
  auto out = positions.accessor<int64_t, 2>();
  at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> position_of(length);
    for (int64_t b = begin; b < end; ++b) {
      std::fill(position_of.begin(), position_of.end(), -1);
      for (int64_t k = 0; k < length; ++k) {
        const int64_t v = order_in[b][k];
        TORCH_CHECK_VALUE(0 <= v && v < length && position_of[v] == -1, "tree scan: order[", b,
                          "] is not a permutation of the ", length, " vertices (use tree_scan.bfs to make it)");
        position_of[v] = k;
      }
      for (int64_t k = 0; k < length; ++k) {
        const int64_t p = parent_in[b][order_in[b][k]];
        TORCH_CHECK_VALUE(-1 <= p && p < length, "tree scan: parent[", b, "] holds ", p, ", outside [-1, ", length, ")");
        out[b][k] = p < 0 ? -1 : position_of[p];
        TORCH_CHECK_VALUE(out[b][k] < k, "tree scan: in order[", b, "] vertex ", order_in[b][k],
                          " comes before its parent ", p, " (use tree_scan.bfs to make the order)");
      }
    }
  });
  return positions;
}

// y += w * x over one tile row.
template <typename acc_t>
inline void add_weighted(acc_t* __restrict__ y, const acc_t* __restrict__ w, const acc_t* __restrict__ x) {
  for (int64_t c = 0; c < kTile; ++c) {
    y[c] += w[c] * x[c];
  }
}

// Leaf -> root: a_p += w_k a_k. A reverse sweep of the BFS order meets every
// vertex after all of its descendants, so a_k is complete when it is used.
template <typename acc_t>
void sweep_up(acc_t* a, const acc_t* w, const int64_t* parent_pos, int64_t length) {
  for (int64_t k = length - 1; k > 0; --k) {
    const int64_t p = parent_pos[k];
    if (p >= 0) {
      add_weighted(a + p * kTile, w + k * kTile, a + k * kTile);
    }
  }
}

// Root -> leaf of the all-roots scan: out_k = (1 - w_k^2) a_k + w_k out_p,
// in place (the parent's row already holds out_p when row k is reached).
template <typename acc_t>
void sweep_down_all_roots(acc_t* a, const acc_t* w, const int64_t* parent_pos, int64_t length) {
  for (int64_t k = 1; k < length; ++k) {
    const int64_t p = parent_pos[k];
    if (p < 0) {
      continue;
    }
    acc_t* __restrict__ ak = a + k * kTile;
    const acc_t* __restrict__ op = a + p * kTile;
    const acc_t* wk = w + k * kTile;
    for (int64_t c = 0; c < kTile; ++c) {
      ak[c] = (1 - wk[c] * wk[c]) * ak[c] + wk[c] * op[c];
    }
  }
}

// One task's view of its image and channels, with the copies in and out of
// its [BFS position][channel] buffers. Channels past the last are zeros.
struct ChannelTile {
  int64_t b, c0, width, length;
  const int64_t* order;
  const int64_t* parent_pos;

  template <typename scalar_t, typename acc_t>
  void load(const Strided3<const scalar_t>& src, acc_t* buf) const {
    for (int64_t k = 0; k < length; ++k) {
      const int64_t v = order[k];
      acc_t* row = buf + k * kTile;
      for (int64_t c = 0; c < width; ++c) {
        row[c] = static_cast<acc_t>(src(b, c0 + c, v));
      }
      for (int64_t c = width; c < kTile; ++c) {
        row[c] = 0;
      }
    }
  }

  template <typename scalar_t, typename acc_t>
  void store(const acc_t* buf, const Strided3<scalar_t>& dst) const {
    for (int64_t k = 0; k < length; ++k) {
      const int64_t v = order[k];
      const acc_t* row = buf + k * kTile;
      for (int64_t c = 0; c < width; ++c) {
        dst(b, c0 + c, v) = static_cast<scalar_t>(row[c]);
      }
    }
  }
};

// Runs body(tile, buffers) for every (image, channel tile) in parallel; each
// task gets `num_buffers` scratch buffers of length * kTile elements.
template <typename acc_t, typename Body>
void for_each_tile(const at::Tensor& x, const at::Tensor& order, const at::Tensor& parent_pos, int num_buffers,
                   const Body& body) {
  const int64_t batch = x.size(0);
  const int64_t channels = x.size(1);
  const int64_t length = x.size(2);
  const int64_t tiles_per_image = (channels + kTile - 1) / kTile;
  const int64_t* order_data = order.data_ptr<int64_t>();
  const int64_t* parent_pos_data = parent_pos.data_ptr<int64_t>();
  at::parallel_for(0, batch * tiles_per_image, 1, [&](int64_t begin, int64_t end) {
    const int64_t buffer_size = length * kTile;
    std::unique_ptr<acc_t[]> scratch(new acc_t[num_buffers * buffer_size]);
    std::vector<acc_t*> buffers(num_buffers);
    for (int i = 0; i < num_buffers; ++i) {
      buffers[i] = scratch.get() + i * buffer_size;
    }
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / tiles_per_image;
      const int64_t c0 = (task % tiles_per_image) * kTile;
      const ChannelTile tile{b, c0, std::min(kTile, channels - c0), length, order_data + b * length,
                             parent_pos_data + b * length};
      body(tile, buffers.data());
    }
  });
}

void check_scan_inputs(const char* op, const at::Tensor& x, const at::Tensor& edge_weight, const at::Tensor& order,
                       const at::Tensor& parent) {
  TORCH_CHECK_VALUE(x.dim() == 3, op, ": x must be (B, C, L), got ", x.sizes());
  TORCH_CHECK_VALUE(edge_weight.sizes() == x.sizes(), op, ": edge_weight must have the shape of x ", x.sizes(),
                    ", got ", edge_weight.sizes());
  TORCH_CHECK_TYPE(edge_weight.scalar_type() == x.scalar_type(), op, ": edge_weight must have the dtype of x (",
                   x.scalar_type(), "), got ", edge_weight.scalar_type());
  const std::vector<int64_t> order_shape{x.size(0), x.size(2)};
  TORCH_CHECK_VALUE(order.sizes() == order_shape && parent.sizes() == order_shape, op,
                    ": order and parent must be (B, L) = ", at::IntArrayRef(order_shape), ", got ", order.sizes(),
                    " and ", parent.sizes());
  TORCH_CHECK_TYPE(order.scalar_type() == at::kLong && parent.scalar_type() == at::kLong, op,
                   ": order and parent must be int64");
}

at::Tensor scan_all_roots_cpu(const at::Tensor& x, const at::Tensor& edge_weight, const at::Tensor& order_in,
                              const at::Tensor& parent) {
  check_scan_inputs("scan_all_roots", x, edge_weight, order_in, parent);
  const auto order = order_in.contiguous();
  const auto parent_pos = parent_positions(order, parent);
  auto out = at::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "scan_all_roots_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const Strided3<const scalar_t> x_in(x), w_in(edge_weight);
    const Strided3<scalar_t> out_view(out);
    for_each_tile<acc_t>(x, order, parent_pos, 2, [&](const ChannelTile& tile, acc_t** buf) {
      acc_t* a = buf[0];
      acc_t* w = buf[1];
      tile.load(x_in, a);
      tile.load(w_in, w);
      sweep_up(a, w, tile.parent_pos, tile.length);
      sweep_down_all_roots(a, w, tile.parent_pos, tile.length);
      tile.store(a, out_view);
    });
  });
  return out;
}

// Gradients of the all-roots scan (paper, Algorithm 1). With S symmetric,
// grad_x is the scan of grad_out. For the edge (k, parent p) with weight w_k,
//   grad_w_k = ag_k (out_p - w_k a_k) + a_k (og_p - w_k ag_k),
// where a/out are the two sweeps over x and ag/og the two over grad_out: the
// paths through that edge join k's subtree to everything beyond it. The
// forward sweeps are recomputed here rather than saved, in float32.
std::tuple<at::Tensor, at::Tensor> scan_all_roots_backward_cpu(const at::Tensor& grad_out, const at::Tensor& x,
                                                               const at::Tensor& edge_weight,
                                                               const at::Tensor& order_in, const at::Tensor& parent) {
  check_scan_inputs("scan_all_roots_backward", x, edge_weight, order_in, parent);
  TORCH_CHECK_VALUE(grad_out.sizes() == x.sizes(), "scan_all_roots_backward: grad_out must have the shape of x");
  const auto order = order_in.contiguous();
  const auto parent_pos = parent_positions(order, parent);
  auto grad_x = at::empty_like(x);
  auto grad_w = at::empty_like(edge_weight);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "scan_all_roots_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto grad_in = grad_out.to(x.scalar_type());
    const Strided3<const scalar_t> x_in(x), w_in(edge_weight), g_in(grad_in);
    const Strided3<scalar_t> grad_x_out(grad_x), grad_w_out(grad_w);
    for_each_tile<acc_t>(x, order, parent_pos, 3, [&](const ChannelTile& tile, acc_t** buf) {
      acc_t* a = buf[0];
      acc_t* ag = buf[1];
      acc_t* w = buf[2];
      tile.load(x_in, a);
      tile.load(g_in, ag);
      tile.load(w_in, w);
      sweep_up(a, w, tile.parent_pos, tile.length);
      sweep_up(ag, w, tile.parent_pos, tile.length);
      // Downward sweep of both; row k still holds a_k and ag_k while its
      // parent's row already holds out_p and og_p. w's row is reused for the
      // weight gradient once w_k has been used.
      for (int64_t k = 0; k < tile.length; ++k) {
        const int64_t p = tile.parent_pos[k];
        acc_t* wk = w + k * kTile;
        if (p < 0) {
          for (int64_t c = 0; c < kTile; ++c) {
            wk[c] = 0;
          }
          continue;
        }
        acc_t* __restrict__ ak = a + k * kTile;
        acc_t* __restrict__ agk = ag + k * kTile;
        const acc_t* __restrict__ op = a + p * kTile;
        const acc_t* __restrict__ ogp = ag + p * kTile;
        for (int64_t c = 0; c < kTile; ++c) {
          const acc_t weight = wk[c];
          const acc_t keep = 1 - weight * weight;
          wk[c] = agk[c] * (op[c] - weight * ak[c]) + ak[c] * (ogp[c] - weight * agk[c]);
          ak[c] = keep * ak[c] + weight * op[c];
          agk[c] = keep * agk[c] + weight * ogp[c];
        }
      }
      tile.store(ag, grad_x_out);
      tile.store(w, grad_w_out);
    });
  });
  return {grad_x, grad_w};
}

at::Tensor scan_causal_cpu(const at::Tensor& x, const at::Tensor& edge_weight, const at::Tensor& order_in,
                           const at::Tensor& parent) {
  check_scan_inputs("scan_causal", x, edge_weight, order_in, parent);
  const auto order = order_in.contiguous();
  const auto parent_pos = parent_positions(order, parent);
  auto out = at::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "scan_causal_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const Strided3<const scalar_t> x_in(x), w_in(edge_weight);
    const Strided3<scalar_t> out_view(out);
    for_each_tile<acc_t>(x, order, parent_pos, 2, [&](const ChannelTile& tile, acc_t** buf) {
      acc_t* a = buf[0];
      acc_t* w = buf[1];
      tile.load(x_in, a);
      tile.load(w_in, w);
      sweep_up(a, w, tile.parent_pos, tile.length);
      tile.store(a, out_view);
    });
  });
  return out;
}

// Gradients of the causal scan: G_k = g_k + w_k G_p (every ancestor's output
// contains a_k with the product of the weights in between), grad_x = G and
// grad_w_k = G_p a_k.
std::tuple<at::Tensor, at::Tensor> scan_causal_backward_cpu(const at::Tensor& grad_out, const at::Tensor& x,
                                                            const at::Tensor& edge_weight, const at::Tensor& order_in,
                                                            const at::Tensor& parent) {
  check_scan_inputs("scan_causal_backward", x, edge_weight, order_in, parent);
  TORCH_CHECK_VALUE(grad_out.sizes() == x.sizes(), "scan_causal_backward: grad_out must have the shape of x");
  const auto order = order_in.contiguous();
  const auto parent_pos = parent_positions(order, parent);
  auto grad_x = at::empty_like(x);
  auto grad_w = at::empty_like(edge_weight);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "scan_causal_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto grad_in = grad_out.to(x.scalar_type());
    const Strided3<const scalar_t> x_in(x), w_in(edge_weight), g_in(grad_in);
    const Strided3<scalar_t> grad_x_out(grad_x), grad_w_out(grad_w);
    for_each_tile<acc_t>(x, order, parent_pos, 3, [&](const ChannelTile& tile, acc_t** buf) {
      acc_t* a = buf[0];
      acc_t* g = buf[1];
      acc_t* w = buf[2];
      tile.load(x_in, a);
      tile.load(g_in, g);
      tile.load(w_in, w);
      sweep_up(a, w, tile.parent_pos, tile.length);
      for (int64_t k = 0; k < tile.length; ++k) {
        const int64_t p = tile.parent_pos[k];
        acc_t* wk = w + k * kTile;
        if (p < 0) {
          for (int64_t c = 0; c < kTile; ++c) {
            wk[c] = 0;
          }
          continue;
        }
        acc_t* __restrict__ gk = g + k * kTile;
        const acc_t* __restrict__ gp = g + p * kTile;
        const acc_t* __restrict__ ak = a + k * kTile;
        for (int64_t c = 0; c < kTile; ++c) {
          const acc_t weight = wk[c];
          wk[c] = gp[c] * ak[c];
          gk[c] += weight * gp[c];
        }
      }
      tile.store(g, grad_x_out);
      tile.store(w, grad_w_out);
    });
  });
  return {grad_x, grad_w};
}

}  // namespace

TORCH_LIBRARY_IMPL(tree_scan, CPU, m) {
  m.impl("scan_all_roots", &scan_all_roots_cpu);
  m.impl("scan_all_roots_backward", &scan_all_roots_backward_cpu);
  m.impl("scan_causal", &scan_causal_cpu);
  m.impl("scan_causal_backward", &scan_causal_backward_cpu);
}

}  // namespace tree_scan
