// Tree scans on the CPU: the all-roots scan (vision) and the causal scan
// (language), forward and backward.
//
// Layout of the work. A task takes one image (or, when there are fewer images
// than threads, a group of its channels) and copies its inputs into buffers of
// rows in BREADTH-FIRST order: row k holds kTile channels of the vertex at BFS
// position k. Then
//  - both sweeps of the scan walk the rows in order, and a vertex's parent sits
//    in a row before it (BFS positions of parents never decrease along the
//    order), so the sweeps read two forward streams instead of jumping around;
//  - each row is kRowBytes of contiguous channels, so the arithmetic runs on
//    SIMD vectors;
//  - the input is read once, row by row in vertex order (channels-last input:
//    each vertex's channels are contiguous; (B, C, L) input: each channel's
//    plane is contiguous), and the output written the same way. Copying the
//    whole image at once, rather than a few channels at a time, is what keeps
//    those reads sequential.
// Arithmetic is in at::opmath_type (float for half/bfloat16/float, double for
// double); outputs are written in the input dtype.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "../kernel_checks.h"
#include "../strided.h"
#include "simd.h"

namespace tree_scan {
namespace {

// Buffer rows are SIMD vectors (simd.h): GCC left plain 16-channel loops scalar.
constexpr int64_t kRowBytes = 128;  // two cache lines' worth of channels per row
constexpr int64_t kStagger = 320;   // bytes between consecutive scratch buffers beyond their size
constexpr size_t kKeptScratchBytes = size_t(64) << 20;  // per thread, between calls

template <typename acc_t>
constexpr int64_t tile_channels() {
  return kRowBytes / sizeof(acc_t);
}

// For every image: the BFS position of every vertex, and for every BFS
// position the position of its vertex's parent (-1 at a root). Checks that
// `order` is a permutation and that parents come first, which is what lets
// one sweep in each direction finish every vertex.
struct TreePositions {
  at::Tensor of_vertex;  // (B, L)
  at::Tensor of_parent;  // (B, L)
};

TreePositions tree_positions(const at::Tensor& order, const at::Tensor& parent) {
  const int64_t batch = order.size(0);
  const int64_t length = order.size(1);
  TreePositions positions{at::empty({batch, length}, order.options()), at::empty({batch, length}, order.options())};
  const auto order_in = order.accessor<int64_t, 2>();
  const auto parent_in = parent.accessor<int64_t, 2>();
  auto of_vertex = positions.of_vertex.accessor<int64_t, 2>();
  auto of_parent = positions.of_parent.accessor<int64_t, 2>();
  at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      for (int64_t v = 0; v < length; ++v) of_vertex[b][v] = -1;
      for (int64_t k = 0; k < length; ++k) {
        const int64_t v = order_in[b][k];
        TORCH_CHECK_VALUE(0 <= v && v < length && of_vertex[b][v] == -1, "tree scan: order[", b,
                          "] is not a permutation of the ", length, " vertices (use tree_scan.bfs to make it)");
        of_vertex[b][v] = k;
      }
      for (int64_t k = 0; k < length; ++k) {
        const int64_t p = parent_in[b][order_in[b][k]];
        TORCH_CHECK_VALUE(-1 <= p && p < length, "tree scan: parent[", b, "] holds ", p, ", outside [-1, ", length, ")");
        of_parent[b][k] = p < 0 ? -1 : of_vertex[b][p];
        TORCH_CHECK_VALUE(of_parent[b][k] < k, "tree scan: in order[", b, "] vertex ", order_in[b][k],
                          " comes before its parent ", p, " (use tree_scan.bfs to make the order)");
      }
    }
  });
  return positions;
}

// One task: channels [c_begin, c_end) of image b, as `tiles` buffers of
// `length` rows each (buffer t, row k = channels c_begin + t*K ... of the vertex
// at BFS position k; channels past c_end are zeros).
template <typename acc_t>
struct Task {
  static constexpr int64_t K = tile_channels<acc_t>();
  int64_t b, c_begin, c_end, length;
  const int64_t* position_of_vertex;
  const int64_t* parent_position;

  int64_t tiles() const {
    return (c_end - c_begin + K - 1) / K;
  }
  int64_t buffer_size() const {
    return tiles() * length * K;
  }

  // Calls copy(v, t, row, count) for every vertex v and tile t of this task, in
  // vertex order: `row` is the buffer row of (v, t), `count` the real channels in it.
  template <typename Copy>
  void for_each_row(acc_t* rows, const Copy& copy) const {
    const int64_t width = c_end - c_begin;
    for (int64_t v = 0; v < length; ++v) {
      const int64_t k = position_of_vertex[v];
      for (int64_t t = 0; t < tiles(); ++t) copy(v, t, rows + (t * length + k) * K, std::min(K, width - t * K));
    }
  }

