"""The 4-connected pixel grid of a feature map and its minimum spanning tree (SPEC §1).

Vertex ``v = r * W + c``. Edges: every vertical edge ``(r, c)-(r+1, c)`` in raster
order, then every horizontal edge ``(r, c)-(r, c+1)`` in raster order. The weight of
an edge measures how different its two pixels' guide features are, so the minimum
spanning tree keeps similar neighbours together.
"""

from __future__ import annotations

import torch

from . import _checks
from .ops import minimum_spanning_tree

__all__ = ["METRICS", "grid_edges", "grid_edge_weights", "grid_mst"]

METRICS = ("cosine", "euclidean", "manhattan")


def grid_edges(height: int, width: int, device=None) -> torch.Tensor:
    """``(E, 2)`` int64 vertex pairs of the H x W grid, ``E = (H-1)W + H(W-1)``."""
    height = _checks.positive_int("height", height)
    width = _checks.positive_int("width", width)
    pixel = torch.arange(height * width, device=device).view(height, width)
    vertical = torch.stack([pixel[:-1, :], pixel[1:, :]], dim=-1).reshape(-1, 2)
    horizontal = torch.stack([pixel[:, :-1], pixel[:, 1:]], dim=-1).reshape(-1, 2)
    return torch.cat([vertical, horizontal])


def grid_edge_weights(guide: torch.Tensor, metric: str = "cosine") -> torch.Tensor:
    """``(B, E)`` weights of the grid edges of ``guide (B, C, H, W)``, in the order of :func:`grid_edges`.

    ``metric``: "cosine" (``exp(-cos)``, the default and the release's), "euclidean"
    (squared L2 distance) or "manhattan" (L1 distance): the paper's Table 5. float32
    (float64 for a float64 guide); any memory layout (channels-last is as fast). One
    pass over the guide (compiled kernels); ``tree_scan.reference.grid_edge_weights``
    is the plain-PyTorch twin. No gradient flows through the weights.

    The channel sums run in float32 in an order that depends on the device and the
    memory layout, so weights can differ in the last bit between them, and so can the
    tree where two edges are that close. Given the same weights, the tree is the same
    everywhere (:func:`tree_scan.minimum_spanning_tree`).
    """
    guide = _checks.tensor("guide", guide, _checks.FLOAT_DTYPES, 4, "(B, C, H, W)")
    if guide.shape[2] < 1 or guide.shape[3] < 1:
        raise ValueError(f"`guide` must have H, W >= 1; got shape {tuple(guide.shape)}")
    if metric not in METRICS:
        raise ValueError(f"`metric` must be one of {METRICS}; got {metric!r}")
    return torch.ops.tree_scan.grid_edge_weights(guide.detach(), metric)


def grid_mst(guide: torch.Tensor, metric: str = "cosine") -> torch.Tensor:
    """Minimum spanning tree of the 4-connected grid of ``guide (B, C, H, W)``.

    Returns ``(B, H*W - 1, 2)`` int64 tree edges (see :func:`tree_scan.minimum_spanning_tree`).
    The tree carries no gradient.
    """
    weights = grid_edge_weights(guide, metric)
    batch, _, height, width = guide.shape
    edges = grid_edges(height, width, guide.device).expand(batch, -1, -1)
    return minimum_spanning_tree(edges, weights, height * width, validate=False)  # edges made here
