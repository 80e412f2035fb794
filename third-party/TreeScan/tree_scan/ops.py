"""The public tree operators: minimum spanning tree, rooted orders, tree scans.

A typical use builds the tree once and scans along it::

    tree = tree_scan.grid_mst(guide)                   # (B, H*W - 1, 2)
    order = tree_scan.prepare(tree)                    # reuse for every scan on this tree
    out = tree_scan.tree_scan(x, edge_weight, order)   # (B, C, H*W)

All functions take batched inputs, run on CPU or CUDA, work under ``torch.compile``
(``fullgraph=True``) and check their arguments. See SPEC §1-2 for the exact
definitions; ``tree_scan.reference`` computes the same in plain PyTorch. On the CPU the
scans run the C++ kernels; on a GPU the Triton kernels of ``tree_scan.triton_scan``,
along the heavy-path plan that ``prepare``/``bfs``/``chain`` put into the ``TreeOrder``.
No default call on GPU tensors waits for the GPU: index checks there are device-side
assertions, or host checks only when asked for (``validate=True``).
"""

from __future__ import annotations

from typing import NamedTuple, Union

import torch
from torch.autograd import forward_ad

from . import _checks, heavy_paths, triton_scan
from . import _library  # noqa: F401  (registers torch.ops.tree_scan)
from .heavy_paths import ScanLayout

__all__ = ["TreeOrder", "minimum_spanning_tree", "bfs", "prepare", "chain", "tree_scan", "tree_scan_causal"]


class TreeOrder(NamedTuple):
    """A rooted tree (or forest), ready to scan: compute once, reuse for many scans.

    ``order (B, V)``: the vertices, a root first, every parent before its children
    (:func:`bfs`: breadth-first; :func:`prepare` on a GPU: depth-first).
    ``parent (B, V)``: the parent of every vertex, -1 at the root (and at the root of
    every further tree of a spanning forest).
    ``layout``: the heavy-path plan the GPU scans follow (:class:`tree_scan.heavy_paths.ScanLayout`),
    made by :func:`prepare`, :func:`chain` and, on a GPU, :func:`bfs`; None where nothing
    made it (the GPU scans then make it from ``parent`` at every call). Access the fields
    by name: ``order, parent = tree`` no longer unpacks a TreeOrder.
    """

    order: torch.Tensor
    parent: torch.Tensor
    layout: ScanLayout | None = None


Tree = Union[torch.Tensor, TreeOrder]


