// Breadth-first order of a tree on the CPU, one image per task.
//
// The order is the one of a FIFO queue started at `root`, where a vertex's
// neighbours are queued in increasing order of the tree row that joins them.
// Vertices the root cannot reach (a spanning forest) start new trees, taken in
// increasing vertex order. The CUDA kernel produces the same order. An edge
// list with a cycle, a repeated edge or a self-loop is rejected.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

namespace tree_scan {
namespace {

template <typename index_t>
void bfs_cpu_typed(const at::Tensor& tree, int64_t num_vertices, int64_t root, at::Tensor& order, at::Tensor& parent) {
  const int64_t batch = tree.size(0);
  const int64_t rows = tree.size(1);
  const auto edges = tree.accessor<index_t, 3>();
  auto order_out = order.accessor<int64_t, 2>();
  auto parent_out = parent.accessor<int64_t, 2>();

  at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> adjacency_start(num_vertices + 1);
    std::vector<int64_t> adjacency(2 * rows);
    std::vector<int64_t> filled(num_vertices);
    std::vector<char> visited(num_vertices);
    for (int64_t b = begin; b < end; ++b) {
      // Adjacency lists in compressed rows; each list in increasing tree-row order.
      std::fill(adjacency_start.begin(), adjacency_start.end(), 0);
      int64_t edges_given = 0;
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t u = edges[b][r][0];
        const int64_t v = edges[b][r][1];
        if (u == -1 && v == -1) {
          continue;  // padding row of a spanning forest
        }
        TORCH_CHECK_VALUE(
            0 <= u && u < num_vertices && 0 <= v && v < num_vertices, "bfs: tree[", b, ", ", r, "] = (", u, ", ", v,
            ") names a vertex outside [0, num_vertices = ", num_vertices, "); only (-1, -1) rows may pad a forest");
        ++adjacency_start[u + 1];
        ++adjacency_start[v + 1];
        ++edges_given;
      }
      for (int64_t v = 0; v < num_vertices; ++v) {
        adjacency_start[v + 1] += adjacency_start[v];
      }
      std::fill(filled.begin(), filled.end(), 0);
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t u = edges[b][r][0];
        const int64_t v = edges[b][r][1];
        if (u == -1) {
          continue;
        }
        adjacency[adjacency_start[u] + filled[u]++] = v;
        adjacency[adjacency_start[v] + filled[v]++] = u;
      }

      // The queue is the output row itself.
      std::fill(visited.begin(), visited.end(), 0);
      int64_t head = 0;
      int64_t tail = 0;
      auto grow_tree_from = [&](int64_t tree_root) {
        visited[tree_root] = 1;
        parent_out[b][tree_root] = -1;
        order_out[b][tail++] = tree_root;
        while (head < tail) {
          const int64_t u = order_out[b][head++];
          for (int64_t j = adjacency_start[u]; j < adjacency_start[u + 1]; ++j) {
            const int64_t n = adjacency[j];
            if (!visited[n]) {
              visited[n] = 1;
              parent_out[b][n] = u;
              order_out[b][tail++] = n;
            }
          }
        }
      };
      grow_tree_from(root);
      int64_t trees = 1;
      for (int64_t v = 0; v < num_vertices; ++v) {
        if (!visited[v]) {
          grow_tree_from(v);
          ++trees;
        }
      }
      // A forest of `trees` trees over V vertices has exactly V - trees edges; any
      // other count means an edge that joined two vertices already connected.
      TORCH_CHECK_VALUE(edges_given == num_vertices - trees, "bfs: tree[", b, "] is not a tree (nor a forest): its ",
                        edges_given, " edges span ", num_vertices - trees,
                        " (a cycle, a repeated edge or a self-loop); pass the edges of a spanning tree");
    }
  });
}

std::tuple<at::Tensor, at::Tensor> bfs_cpu(const at::Tensor& tree, int64_t num_vertices, int64_t root) {
  TORCH_CHECK_VALUE(tree.dim() == 3 && tree.size(2) == 2, "bfs: tree must be (B, V-1, 2)");
  TORCH_CHECK_VALUE(num_vertices >= 1, "bfs: num_vertices must be >= 1, got ", num_vertices);
  TORCH_CHECK_VALUE(0 <= root && root < num_vertices, "bfs: root must be in [0, ", num_vertices, "), got ", root);
  auto options = tree.options().dtype(at::kLong);
  auto order = at::empty({tree.size(0), num_vertices}, options);
  auto parent = at::empty({tree.size(0), num_vertices}, options);
  AT_DISPATCH_INDEX_TYPES(tree.scalar_type(), "bfs_cpu", [&] {
    bfs_cpu_typed<index_t>(tree, num_vertices, root, order, parent);
  });
  return {order, parent};
}

}  // namespace

TORCH_LIBRARY_IMPL(tree_scan, CPU, m) {
  m.impl("bfs", &bfs_cpu);
}

}  // namespace tree_scan
