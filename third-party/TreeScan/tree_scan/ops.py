"""The public tree operators: minimum spanning tree, breadth-first order, tree scans.

A typical use builds the tree once and scans along it::

    tree = tree_scan.grid_mst(guide)                 # (B, H*W - 1, 2)
    order = tree_scan.bfs(tree)                      # reuse for every scan on this tree
    out = tree_scan.tree_scan(x, edge_weight, order) # (B, C, H*W)

All functions take batched inputs, run on CPU or CUDA, work under ``torch.compile``
(``fullgraph=True``) and validate their arguments. See SPEC §1-2 for the exact
definitions; ``tree_scan.reference`` computes the same in plain PyTorch.
"""

from __future__ import annotations

from typing import NamedTuple, Union

import torch
from torch.autograd import forward_ad

from . import _checks, _library  # noqa: F401  (_library registers torch.ops.tree_scan)

__all__ = ["TreeOrder", "minimum_spanning_tree", "bfs", "tree_scan", "tree_scan_causal"]


class TreeOrder(NamedTuple):
    """A rooted tree as its breadth-first traversal: compute once, reuse for many scans.

    ``order (B, V)``: the vertices, root first, every parent before its children.
    ``parent (B, V)``: the parent of every vertex, -1 at the root (and at the root of
    every further tree of a spanning forest).
    """

    order: torch.Tensor
    parent: torch.Tensor


Tree = Union[torch.Tensor, TreeOrder]


def minimum_spanning_tree(
    edge_index: torch.Tensor, edge_weight: torch.Tensor, num_vertices: int, validate: bool = True
) -> torch.Tensor:
    """Minimum spanning tree of every graph in a batch.

    Args:
        edge_index: ``(B, E, 2)`` int32/int64 candidate edges (vertex pairs in ``[0, V)``).
            A batch dimension of stride 0 (``expand``) shares one edge list without copies.
        edge_weight: ``(B, E)`` float weights. Ties are broken by edge index (lower wins);
            NaN weights count as larger than +inf.
        num_vertices: ``V``.
        validate: check that ``edge_index`` names vertices in ``[0, V)``. On a GPU the
            check synchronises the device; ``False`` skips it for edges this library
            made (on the CPU the kernel checks regardless).

    Returns:
        ``(B, V-1, 2)`` int64 tree edges, in increasing candidate index, each pair as
        given in ``edge_index``. A disconnected graph gives its spanning forest, with
        ``(-1, -1)`` rows after the forest's edges.
    """
    edge_index = _checks.tensor("edge_index", edge_index, _checks.INDEX_DTYPES, 3, "(B, E, 2)")
    edge_weight = _checks.tensor("edge_weight", edge_weight, _checks.FLOAT_DTYPES, 2, "(B, E)")
    num_vertices = _checks.positive_int("num_vertices", num_vertices)
    if edge_index.shape[2] != 2:
        raise ValueError(f"`edge_index` must be (B, E, 2); got shape {tuple(edge_index.shape)}")
    if tuple(edge_weight.shape) != tuple(edge_index.shape[:2]):
        raise ValueError(
            f"`edge_weight` must be (B, E) = {tuple(edge_index.shape[:2])} to match `edge_index`; "
            f"got {tuple(edge_weight.shape)}"
        )
    _checks.same_device(edge_index=edge_index, edge_weight=edge_weight)
    if validate:
        _checks.index_range("edge_index", edge_index, 0, num_vertices)
    return torch.ops.tree_scan.minimum_spanning_tree(edge_index, edge_weight, num_vertices)


def bfs(tree: torch.Tensor, num_vertices: int | None = None, root: int = 0, validate: bool = True) -> TreeOrder:
    """Breadth-first order of every tree in a batch, from ``root``.

    The order is that of a FIFO queue: a vertex queues its neighbours in increasing
    order of the ``tree`` row joining them. Vertices the root cannot reach (a spanning
    forest) start new trees, in increasing vertex order, each rooted at its smallest
    vertex. Same tree, same order, on every device.

    Args:
        tree: ``(B, V-1, 2)`` int32/int64 vertex pairs, as returned by the MST functions.
        num_vertices: ``V``; defaults to ``tree.shape[1] + 1``.
        root: the root vertex (SPEC: 0; the paper's "last vertex" ablation uses V-1).
        validate: check that ``tree`` names vertices in ``[0, V)`` (or is a ``(-1, -1)``
            padding row). On a GPU the check synchronises the device; ``False`` skips it
            for trees this library made (on the CPU the kernel checks regardless).
    """
    tree = _checks.tensor("tree", tree, _checks.INDEX_DTYPES, 3, "(B, V-1, 2)")
    if tree.shape[2] != 2:
        raise ValueError(f"`tree` must be (B, V-1, 2); got shape {tuple(tree.shape)}")
    num_vertices = tree.shape[1] + 1 if num_vertices is None else _checks.positive_int("num_vertices", num_vertices)
    if isinstance(root, bool) or not isinstance(root, int):
        raise TypeError(f"`root` must be an int, got {type(root).__name__}")
    if not 0 <= root < num_vertices:
        raise ValueError(f"`root` must be in [0, {num_vertices}), got {root}")
    if validate:
        _checks.index_range("tree", tree, 0, num_vertices, allow_padding=True)
    order, parent = torch.ops.tree_scan.bfs(tree, num_vertices, root)
    return TreeOrder(order, parent)