  // Vertices per block when channel planes are transposed into rows.
  static constexpr int64_t kBlock = 64;

  template <typename scalar_t>
  void load(const Strided3<const scalar_t>& src, acc_t* rows) const {
    const int64_t width = c_end - c_begin;
    if (src.s2 == 1 && src.s1 != 1) {
      // Channel planes are contiguous: transpose blocks of kBlock vertices x K
      // channels through a small array, so every plane is read in order and
      // every buffer row written whole.
      acc_t block[kBlock][K];
      for (int64_t t = 0; t < tiles(); ++t) {
        const int64_t count = std::min(K, width - t * K);
        for (int64_t v0 = 0; v0 < length; v0 += kBlock) {
          const int64_t vertices = std::min(kBlock, length - v0);
          for (int64_t c = 0; c < K; ++c) {
            if (c < count) {
              const scalar_t* plane = &src(b, c_begin + t * K + c, v0);
              for (int64_t i = 0; i < vertices; ++i) block[i][c] = static_cast<acc_t>(plane[i]);
            } else {
              for (int64_t i = 0; i < vertices; ++i) block[i][c] = 0;
            }
          }
          for (int64_t i = 0; i < vertices; ++i) {
            std::memcpy(rows + (t * length + position_of_vertex[v0 + i]) * K, block[i], sizeof(block[i]));
          }
        }
      }
      return;
    }
    // Vertex by vertex: channels contiguous (the models' layout) or any other.
    const int64_t step = src.s1;
    for_each_row(rows, [&](int64_t v, int64_t t, acc_t* row, int64_t count) {
      const scalar_t* channels = &src(b, c_begin + t * K, v);
      if (step == 1 && count == K) {
        // The common case, with a constant trip count the compiler unrolls into SIMD moves.
        for (int64_t c = 0; c < K; ++c) row[c] = static_cast<acc_t>(channels[c]);
        return;
      }
      if (step == 1) {
        for (int64_t c = 0; c < count; ++c) row[c] = static_cast<acc_t>(channels[c]);
      } else {
        for (int64_t c = 0; c < count; ++c) row[c] = static_cast<acc_t>(channels[c * step]);
      }
      for (int64_t c = count; c < K; ++c) row[c] = 0;
    });
  }

  template <typename scalar_t>
  void store(acc_t* rows, const Strided3<scalar_t>& dst) const {
    const int64_t width = c_end - c_begin;
    if (dst.s2 == 1 && dst.s1 != 1) {
      acc_t block[kBlock][K];
      for (int64_t t = 0; t < tiles(); ++t) {
        const int64_t count = std::min(K, width - t * K);
        for (int64_t v0 = 0; v0 < length; v0 += kBlock) {
          const int64_t vertices = std::min(kBlock, length - v0);
          for (int64_t i = 0; i < vertices; ++i) {
            std::memcpy(block[i], rows + (t * length + position_of_vertex[v0 + i]) * K, sizeof(block[i]));
          }
          for (int64_t c = 0; c < count; ++c) {
            scalar_t* plane = &dst(b, c_begin + t * K + c, v0);
            for (int64_t i = 0; i < vertices; ++i) plane[i] = static_cast<scalar_t>(block[i][c]);
          }
        }
      }
      return;
    }
    const int64_t step = dst.s1;
    for_each_row(rows, [&](int64_t v, int64_t t, acc_t* row, int64_t count) {
      scalar_t* channels = &dst(b, c_begin + t * K, v);
      if (step == 1 && count == K) {
        for (int64_t c = 0; c < K; ++c) channels[c] = static_cast<scalar_t>(row[c]);
        return;
      }
      if (step == 1) {
        for (int64_t c = 0; c < count; ++c) channels[c] = static_cast<scalar_t>(row[c]);
      } else {
        for (int64_t c = 0; c < count; ++c) channels[c * step] = static_cast<scalar_t>(row[c]);
      }
    });
  }
};

// ---------------------------------------------------------------------------
// The sweeps, over one tile buffer (rows of K channels in BFS order).

// Leaf -> root: a_p += w_k a_k. A reverse sweep of the BFS order meets every
// vertex after all of its descendants, so a_k is complete when it is used.
template <typename acc_t>
void sweep_up(acc_t* a, const acc_t* w, const int64_t* parent_pos, int64_t length) {
  using S = Simd<acc_t>;
  constexpr int64_t K = tile_channels<acc_t>();
  for (int64_t k = length - 1; k > 0; --k) {
    const int64_t p = parent_pos[k];
    if (p < 0) continue;
    for (int64_t i = 0; i < K; i += S::kLanes) {
      S::store(a + p * K + i, S::load(a + p * K + i) + S::load(w + k * K + i) * S::load(a + k * K + i));
    }
  }
}

