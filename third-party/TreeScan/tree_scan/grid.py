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
    pixel = torch.arange(height * width, device=device).view(height, width)
    vertical = torch.stack([pixel[:-1, :], pixel[1:, :]], dim=-1).reshape(-1, 2)
    horizontal = torch.stack([pixel[:, :-1], pixel[:, 1:]], dim=-1).reshape(-1, 2)
    return torch.cat([vertical, horizontal])


def _dissimilarity(a: torch.Tensor, b: torch.Tensor, metric: str) -> torch.Tensor:
    """Per-edge weight between feature columns ``a`` and ``b`` (B, C, N) -> (B, N)."""
    if metric == "cosine":
        # exp(-cos) as the release computes it; exp is increasing, so the tree is that of -cos.
        return torch.exp(-torch.cosine_similarity(a, b, dim=1))
    if metric == "euclidean":
        return (a - b).square().sum(dim=1)
    return (a - b).abs().sum(dim=1)


def grid_edge_weights(guide: torch.Tensor, metric: str = "cosine") -> torch.Tensor:
    """``(B, E)`` weights of the grid edges of ``guide (B, C, H, W)``, in float32 at least.

    ``metric``: "cosine" (``exp(-cos)``, the default and the release's), "euclidean"
    (squared L2 distance) or "manhattan" (L1 distance): the paper's Table 5.
    """
    if metric not in METRICS:
        raise ValueError(f"`metric` must be one of {METRICS}; got {metric!r}")
    guide = guide.to(torch.promote_types(guide.dtype, torch.float32))
    batch, channels = guide.shape[:2]
    vertical = _dissimilarity(guide[:, :, :-1, :].reshape(batch, channels, -1),
                              guide[:, :, 1:, :].reshape(batch, channels, -1), metric)
    horizontal = _dissimilarity(guide[:, :, :, :-1].reshape(batch, channels, -1),
                                guide[:, :, :, 1:].reshape(batch, channels, -1), metric)
    return torch.cat([vertical, horizontal], dim=1)


def grid_mst(guide: torch.Tensor, metric: str = "cosine") -> torch.Tensor:
    """Minimum spanning tree of the 4-connected grid of ``guide (B, C, H, W)``.

    Returns ``(B, H*W - 1, 2)`` int64 tree edges (see :func:`tree_scan.minimum_spanning_tree`).
    The tree carries no gradient.
    """
    guide = _checks.tensor("guide", guide, _checks.FLOAT_DTYPES, 4, "(B, C, H, W)")
    batch, _, height, width = guide.shape
    with torch.no_grad():
        weights = grid_edge_weights(guide.detach(), metric)
        edges = grid_edges(height, width, guide.device).expand(batch, -1, -1)
        return minimum_spanning_tree(edges, weights, height * width)
