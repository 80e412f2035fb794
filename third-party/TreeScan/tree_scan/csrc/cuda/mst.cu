// Minimum spanning tree on the GPU: Borůvka's algorithm, one thread block per
// image, without a round trip to the host.
//
// Each round, every component finds its cheapest crossing edge under the
// (weight, edge index) order of edge_order.h, and hooks onto the component on
// the other side. That order is strict, so the only cycles among the hooks are
// pairs of components that chose the same edge; the smaller one stays the
// root. Pointer jumping then relabels every vertex. At most log2(V) rounds.
// The kept edges are written in increasing candidate index, exactly as the
// CPU kernel does.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <climits>

#include "../edge_order.h"
#include "../kernel_checks.h"
#include "common.cuh"

namespace tree_scan {
namespace cuda {
namespace {

constexpr int kThreads = 512;
constexpr uint64_t kNoKey = ~static_cast<uint64_t>(0);

// Scratch of one image, in global memory.
struct BoruvkaScratch {
  uint64_t* edge_key;     // [E] order key of every edge's weight
  uint8_t* in_tree;       // [E]
  int32_t* component;     // [V] root vertex of every vertex's component
  int32_t* pointer;       // [V] hook targets, double-buffered with next_pointer
  int32_t* next_pointer;  // [V]
  uint64_t* best_key;     // [V] cheapest crossing key per component root
  int32_t* best_edge;     // [V] lowest index among the edges with that key
};

template <typename index_t, typename weight_t>
__global__ void __launch_bounds__(kThreads) boruvka_kernel(Strided3<const index_t> edges, const weight_t* weights,
                                                           int64_t weight_s0, int64_t weight_s1, int32_t num_edges,
                                                           int32_t num_vertices, BoruvkaScratch scratch,
                                                           int64_t* tree) {
  const int64_t b = blockIdx.x;
  const int tid = threadIdx.x;
  uint64_t* edge_key = scratch.edge_key + b * num_edges;
  uint8_t* in_tree = scratch.in_tree + b * num_edges;
  int32_t* component = scratch.component + b * num_vertices;
  int32_t* pointer = scratch.pointer + b * num_vertices;
  int32_t* next_pointer = scratch.next_pointer + b * num_vertices;
  uint64_t* best_key = scratch.best_key + b * num_vertices;
  int32_t* best_edge = scratch.best_edge + b * num_vertices;
  tree += b * (num_vertices - 1) * 2;

  // Edges with a vertex out of range (rejected on the host by the public API,
  // asserted below) are left out rather than read past the arrays.
  auto endpoints_valid = [&](int32_t e) {
    const int64_t u = edges(b, e, 0), v = edges(b, e, 1);
    return 0 <= u && u < num_vertices && 0 <= v && v < num_vertices;
  };

  for (int32_t e = tid; e < num_edges; e += kThreads) {
    edge_key[e] = weight_order_key(static_cast<double>(weights[b * weight_s0 + e * weight_s1]));
    in_tree[e] = 0;
    CUDA_KERNEL_ASSERT(endpoints_valid(e) && "minimum_spanning_tree: edge_index names a vertex out of range");
  }
  for (int32_t v = tid; v < num_vertices; v += kThreads) {
    component[v] = v;
  }
  __syncthreads();

  while (true) {
    for (int32_t v = tid; v < num_vertices; v += kThreads) {
      best_key[v] = kNoKey;
      best_edge[v] = INT_MAX;
    }
    __syncthreads();
    // Cheapest crossing key of every component, then the lowest edge index
    // among the edges of that key: the minimum under (weight, index).
    for (int32_t e = tid; e < num_edges; e += kThreads) {
      if (!endpoints_valid(e)) continue;
      const int32_t cu = component[edges(b, e, 0)], cv = component[edges(b, e, 1)];
      if (cu != cv) {
        atomicMin(reinterpret_cast<unsigned long long*>(&best_key[cu]), edge_key[e]);
        atomicMin(reinterpret_cast<unsigned long long*>(&best_key[cv]), edge_key[e]);
      }
    }
    __syncthreads();
    for (int32_t e = tid; e < num_edges; e += kThreads) {
      if (!endpoints_valid(e)) continue;
      const int32_t cu = component[edges(b, e, 0)], cv = component[edges(b, e, 1)];
      if (cu != cv) {
        if (edge_key[e] == best_key[cu]) atomicMin(&best_edge[cu], e);
        if (edge_key[e] == best_key[cv]) atomicMin(&best_edge[cv], e);
      }
    }
    __syncthreads();

    // Hook every component root onto the component across its edge.
    bool hooked = false;
    for (int32_t c = tid; c < num_vertices; c += kThreads) {
      int32_t target = c;
      if (component[c] == c && best_edge[c] != INT_MAX) {
        const int32_t e = best_edge[c];
        in_tree[e] = 1;
        const int32_t cu = component[edges(b, e, 0)], cv = component[edges(b, e, 1)];
        const int32_t other = cu == c ? cv : cu;
        // Both sides chose this edge: the smaller component stays a root.
        target = (best_edge[other] == e && c < other) ? c : other;
        hooked = true;
      }
      pointer[c] = target;
    }
    if (!__syncthreads_or(hooked)) {
      break;
    }

    // Pointer jumping until every hook points at its new root.
    while (true) {
      bool moved = false;
      for (int32_t c = tid; c < num_vertices; c += kThreads) {
        const int32_t jump = pointer[pointer[c]];
        moved |= jump != pointer[c];
        next_pointer[c] = jump;
      }
      const bool any_moved = __syncthreads_or(moved);
      int32_t* swap = pointer;
      pointer = next_pointer;
      next_pointer = swap;
      if (!any_moved) break;
    }
    for (int32_t v = tid; v < num_vertices; v += kThreads) {
      component[v] = pointer[component[v]];
    }
    __syncthreads();
  }

  // Kept edges in candidate order, then (-1, -1) rows for a spanning forest.
  const int64_t kept = block_exclusive_scan<kThreads>(
      num_edges, 0, [&](int64_t e) -> int64_t { return in_tree[e]; },
      [&](int64_t e, int64_t row) {
        if (in_tree[e]) {
          tree[2 * row] = edges(b, e, 0);
          tree[2 * row + 1] = edges(b, e, 1);
        }
      });
  for (int64_t row = kept + tid; row < num_vertices - 1; row += kThreads) {
    tree[2 * row] = -1;
    tree[2 * row + 1] = -1;
  }
}

at::Tensor minimum_spanning_tree_cuda(const at::Tensor& edge_index, const at::Tensor& edge_weight,
                                      int64_t num_vertices) {
  check_mst_inputs(edge_index, edge_weight, num_vertices);
  // int32 vertex and edge ids, with room for the block-stride loops (+ kThreads) not to overflow.
  TORCH_CHECK_VALUE(num_vertices < INT_MAX / 2, "minimum_spanning_tree: num_vertices out of range");
  TORCH_CHECK_VALUE(edge_index.size(1) < INT_MAX / 2, "minimum_spanning_tree: too many edges");
  TORCH_CHECK_VALUE(edge_index.size(0) <= INT_MAX, "minimum_spanning_tree: batch too large for one launch");
  const c10::cuda::OptionalCUDAGuard guard(edge_index.device());
  const int64_t batch = edge_index.size(0);
  const int64_t num_edges = edge_index.size(1);
  auto tree = at::empty({batch, num_vertices - 1, 2}, edge_index.options().dtype(at::kLong));
  if (batch == 0) {
    return tree;
  }
  auto options = edge_index.options();
  // 64-bit unsigned keys live in int64 tensors (torch has no uint64 arithmetic to offer; we only store them).
  auto keys = at::empty({batch, num_edges}, options.dtype(at::kLong));
  auto best_keys = at::empty({batch, num_vertices}, options.dtype(at::kLong));
  auto in_tree = at::empty({batch, num_edges}, options.dtype(at::kByte));
  auto ids = at::empty({4, batch, num_vertices}, options.dtype(at::kInt));
  BoruvkaScratch scratch{reinterpret_cast<uint64_t*>(keys.data_ptr<int64_t>()),
                         in_tree.data_ptr<uint8_t>(),
                         ids[0].data_ptr<int32_t>(),
                         ids[1].data_ptr<int32_t>(),
                         ids[2].data_ptr<int32_t>(),
                         reinterpret_cast<uint64_t*>(best_keys.data_ptr<int64_t>()),
                         ids[3].data_ptr<int32_t>()};
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_INDEX_TYPES(edge_index.scalar_type(), "minimum_spanning_tree_cuda", [&] {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, edge_weight.scalar_type(), "minimum_spanning_tree_cuda", [&] {
      boruvka_kernel<index_t, scalar_t><<<batch, kThreads, 0, stream>>>(
          Strided3<const index_t>(edge_index), edge_weight.data_ptr<scalar_t>(), edge_weight.stride(0),
          edge_weight.stride(1), static_cast<int32_t>(num_edges), static_cast<int32_t>(num_vertices), scratch,
          tree.data_ptr<int64_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return tree;
}

}  // namespace
}  // namespace cuda

TORCH_LIBRARY_IMPL(tree_scan, CUDA, m) {
  m.impl("minimum_spanning_tree", &cuda::minimum_spanning_tree_cuda);
}

}  // namespace tree_scan
