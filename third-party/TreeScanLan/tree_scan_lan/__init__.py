"""Tree-scan operators for GrootVL's language model (GrootL).

The kernels are those of ``tree_scan`` (one compiled library serves both packages);
this package adds the language-side trees.

Public API:
    minimum_spanning_tree(edge_index, edge_weight, num_vertices) -> tree
    tree_scan_causal(x, edge_weight, tree_or_order, root=0) -> out     leaf-to-root scan
    prepare(tree, num_vertices=None, root=0) -> TreeOrder               rooted, ready to scan
    bfs(tree, num_vertices=None, root=0) -> TreeOrder                   breadth-first order
    chain(batch, seq_len) -> TreeOrder                                  the chain, rooted at 0
    candidate_edges(seq_len, prompt_lengths) -> (B, 3(L-1), 2)
    language_tree(features, prompt_lengths) -> tree                     MST of the candidates
    language_tree_of_factors(factors, prompt_lengths) -> tree           the same for outer-product features
    chain_tree(batch, seq_len) -> tree                                  (i, i+1)
    selective_tree_scan(x, delta, A, B, C, D, tree, tree_scale) -> (y, final_state)
                                                                        GrootL's chain + tree scan, fused
"""

from tree_scan import BACKEND, TreeOrder, bfs, chain, minimum_spanning_tree, prepare, tree_scan_causal

from .candidates import (
    candidate_edge_weights,
    candidate_edge_weights_of_factors,
    candidate_edges,
    chain_tree,
    language_tree,
    language_tree_of_factors,
    prompt_lengths_tensor,
)
from .selective import selective_tree_scan

__all__ = [
    "BACKEND",
    "TreeOrder",
    "bfs",
    "candidate_edge_weights",
    "candidate_edge_weights_of_factors",
    "candidate_edges",
    "chain",
    "chain_tree",
    "language_tree",
    "language_tree_of_factors",
    "minimum_spanning_tree",
    "prepare",
    "prompt_lengths_tensor",
    "selective_tree_scan",
    "tree_scan_causal",
]
