"""Tree-scan operators for GrootVL's vision models (GrootV).

Public API:
    minimum_spanning_tree(edge_index, edge_weight, num_vertices) -> tree   (B, V-1, 2)
    grid_mst(guide, metric="cosine") -> tree                                (B, H*W-1, 2)
    prepare(tree, num_vertices=None, root=0) -> TreeOrder(order, parent, layout)   rooted, ready to scan
    bfs(tree, num_vertices=None, root=0) -> TreeOrder                       breadth-first order
    chain(batch, length) -> TreeOrder                                       the chain 0 - 1 - ... - (L-1)
    tree_scan(x, edge_weight, tree_or_order) -> out                         all-roots scan
    tree_scan_causal(x, edge_weight, tree_or_order, root=0) -> out          leaf-to-root scan

``BACKEND`` says which compiled kernels there are: "cpu" or "cuda" (the C++ kernels, the
latter with the CUDA MST/BFS/grid weights too) or "reference" (plain PyTorch: the
extension is not built). The scans on CUDA tensors are Triton kernels
(``tree_scan.triton_scan``) whatever the build.
"""

from ._library import BACKEND
from .grid import METRICS, grid_edge_weights, grid_edges, grid_mst
from .ops import TreeOrder, bfs, chain, minimum_spanning_tree, prepare, tree_scan, tree_scan_causal

__all__ = [
    "BACKEND",
    "METRICS",
    "TreeOrder",
    "bfs",
    "chain",
    "grid_edge_weights",
    "grid_edges",
    "grid_mst",
    "minimum_spanning_tree",
    "prepare",
    "tree_scan",
    "tree_scan_causal",
]
