// Argument checks of the kernels shared by CPU and CUDA: the shapes and dtypes the
// schemas in ops.cpp cannot express. The Python wrappers check the same with
// messages aimed at users; these guard direct torch.ops calls.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <vector>

namespace tree_scan {

inline void check_mst_inputs(const at::Tensor& edge_index, const at::Tensor& edge_weight, int64_t num_vertices) {
  TORCH_CHECK_VALUE(edge_index.dim() == 3 && edge_index.size(2) == 2, "minimum_spanning_tree: edge_index must be (B, E, 2)");
  TORCH_CHECK_VALUE(
      edge_weight.dim() == 2 && edge_weight.size(0) == edge_index.size(0) && edge_weight.size(1) == edge_index.size(1),
      "minimum_spanning_tree: edge_weight must be (B, E) matching edge_index");
  TORCH_CHECK_VALUE(edge_weight.device() == edge_index.device(),
                    "minimum_spanning_tree: edge_index and edge_weight must be on one device; got ",
                    edge_index.device(), " and ", edge_weight.device());
  TORCH_CHECK_VALUE(num_vertices >= 1, "minimum_spanning_tree: num_vertices must be >= 1, got ", num_vertices);
}

inline void check_scan_inputs(const char* op, const at::Tensor& x, const at::Tensor& edge_weight,
                              const at::Tensor& order, const at::Tensor& parent) {
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
  // Dispatch follows x; a tensor elsewhere would be read through the wrong kind of pointer.
  TORCH_CHECK_VALUE(edge_weight.device() == x.device() && order.device() == x.device() &&
                        parent.device() == x.device(),
                    op, ": x, edge_weight, order and parent must be on one device; got ", x.device(), ", ",
                    edge_weight.device(), ", ", order.device(), ", ", parent.device());
}

inline void check_scan_backward_inputs(const char* op, const at::Tensor& grad_out, const at::Tensor& x,
                                       const at::Tensor& edge_weight, const at::Tensor& order,
                                       const at::Tensor& parent) {
  check_scan_inputs(op, x, edge_weight, order, parent);
  TORCH_CHECK_VALUE(grad_out.sizes() == x.sizes(), op, ": grad_out must have the shape of x ", x.sizes(), ", got ",
                    grad_out.sizes());
  TORCH_CHECK_VALUE(grad_out.device() == x.device(), op, ": grad_out must be on the device of x (", x.device(),
                    "), got ", grad_out.device());
}

}  // namespace tree_scan