// Root -> leaf of the all-roots scan: out_k = (1 - w_k^2) a_k + w_k out_p, in
// place (the parent's row already holds out_p when row k is reached).
template <typename acc_t>
void sweep_down_all_roots(acc_t* a, const acc_t* w, const int64_t* parent_pos, int64_t length) {
  using S = Simd<acc_t>;
  constexpr int64_t K = tile_channels<acc_t>();
  for (int64_t k = 1; k < length; ++k) {
    const int64_t p = parent_pos[k];
    if (p < 0) continue;
    for (int64_t i = 0; i < K; i += S::kLanes) {
      const auto wk = S::load(w + k * K + i);
      S::store(a + k * K + i, (1 - wk * wk) * S::load(a + k * K + i) + wk * S::load(a + p * K + i));
    }
  }
}

// All-roots gradients (paper, Algorithm 1). S is symmetric, so grad_x is the
// scan of grad_out. For the edge (k, parent p) with weight w_k,
//   grad_w_k = ag_k (out_p - w_k a_k) + a_k (og_p - w_k ag_k),
// where a/out are the two sweeps over x and ag/og the two over grad_out: the
// paths through that edge join k's subtree to everything beyond it. Called
// after both upward sweeps: walking down, row k still holds a_k and ag_k while
// the parent's row already holds out_p and og_p. w's rows turn into grad_w.
template <typename acc_t>
void sweep_down_all_roots_backward(acc_t* a, acc_t* ag, acc_t* w, const int64_t* parent_pos, int64_t length) {
  using S = Simd<acc_t>;
  constexpr int64_t K = tile_channels<acc_t>();
  for (int64_t k = 0; k < length; ++k) {
    const int64_t p = parent_pos[k];
    if (p < 0) {
      std::fill(w + k * K, w + (k + 1) * K, acc_t(0));
      continue;
    }
    for (int64_t i = 0; i < K; i += S::kLanes) {
      const auto wk = S::load(w + k * K + i), ak = S::load(a + k * K + i), agk = S::load(ag + k * K + i);
      const auto out_p = S::load(a + p * K + i), og_p = S::load(ag + p * K + i);
      S::store(w + k * K + i, agk * (out_p - wk * ak) + ak * (og_p - wk * agk));
      S::store(a + k * K + i, (1 - wk * wk) * ak + wk * out_p);
      S::store(ag + k * K + i, (1 - wk * wk) * agk + wk * og_p);
    }
  }
}

// Causal gradients: G_k = g_k + w_k G_p (every ancestor's output contains a_k
// times the weights in between), grad_x = G, grad_w_k = G_p a_k. Called after
// the upward sweep over x; g's rows turn into G, w's rows into grad_w.
template <typename acc_t>
void sweep_down_causal_backward(const acc_t* a, acc_t* g, acc_t* w, const int64_t* parent_pos, int64_t length) {
  using S = Simd<acc_t>;
  constexpr int64_t K = tile_channels<acc_t>();
  for (int64_t k = 0; k < length; ++k) {
    const int64_t p = parent_pos[k];
    if (p < 0) {
      std::fill(w + k * K, w + (k + 1) * K, acc_t(0));
      continue;
    }
    for (int64_t i = 0; i < K; i += S::kLanes) {
      const auto wk = S::load(w + k * K + i), g_p = S::load(g + p * K + i);
      S::store(w + k * K + i, g_p * S::load(a + k * K + i));
      S::store(g + k * K + i, S::load(g + k * K + i) + wk * g_p);
    }
  }
}

// ---------------------------------------------------------------------------
// Driver: runs body(task, buffers) for every task in parallel; each task gets
// `num_buffers` scratch buffers of task.buffer_size() elements.

template <typename acc_t, typename Body>
void for_each_task(const at::Tensor& x, const TreePositions& positions, int num_buffers, const Body& body) {
  constexpr int64_t K = tile_channels<acc_t>();
  const int64_t batch = x.size(0), channels = x.size(1), length = x.size(2);
  const int64_t tiles = (channels + K - 1) / K;
  // One task per image when there are enough images to keep every thread busy;
  // otherwise split each image's channels into groups of whole tiles.
  const int64_t groups = std::min(tiles, std::max<int64_t>(1, (at::get_num_threads() + batch - 1) / batch));
  const int64_t tiles_per_group = (tiles + groups - 1) / groups;
  const int64_t* of_vertex = positions.of_vertex.data_ptr<int64_t>();
  const int64_t* of_parent = positions.of_parent.data_ptr<int64_t>();
  at::parallel_for(0, batch * groups, 1, [&](int64_t begin, int64_t end) {
    // Kept by each thread from call to call: fresh pages for a few megabytes of
    // scratch cost more in page faults than the scan itself.
    thread_local std::vector<acc_t> scratch;
    std::vector<acc_t*> buffers(num_buffers);
    for (int64_t index = begin; index < end; ++index) {
      const int64_t b = index / groups, group = index % groups;
      const int64_t c_begin = std::min(channels, group * tiles_per_group * K);
      const int64_t c_end = std::min(channels, c_begin + tiles_per_group * K);
      if (c_begin == c_end) continue;
      const Task<acc_t> task{b, c_begin, c_end, length, of_vertex + b * length, of_parent + b * length};
      // Buffers sized in whole pages would put row k of every buffer at the same
      // address modulo 4 KiB, where loads and stores of different buffers falsely
      // depend on each other: stagger them by a few cache lines.
      const int64_t stride = task.buffer_size() + kStagger / static_cast<int64_t>(sizeof(acc_t));
      scratch.resize(num_buffers * stride);
      for (int i = 0; i < num_buffers; ++i) buffers[i] = scratch.data() + i * stride;
      body(task, buffers.data());
    }
    if (scratch.size() * sizeof(acc_t) > kKeptScratchBytes) {
      std::vector<acc_t>().swap(scratch);  // do not hold on to very large buffers
    }
  });
}

