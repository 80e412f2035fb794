// Minimum spanning tree on the CPU: Kruskal's algorithm with a disjoint-set
// forest, one image per task.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <numeric>
#include <vector>

#include "../edge_order.h"
#include "../kernel_checks.h"

namespace tree_scan {
namespace {

class DisjointSets {
 public:
  explicit DisjointSets(int64_t size) : parent_(size) {
    std::iota(parent_.begin(), parent_.end(), 0);
  }

  int64_t find(int64_t v) {
    while (parent_[v] != v) {
      parent_[v] = parent_[parent_[v]];  // path halving
      v = parent_[v];
    }
    return v;
  }

  // Joins the sets of a and b; false when they were one set already.
  bool unite(int64_t a, int64_t b) {
    a = find(a);
    b = find(b);
    if (a == b) {
      return false;
    }
    parent_[std::max(a, b)] = std::min(a, b);
    return true;
  }

 private:
  std::vector<int64_t> parent_;
};

struct KeyedEdge {
  uint64_t weight_key;
  int64_t index;
  bool operator<(const KeyedEdge& other) const {
    return weight_key != other.weight_key ? weight_key < other.weight_key : index < other.index;
  }
};

template <typename index_t, typename weight_t>
void mst_cpu_typed(const at::Tensor& edge_index, const at::Tensor& edge_weight, int64_t num_vertices, at::Tensor& tree) {
  const int64_t batch = edge_index.size(0);
  const int64_t num_edges = edge_index.size(1);
  const auto edges = edge_index.accessor<index_t, 3>();
  const auto weights = edge_weight.accessor<weight_t, 2>();
  auto out = tree.accessor<int64_t, 3>();

  at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
    std::vector<KeyedEdge> sorted(num_edges);
    std::vector<char> in_tree(num_edges);
    for (int64_t b = begin; b < end; ++b) {
      for (int64_t e = 0; e < num_edges; ++e) {
        const int64_t u = edges[b][e][0];
        const int64_t v = edges[b][e][1];
        TORCH_CHECK_VALUE(
            0 <= u && u < num_vertices && 0 <= v && v < num_vertices,
            "minimum_spanning_tree: edge_index[", b, ", ", e, "] = (", u, ", ", v,
            ") names a vertex outside [0, num_vertices = ", num_vertices, ")");
        sorted[e] = KeyedEdge{weight_order_key(static_cast<double>(weights[b][e])), e};
      }
      std::sort(sorted.begin(), sorted.end());

      DisjointSets components(num_vertices);
      std::fill(in_tree.begin(), in_tree.end(), 0);
      int64_t taken = 0;
      for (const KeyedEdge& edge : sorted) {
        if (taken == num_vertices - 1) {
          break;
        }
        if (components.unite(edges[b][edge.index][0], edges[b][edge.index][1])) {
          in_tree[edge.index] = 1;
          ++taken;
        }
      }

      // Tree edges in candidate order, then -1 rows where the graph was disconnected.
      int64_t row = 0;
      for (int64_t e = 0; e < num_edges; ++e) {
        if (in_tree[e]) {
          out[b][row][0] = edges[b][e][0];
          out[b][row][1] = edges[b][e][1];
          ++row;
        }
      }
      for (; row < num_vertices - 1; ++row) {
        out[b][row][0] = -1;
        out[b][row][1] = -1;
      }
    }
  });
}

at::Tensor minimum_spanning_tree_cpu(const at::Tensor& edge_index, const at::Tensor& edge_weight, int64_t num_vertices) {
  check_mst_inputs(edge_index, edge_weight, num_vertices);
  auto tree = at::empty({edge_index.size(0), num_vertices - 1, 2}, edge_index.options().dtype(at::kLong));
  AT_DISPATCH_INDEX_TYPES(edge_index.scalar_type(), "minimum_spanning_tree_cpu", [&] {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, edge_weight.scalar_type(), "minimum_spanning_tree_cpu", [&] {
      mst_cpu_typed<index_t, scalar_t>(edge_index, edge_weight, num_vertices, tree);
    });
  });
  return tree;
}

}  // namespace

TORCH_LIBRARY_IMPL(tree_scan, CPU, m) {
  m.impl("minimum_spanning_tree", &minimum_spanning_tree_cpu);
}

}  // namespace tree_scan
