// The schemas of GrootL's language operators (torch.ops.tree_scan_lan).
//
// A library of its own, beside tree_scan's (ops.cpp), compiled into the same
// tree_scan._C. Kernels: cpu/selective_scan.cpp. Python adds the fake (meta)
// implementations and the autograd formula in tree_scan_lan/_library.py, and the
// public function with its argument checks in tree_scan_lan/selective.py.
#include <torch/library.h>

TORCH_LIBRARY(tree_scan_lan, m) {
  m.set_python_module("tree_scan_lan._library");

  // GrootL's selective scan (SPEC §4), fused: for x, delta (B, L, d), A (d, N),
  // B, C (B, L, N), D (d), with u = delta B x and decays exp(delta A) formed only
  // inside the kernel,
  //   y = C (scan_chain(u) + tree_scale scan_tree(u)) + D x        (B, L, d)
  //   final_state = that state at the last token                   (B, d, N)
  // The tree is the BFS order (tree_order, tree_parent: (B, L) int64, as
  // tree_scan_lan.bfs returns them) of the sequence flipped so that vertex 0 is
  // the last token; without it the second tree is the chain itself. tree_plan
  // carries extra per-tree data for device kernels; the CPU kernel ignores it.
  m.def(
      "selective_tree_scan(Tensor x, Tensor delta, Tensor A, Tensor B, Tensor C, Tensor D, Tensor? tree_order,"
      " Tensor? tree_parent, float tree_scale, Tensor[]? tree_plan=None) -> (Tensor y, Tensor final_state)");
  // Gradients of the above for x, delta, A, B, C, D; recomputes the scans.
  m.def(
      "selective_tree_scan_backward(Tensor grad_y, Tensor? grad_final_state, Tensor x, Tensor delta, Tensor A,"
      " Tensor B, Tensor C, Tensor D, Tensor? tree_order, Tensor? tree_parent, float tree_scale,"
      " Tensor[]? tree_plan=None)"
      " -> (Tensor grad_x, Tensor grad_delta, Tensor grad_A, Tensor grad_B, Tensor grad_C, Tensor grad_D)");
}