template <bool kAllRoots>
at::Tensor scan_cpu(const at::Tensor& x, const at::Tensor& edge_weight, const at::Tensor& order,
                    const at::Tensor& parent) {
  check_scan_inputs(kAllRoots ? "scan_all_roots" : "scan_causal", x, edge_weight, order, parent);
  auto out = at::empty_like(x);
  if (out.numel() == 0) return out;
  const auto positions = tree_positions(order.contiguous(), parent.contiguous());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "scan_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const Strided3<const scalar_t> x_in(x), w_in(edge_weight);
    const Strided3<scalar_t> out_view(out);
    for_each_task<acc_t>(x, positions, 2, [&](const Task<acc_t>& task, acc_t** buf) {
      acc_t *a = buf[0], *w = buf[1];
      task.load(x_in, a);
      task.load(w_in, w);
      const int64_t rows = task.length * Task<acc_t>::K;
      for (int64_t t = 0; t < task.tiles(); ++t) {
        sweep_up(a + t * rows, w + t * rows, task.parent_position, task.length);
        if (kAllRoots) sweep_down_all_roots(a + t * rows, w + t * rows, task.parent_position, task.length);
      }
      task.store(a, out_view);
    });
  });
  return out;
}

// The forward sweeps are recomputed here, in float32, rather than saved.
template <bool kAllRoots>
std::tuple<at::Tensor, at::Tensor> scan_backward_cpu(const at::Tensor& grad_out, const at::Tensor& x,
                                                     const at::Tensor& edge_weight, const at::Tensor& order,
                                                     const at::Tensor& parent) {
  const char* op = kAllRoots ? "scan_all_roots_backward" : "scan_causal_backward";
  check_scan_backward_inputs(op, grad_out, x, edge_weight, order, parent);
  auto grad_x = at::empty_like(x);
  auto grad_w = at::empty_like(edge_weight);
  if (x.numel() == 0) return {grad_x, grad_w};
  const auto positions = tree_positions(order.contiguous(), parent.contiguous());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "scan_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto grad_in = grad_out.to(x.scalar_type());
    const Strided3<const scalar_t> x_in(x), w_in(edge_weight), g_in(grad_in);
    const Strided3<scalar_t> grad_x_out(grad_x), grad_w_out(grad_w);
    for_each_task<acc_t>(x, positions, 3, [&](const Task<acc_t>& task, acc_t** buf) {
      acc_t *a = buf[0], *g = buf[1], *w = buf[2];
      task.load(x_in, a);
      task.load(g_in, g);
      task.load(w_in, w);
      const int64_t rows = task.length * Task<acc_t>::K;
      for (int64_t t = 0; t < task.tiles(); ++t) {
        acc_t *at = a + t * rows, *gt = g + t * rows, *wt = w + t * rows;
        sweep_up(at, wt, task.parent_position, task.length);
        if (kAllRoots) {
          sweep_up(gt, wt, task.parent_position, task.length);
          sweep_down_all_roots_backward(at, gt, wt, task.parent_position, task.length);
        } else {
          sweep_down_causal_backward(at, gt, wt, task.parent_position, task.length);
        }
      }
      task.store(g, grad_x_out);
      task.store(w, grad_w_out);
    });
  });
  return {grad_x, grad_w};
}

}  // namespace

TORCH_LIBRARY_IMPL(tree_scan, CPU, m) {
  m.impl("scan_all_roots", &scan_cpu<true>);
  m.impl("scan_causal", &scan_cpu<false>);
  m.impl("scan_all_roots_backward", &scan_backward_cpu<true>);
  m.impl("scan_causal_backward", &scan_backward_cpu<false>);
}

}  // namespace tree_scan
