// Breadth-first order on the GPU, one thread block per image: the same FIFO
// order as the CPU kernel (neighbours queued in increasing tree-row order;
// unreached vertices start new trees in increasing vertex order).
//
// The queue grows one level at a time. Every vertex of the next level is
// claimed by the smallest (frontier position, tree row) that reaches it, a
// 64-bit atomicMin, which is exactly the parent and the slot a FIFO queue
// would give it; a block-wide prefix sum over the frontier then places the
// claimed children. All barriers are reached by every thread of the block.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <climits>

#include "common.cuh"

namespace tree_scan {
namespace cuda {
namespace {

constexpr int kThreads = 512;

struct BfsScratch {
  int32_t* adjacency_start;  // [V + 1]
  int32_t* filled;           // [V]
  int32_t* adjacency;        // [2R] tree rows incident to each vertex, by vertex
  uint64_t* claim;           // [V]
  uint8_t* visited;          // [V]
};

template <typename index_t>
__global__ void __launch_bounds__(kThreads) bfs_kernel(Strided3<const index_t> tree, int32_t rows,
                                                       int32_t num_vertices, int32_t root, BfsScratch scratch,
                                                       int64_t* order, int64_t* parent) {
  const int64_t b = blockIdx.x;
  const int tid = threadIdx.x;
  int32_t* adjacency_start = scratch.adjacency_start + b * (num_vertices + 1);
  int32_t* filled = scratch.filled + b * num_vertices;
  int32_t* adjacency = scratch.adjacency + b * 2 * rows;
  uint64_t* claim = scratch.claim + b * num_vertices;
  uint8_t* visited = scratch.visited + b * num_vertices;
  order += b * num_vertices;
  parent += b * num_vertices;

  // Padding rows (-1, -1) and rows naming vertices out of range (rejected on
  // the host by the public API, asserted below) are no edges.
  auto row_valid = [&](int32_t r) {
    const int64_t u = tree(b, r, 0), v = tree(b, r, 1);
    return 0 <= u && u < num_vertices && 0 <= v && v < num_vertices;
  };
  auto other_end = [&](int32_t r, int32_t u) -> int32_t {
    const int32_t first = static_cast<int32_t>(tree(b, r, 0));
    return first == u ? static_cast<int32_t>(tree(b, r, 1)) : first;
  };

  // 1. Adjacency lists: degrees, prefix sums, rows, then each list sorted by row.
  for (int32_t v = tid; v <= num_vertices; v += kThreads) {
    adjacency_start[v] = 0;
  }
  for (int32_t v = tid; v < num_vertices; v += kThreads) {
    filled[v] = 0;
    claim[v] = ~static_cast<uint64_t>(0);
    visited[v] = 0;
  }
  __syncthreads();
  for (int32_t r = tid; r < rows; r += kThreads) {
    CUDA_KERNEL_ASSERT((row_valid(r) || (tree(b, r, 0) == -1 && tree(b, r, 1) == -1)) &&
                       "bfs: tree names a vertex out of range");
    if (row_valid(r)) {
      atomicAdd(&adjacency_start[tree(b, r, 0)], 1);
      atomicAdd(&adjacency_start[tree(b, r, 1)], 1);
    }
  }
  __syncthreads();
  // In place: degree[v] -> start[v], the sum of the degrees before v.
  block_exclusive_scan<kThreads>(
      num_vertices + 1, 0, [&](int64_t v) -> int64_t { return v < num_vertices ? adjacency_start[v] : 0; },
      [&](int64_t v, int64_t start) { adjacency_start[v] = static_cast<int32_t>(start); });
  for (int32_t r = tid; r < rows; r += kThreads) {
    if (row_valid(r)) {
      const int32_t u = tree(b, r, 0), v = tree(b, r, 1);
      adjacency[adjacency_start[u] + atomicAdd(&filled[u], 1)] = r;
      adjacency[adjacency_start[v] + atomicAdd(&filled[v], 1)] = r;
    }
  }
  __syncthreads();
  for (int32_t v = tid; v < num_vertices; v += kThreads) {
    int32_t* list = adjacency + adjacency_start[v];
    const int32_t length = adjacency_start[v + 1] - adjacency_start[v];
    for (int32_t i = 1; i < length; ++i) {  // insertion sort: tree vertices have few neighbours
      const int32_t row = list[i];
      int32_t j = i - 1;
      for (; j >= 0 && list[j] > row; --j) list[j + 1] = list[j];
      list[j + 1] = row;
    }
  }

  // 2. Level by level. The queue is `order` itself; [head, tail) is the frontier.
  __shared__ int64_t head, tail, smallest_unvisited, trees;
  if (tid == 0) {
    trees = 1;
    order[0] = root;
    parent[root] = -1;
    visited[root] = 1;
    head = 0;
    tail = 1;
  }
  __syncthreads();
  while (true) {
    const int64_t level_begin = head, level_end = tail;
    __syncthreads();  // all have read head and tail before thread 0 may change them
    if (level_begin == level_end) {
      if (level_end == num_vertices) {
        // A forest of `trees` trees has V - trees edges: the CPU kernel reports any
        // other count (a cycle, a repeated edge, a self-loop); here it is asserted.
        CUDA_KERNEL_ASSERT(adjacency_start[num_vertices] == 2 * (num_vertices - trees) &&
                           "bfs: the tree has a cycle, a repeated edge or a self-loop");
        break;
      }
      // The queue ran dry before reaching everyone: a forest. Its next tree
      // starts at the smallest vertex not reached yet.
      if (tid == 0) smallest_unvisited = num_vertices;
      __syncthreads();
      for (int32_t v = tid; v < num_vertices; v += kThreads) {
        if (!visited[v]) atomicMin(reinterpret_cast<unsigned long long*>(&smallest_unvisited), v);
      }
      __syncthreads();
      if (tid == 0) {
        const int64_t start = smallest_unvisited;
        order[level_end] = start;
        parent[start] = -1;
        visited[start] = 1;
        tail = level_end + 1;
        ++trees;
      }
      __syncthreads();
      continue;
    }

    for (int64_t k = level_begin + tid; k < level_end; k += kThreads) {
      const int32_t u = static_cast<int32_t>(order[k]);
      for (int32_t j = adjacency_start[u]; j < adjacency_start[u + 1]; ++j) {
        const int32_t n = other_end(adjacency[j], u);
        if (!visited[n]) {
          atomicMin(reinterpret_cast<unsigned long long*>(&claim[n]), (static_cast<uint64_t>(k) << 32) | adjacency[j]);
        }
      }
    }
    __syncthreads();

    // A frontier vertex's children are the neighbours it claimed, in row order.
    auto claimed = [&](int64_t k, int32_t j, int32_t u) {
      const int32_t n = other_end(adjacency[j], u);
      return !visited[n] && claim[n] == ((static_cast<uint64_t>(k) << 32) | adjacency[j]);
    };
    const int64_t next_end = block_exclusive_scan<kThreads>(
        level_end - level_begin, level_end,
        [&](int64_t i) -> int64_t {
          const int64_t k = level_begin + i;
          const int32_t u = static_cast<int32_t>(order[k]);
          int64_t count = 0;
          for (int32_t j = adjacency_start[u]; j < adjacency_start[u + 1]; ++j) count += claimed(k, j, u);
          return count;
        },
        [&](int64_t i, int64_t slot) {
          const int64_t k = level_begin + i;
          const int32_t u = static_cast<int32_t>(order[k]);
          for (int32_t j = adjacency_start[u]; j < adjacency_start[u + 1]; ++j) {
            if (claimed(k, j, u)) {
              const int32_t n = other_end(adjacency[j], u);
              order[slot++] = n;
              parent[n] = u;
            }
          }
        });
    // Mark the new level only now: the claims above read `visited` of the old one.
    for (int64_t k = level_end + tid; k < next_end; k += kThreads) {
      visited[order[k]] = 1;
    }
    __syncthreads();
    if (tid == 0) {
      head = level_end;
      tail = next_end;
    }
    __syncthreads();
  }
}

std::tuple<at::Tensor, at::Tensor> bfs_cuda(const at::Tensor& tree, int64_t num_vertices, int64_t root) {
  TORCH_CHECK_VALUE(tree.dim() == 3 && tree.size(2) == 2, "bfs: tree must be (B, V-1, 2)");
  // int32 vertex ids and rows, with room for the block-stride loops (+ kThreads) not to overflow.
  TORCH_CHECK_VALUE(num_vertices >= 1 && num_vertices < INT_MAX / 2, "bfs: num_vertices out of range");
  TORCH_CHECK_VALUE(0 <= root && root < num_vertices, "bfs: root must be in [0, ", num_vertices, "), got ", root);
  TORCH_CHECK_VALUE(tree.size(1) < INT_MAX / 4, "bfs: too many tree rows");
  TORCH_CHECK_VALUE(tree.size(0) <= INT_MAX, "bfs: batch too large for one launch");
  const c10::cuda::OptionalCUDAGuard guard(tree.device());
  const int64_t batch = tree.size(0);
  const int64_t rows = tree.size(1);
  auto options = tree.options();
  auto order = at::empty({batch, num_vertices}, options.dtype(at::kLong));
  auto parent = at::empty({batch, num_vertices}, options.dtype(at::kLong));
  if (batch == 0) {
    return {order, parent};
  }
  auto adjacency_start = at::empty({batch, num_vertices + 1}, options.dtype(at::kInt));
  auto filled = at::empty({batch, num_vertices}, options.dtype(at::kInt));
  auto adjacency = at::empty({batch, std::max<int64_t>(2 * rows, 1)}, options.dtype(at::kInt));
  auto claim = at::empty({batch, num_vertices}, options.dtype(at::kLong));
  auto visited = at::empty({batch, num_vertices}, options.dtype(at::kByte));
  BfsScratch scratch{adjacency_start.data_ptr<int32_t>(), filled.data_ptr<int32_t>(), adjacency.data_ptr<int32_t>(),
                     reinterpret_cast<uint64_t*>(claim.data_ptr<int64_t>()), visited.data_ptr<uint8_t>()};
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_INDEX_TYPES(tree.scalar_type(), "bfs_cuda", [&] {
    bfs_kernel<index_t><<<batch, kThreads, 0, stream>>>(Strided3<const index_t>(tree), static_cast<int32_t>(rows),
                                                        static_cast<int32_t>(num_vertices), static_cast<int32_t>(root),
                                                        scratch, order.data_ptr<int64_t>(), parent.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {order, parent};
}

}  // namespace
}  // namespace cuda

TORCH_LIBRARY_IMPL(tree_scan, CUDA, m) {
  m.impl("bfs", &cuda::bfs_cuda);
}

}  // namespace tree_scan