def minimum_spanning_tree(
    edge_index: torch.Tensor, edge_weight: torch.Tensor, num_vertices: int, validate: bool | None = None
) -> torch.Tensor:
    """Minimum spanning tree of every graph in a batch.

    Args:
        edge_index: ``(B, E, 2)`` int32/int64 candidate edges (vertex pairs in ``[0, V)``).
            A batch dimension of stride 0 (``expand``) shares one edge list without copies.
        edge_weight: ``(B, E)`` float weights. Ties are broken by edge index (lower wins);
            NaN weights count as larger than +inf.
        num_vertices: ``V``.
        validate: check on the host that ``edge_index`` names vertices in ``[0, V)``,
            with an error naming the vertex. ``None`` (default): where that costs no
            synchronisation (CPU tensors; on a GPU the kernel asserts on the device);
            ``True``: on a GPU too (it waits for the GPU); ``False``: never.

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
    _checks.index_range("edge_index", edge_index, 0, num_vertices, validate=validate)
    return torch.ops.tree_scan.minimum_spanning_tree(edge_index, edge_weight, num_vertices)


def _tree_arguments(tree, num_vertices, root, validate) -> tuple[torch.Tensor, int]:
    tree = _checks.tensor("tree", tree, _checks.INDEX_DTYPES, 3, "(B, V-1, 2)")
    if tree.shape[2] != 2:
        raise ValueError(f"`tree` must be (B, V-1, 2); got shape {tuple(tree.shape)}")
    num_vertices = tree.shape[1] + 1 if num_vertices is None else _checks.positive_int("num_vertices", num_vertices)
    if isinstance(root, bool) or not isinstance(root, int):
        raise TypeError(f"`root` must be an int, got {type(root).__name__}")
    if not 0 <= root < num_vertices:
        raise ValueError(f"`root` must be in [0, {num_vertices}), got {root}")
    _checks.index_range("tree", tree, 0, num_vertices, allow_padding=True, validate=validate)
    return tree, num_vertices


def bfs(tree: torch.Tensor, num_vertices: int | None = None, root: int = 0, validate: bool | None = None) -> TreeOrder:
    """Breadth-first order of every tree in a batch, from ``root``.

    The order is that of a FIFO queue: a vertex queues its neighbours in increasing
    order of the ``tree`` row joining them. Vertices the root cannot reach (a spanning
    forest) start new trees, in increasing vertex order, each rooted at its smallest
    vertex. Same tree, same order, on every device. On a GPU the result also carries the
    heavy-path plan of the GPU scans. To scan, :func:`prepare` is faster on a GPU: it
    needs no breadth-first walk, which takes one step per level of the tree.

    Args:
        tree: ``(B, V-1, 2)`` int32/int64 vertex pairs, as returned by the MST functions.
        num_vertices: ``V``; defaults to ``tree.shape[1] + 1``.
        root: the root vertex (SPEC: 0; the paper's "last vertex" ablation uses V-1).
        validate: check on the host that ``tree`` names vertices in ``[0, V)`` (or is a
            ``(-1, -1)`` padding row). ``None`` (default): where that costs no
            synchronisation (CPU tensors; on a GPU the kernel asserts on the device);
            ``True``: on a GPU too (it waits for the GPU); ``False``: never.
    """
    tree, num_vertices = _tree_arguments(tree, num_vertices, root, validate)
    order, parent = torch.ops.tree_scan.bfs(tree, num_vertices, root)
    layout = heavy_paths.layout_from_parent(parent) if tree.is_cuda else None
    return TreeOrder(order, parent, layout)


def prepare(tree: torch.Tensor, num_vertices: int | None = None, root: int = 0,
            validate: bool | None = None) -> TreeOrder:
    """Roots every tree of a batch at ``root`` and prepares it for scanning.

    The parents are those :func:`bfs` gives (a forest's other trees rooted at their
    smallest vertex). On the CPU this is :func:`bfs`. On a GPU the tree is rooted by an
    Euler tour in O(log V) parallel steps, whatever its depth, and ``order`` is depth-first
    (heavy child first) instead of breadth-first; the result carries the heavy-path plan
    of the GPU scans. Arguments as for :func:`bfs`.
    """
    tree, num_vertices = _tree_arguments(tree, num_vertices, root, validate)
    if not tree.is_cuda:
        return TreeOrder(*torch.ops.tree_scan.bfs(tree, num_vertices, root))
    return TreeOrder(*heavy_paths.root_forest(tree, num_vertices, root))


def chain(batch: int, length: int, device=None) -> TreeOrder:
    """The chain ``0 - 1 - ... - (L-1)`` rooted at 0, for ``batch`` images, with its plan.

    On a chain the causal scan is the linear recurrence ``h_i = x_i + w_{i+1} h_{i+1}``
    (GrootL's first scan; GrootV's raster ablation). Made without any tree walk, once per
    (length, device), and shared by the batch (batch stride 0).
    """
    batch = _checks.positive_int("batch", batch, minimum=0)
    length = _checks.positive_int("length", length)
    return TreeOrder(*heavy_paths.chain_layout(batch, length, device))


def _check_layout(layout, batch: int, length: int) -> None:
    if not isinstance(layout, ScanLayout):
        raise TypeError(f"`tree.layout` must be a tree_scan.heavy_paths.ScanLayout or None, got {type(layout).__name__}")
    elements = _checks.tensor("tree.layout.elements", layout.elements, (torch.int32,), 3, "(B, 4, N)")
    rounds = _checks.tensor("tree.layout.rounds", layout.rounds, (torch.int32,), 2, "(B, R + 1)")
    if elements.shape[0] != batch or elements.shape[1] != 4 or elements.shape[2] < length:
        raise ValueError(f"`tree.layout.elements` must be (B, 4, N >= L) with B = {batch}, L = {length}; "
                         f"got {tuple(elements.shape)}")
    if rounds.shape[0] != batch or rounds.shape[1] < 2:
        raise ValueError(f"`tree.layout.rounds` must be (B, R + 1) with B = {batch}; got {tuple(rounds.shape)}")


def _scan_arguments(x, edge_weight, tree, root: int | None) -> tuple[torch.Tensor, torch.Tensor, TreeOrder]:
    """Checked arguments of a scan, ``tree`` as a :class:`TreeOrder` (:func:`prepare` roots given edges)."""
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
                f"`root` ({root}) cannot be applied to a TreeOrder, which is rooted where `prepare`/`bfs` rooted it: "
                "pass root to tree_scan.prepare, or pass the tree's edges here"
            )
        for name, part in (("tree.order", tree.order), ("tree.parent", tree.parent)):
            _checks.tensor(name, part, (torch.int64,), 2, "(B, L)")
            if tuple(part.shape) != (batch, length):
                raise ValueError(f"`{name}` must be (B, L) = {(batch, length)} to match `x`; got {tuple(part.shape)}")
        if tree.layout is not None:
            _check_layout(tree.layout, batch, length)
        order = tree
    elif isinstance(tree, torch.Tensor):
        _checks.tensor("tree", tree, _checks.INDEX_DTYPES, 3, "(B, L-1, 2)")
        if tuple(tree.shape) != (batch, length - 1, 2):
            raise ValueError(f"`tree` must be (B, L-1, 2) = {(batch, length - 1, 2)} to match `x`; got {tuple(tree.shape)}")
        order = prepare(tree, length, 0 if root is None else root)
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
        tree: ``(B, L-1, 2)`` tree edges, or a :class:`TreeOrder` (:func:`prepare`, :func:`bfs`, :func:`chain`).

    Returns ``(B, C, L)`` in the dtype of ``x`` (accumulated in float32 at least).
    Differentiable in ``x`` and ``edge_weight``.
    """
    x, edge_weight, order = _scan_arguments(x, edge_weight, tree, None)
    if x.is_cuda:
        return triton_scan.scan(x, edge_weight, order, all_roots=True)
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
    if x.is_cuda:
        return triton_scan.scan(x, edge_weight, order, all_roots=False)
    return torch.ops.tree_scan.scan_causal(x, edge_weight, order.order, order.parent)
