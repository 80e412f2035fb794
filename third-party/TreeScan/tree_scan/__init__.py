"""Tree-scan operators for GrootVL's vision models (GrootV).

Public API:
    minimum_spanning_tree(edge_index, edge_weight, num_vertices) -> tree   (B, V-1, 2)
    grid_mst(guide, metric="cosine") -> tree                                (B, H*W-1, 2)
    bfs(tree, num_vertices=None, root=0) -> TreeOrder(order, parent)
    tree_scan(x, edge_weight, tree_or_order) -> out                         all-roots scan
    tree_scan_causal(x, edge_weight, tree_or_order, root=0) -> out          leaf-to-root scan

``BACKEND`` says which kernels serve CPU tensors: "cpu" or "cuda" (compiled kernels,
the latter with CUDA too) or "reference" (plain PyTorch: the extension is not built).
"""

from ._library import BACKEND
from .grid import METRICS, grid_edge_weights, grid_edges, grid_mst
from .ops import TreeOrder, bfs, minimum_spanning_tree, tree_scan, tree_scan_causal

__all__ = [
    "BACKEND",
    "METRICS",
    "TreeOrder",
    "bfs",
    "grid_edge_weights",
    "grid_edges",
    "grid_mst",
    "minimum_spanning_tree",
    "tree_scan",
    "tree_scan_causal",
]
