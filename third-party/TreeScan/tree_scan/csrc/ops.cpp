// The schemas of every tree operator, in one place.
//
// Kernels live beside this file: cpu/*.cpp registers the CPU implementations,
// cuda/*.cu the CUDA ones. Python adds the fake (meta) implementations and the
// autograd formulas in tree_scan/_library.py. Both Python packages (tree_scan
// and tree_scan_lan) call these operators through torch.ops.tree_scan.
#include <Python.h>
#include <torch/library.h>

// `from tree_scan import _C` loads this shared library, which runs the
// registrations below. The module itself holds nothing.
extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT, "_C", "Tree-scan operator kernels (see torch.ops.tree_scan).", -1, nullptr};
  return PyModule_Create(&module_def);
}

TORCH_LIBRARY(tree_scan, m) {
  // Fake implementations and autograd formulas are registered from Python;
  // torch imports this module on its own when it needs them.
  m.set_python_module("tree_scan._library");

  // (B, C, H, W) guide -> (B, E) weights of the 4-connected grid edges (SPEC §1):
  // vertical edges then horizontal ones, raster order; metric cosine/euclidean/manhattan.
  m.def("grid_edge_weights(Tensor guide, str metric) -> Tensor");
  // (B, E, 2) candidate edges, (B, E) weights -> (B, V-1, 2) tree edges in
  // increasing candidate order; rows of -1 pad a spanning forest.
  m.def("minimum_spanning_tree(Tensor edge_index, Tensor edge_weight, int num_vertices) -> Tensor");
  // (B, R, 2) tree edges -> breadth-first order (B, V) and parent vertex (B, V), -1 at roots.
  m.def("bfs(Tensor tree, int num_vertices, int root) -> (Tensor order, Tensor parent)");
  // Every vertex aggregates every other one: out_i = sum_j S(i, j) x_j.
  m.def("scan_all_roots(Tensor x, Tensor edge_weight, Tensor order, Tensor parent) -> Tensor");
  m.def(
      "scan_all_roots_backward(Tensor grad_out, Tensor x, Tensor edge_weight, Tensor order, Tensor parent)"
      " -> (Tensor grad_x, Tensor grad_edge_weight)");
  // Every vertex aggregates its subtree: out_i = sum_{j in subtree(i)} S(i, j) x_j.
  m.def("scan_causal(Tensor x, Tensor edge_weight, Tensor order, Tensor parent) -> Tensor");
  m.def(
      "scan_causal_backward(Tensor grad_out, Tensor x, Tensor edge_weight, Tensor order, Tensor parent)"
      " -> (Tensor grad_x, Tensor grad_edge_weight)");
}