def _scan_arguments(x, edge_weight, tree, root: int | None) -> tuple[torch.Tensor, torch.Tensor, TreeOrder]:
    x = _checks.tensor("x", x, _checks.FLOAT_DTYPES, 3, "(B, C, L)")
    edge_weight = _checks.tensor("edge_weight", edge_weight, _checks.FLOAT_DTYPES, 3, "(B, C, L)")
    for name, value in (("x", x), ("edge_weight", edge_weight)):
        # The operators have reverse-mode formulas only; forward mode would see zero tangents.
        if forward_ad.unpack_dual(value).tangent is not None:
            raise NotImplementedError(
                f"`{name}` carries a forward-mode tangent (torch.func.jvp / torch.autograd.forward_ad): the tree "
                "scans support reverse-mode autograd (backward, torch.autograd.grad) only"
            )
    if edge_weight.shape != x.shape:
        raise ValueError(f"`edge_weight` must have the shape of `x` {tuple(x.shape)}; got {tuple(edge_weight.shape)}")
    if edge_weight.dtype != x.dtype:
        raise TypeError(f"`edge_weight` must have the dtype of `x` ({x.dtype}); got {edge_weight.dtype}")
    batch, _, length = x.shape
    if length < 1:
        raise ValueError(f"`x` must have at least one vertex (L >= 1); got shape {tuple(x.shape)}")
    if isinstance(tree, TreeOrder):
        if root is not None:
            raise ValueError(
                f"`root` ({root}) cannot be applied to a TreeOrder, which is rooted where `bfs` rooted it: "
                "pass root to tree_scan.bfs, or pass the tree's edges here"
            )
        for name, part in (("tree.order", tree.order), ("tree.parent", tree.parent)):
            _checks.tensor(name, part, (torch.int64,), 2, "(B, L)")
            if tuple(part.shape) != (batch, length):
                raise ValueError(f"`{name}` must be (B, L) = {(batch, length)} to match `x`; got {tuple(part.shape)}")
        order = tree
    elif isinstance(tree, torch.Tensor):
        _checks.tensor("tree", tree, _checks.INDEX_DTYPES, 3, "(B, L-1, 2)")
        if tuple(tree.shape) != (batch, length - 1, 2):
            raise ValueError(f"`tree` must be (B, L-1, 2) = {(batch, length - 1, 2)} to match `x`; got {tuple(tree.shape)}")
        order = bfs(tree, length, 0 if root is None else root)
    else:
        raise TypeError(f"`tree` must be a (B, L-1, 2) tensor or a TreeOrder, got {type(tree).__name__}")
    _checks.same_device(x=x, edge_weight=edge_weight, order=order.order, parent=order.parent)
    return x, edge_weight, order


def tree_scan(x: torch.Tensor, edge_weight: torch.Tensor, tree: Tree) -> torch.Tensor:
    """All-roots tree scan (vision): ``out_i = sum_j S(i, j) x_j`` for every vertex ``i``.

    ``S(i, j)`` is the product, per channel, of the edge weights on the tree path between
    ``i`` and ``j``; the edge between ``v`` and its parent carries ``edge_weight[..., v]``
    (the child's weight), the tree being rooted at vertex 0 unless ``tree`` is a
    :class:`TreeOrder` with another root. Linear time: one sweep up, one sweep down.

    Args:
        x: ``(B, C, L)`` features (float16/bfloat16/float32/float64; any strides).
        edge_weight: ``(B, C, L)`` weights, same dtype.
        tree: ``(B, L-1, 2)`` tree edges, or the :class:`TreeOrder` from :func:`bfs`.

    Returns ``(B, C, L)`` in the dtype of ``x`` (accumulated in float32 at least).
    Differentiable in ``x`` and ``edge_weight``.
    """
    x, edge_weight, order = _scan_arguments(x, edge_weight, tree, None)
    return torch.ops.tree_scan.scan_all_roots(x, edge_weight, order.order, order.parent)


def tree_scan_causal(
    x: torch.Tensor, edge_weight: torch.Tensor, tree: Tree, root: int | None = None
) -> torch.Tensor:
    """Leaf-to-root tree scan (language): ``out_i = sum_{j in subtree(i)} S(i, j) x_j``.

    On a chain rooted at its first vertex this is the linear recurrence
    ``h_i = x_i + w_{i+1} h_{i+1}``. ``root`` (default 0) picks the root when ``tree`` is
    given as edges; a :class:`TreeOrder` carries its own root (that of :func:`bfs`), and
    passing ``root`` with one is a ValueError. Arguments and result as in
    :func:`tree_scan`. Differentiable in ``x`` and ``edge_weight``.
    """
    x, edge_weight, order = _scan_arguments(x, edge_weight, tree, root)
    return torch.ops.tree_scan.scan_causal(x, edge_weight, order.order, order.parent)
