"""GrootL's selective tree scan, fused: the chain and the language tree in one operator.

GrootL's mixer (SPEC §4) scans ``u = delta B x`` with the decays ``exp(delta A)`` over all
``d_inner x d_state`` channels, once along the chain of tokens (Mamba's recurrence) and once
along the language tree, adds the two and reads the state out with ``C``. Formed as tensors,
``u``, the decays and the states take ``B x L x d_inner x d_state`` floats each, per layer.
:func:`selective_tree_scan` computes the same without them: the expansion over the state
happens inside the kernel, the read-out too, and the backward recomputes what it needs.
:mod:`tree_scan_lan.selective_reference` is the unfused twin.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch.autograd import forward_ad
from tree_scan import TreeOrder, _checks

from . import _library  # noqa: F401  (registers torch.ops.tree_scan_lan)

__all__ = ["selective_tree_scan"]


def _accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def selective_tree_scan(
    x: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor,
    tree: TreeOrder | None,
    tree_scale: float = 0.3,
    tree_plan: Sequence[torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``y = C (scan_chain + tree_scale scan_tree) + D x`` and the final state, fused.

    Per row, channel ``d`` and state ``n``: ``u_t = delta_t[d] B_t[n] x_t[d]`` and the decay
    ``a_t = exp(delta_t[d] A[d, n])``. The chain scan is Mamba's recurrence
    ``h_t = a_t h_{t-1} + u_t``. The tree scan runs over ``tree``, the BFS order of the
    sequence flipped so that vertex 0 is the last token (``tree_scan_lan.bfs``), leaves to
    root; the edge from a vertex to its parent carries the decay of the token that follows
    the vertex's token (``roll(flip(a), 1)``, SPEC §4).

    Args:
        x: ``(B, L, d)`` the scan input (float16/bfloat16/float32/float64; any strides).
        delta: ``(B, L, d)`` the time steps, in the dtype of ``x`` or in its accumulation
            dtype (float32; GrootL keeps the time steps in float32).
        A: ``(d, N)`` the (negative) state matrix, accumulation dtype.
        B, C: ``(B, L, N)`` input and output projections, dtype of ``x``.
        D: ``(d,)`` the skip connection, accumulation dtype.
        tree: the language tree of every row, a :class:`tree_scan.TreeOrder` with
            ``order``/``parent`` of shape ``(B, L)``; ``None``: the second tree is the chain
            itself (prompts of <= 2 tokens), i.e. ``h = (1 + tree_scale) scan_chain``. For
            Mamba's scan alone pass ``tree=None, tree_scale=0``.
        tree_scale: weight of the tree scan (the paper's 0.3).
        tree_plan: the tree's heavy-path plan for the GPU kernel, ``[elements, rounds]``
            (default: ``tree.layout``, made by ``tree_scan_lan.prepare`` on a GPU; where there
            is none, the GPU kernel makes it from ``tree.parent``). The CPU kernel ignores it.

    Returns:
        ``y (B, L, d)`` in the dtype of ``x`` (accumulated in float32 at least) and the state
        at the last token, ``(B, d, N)`` in the accumulation dtype: the recurrent state from
        which generation continues. Differentiable in ``x, delta, A, B, C, D``.
    """
    x = _checks.tensor("x", x, _checks.FLOAT_DTYPES, 3, "(B, L, d)")
    batch, length, channels = x.shape
    acc = _accumulation_dtype(x.dtype)
    delta = _checks.tensor("delta", delta, (x.dtype, acc), 3, "(B, L, d)")
    A = _checks.tensor("A", A, (acc,), 2, "(d, N)")
    if A.shape[0] != channels:
        raise ValueError(f"`A` must be (d, N) with d = {channels} (the channels of `x`); got {tuple(A.shape)}")
    state = A.shape[1]
    B = _checks.tensor("B", B, (x.dtype,), 3, "(B, L, N)")
    C = _checks.tensor("C", C, (x.dtype,), 3, "(B, L, N)")
    D = _checks.tensor("D", D, (acc,), 1, "(d,)")
    expected = {"delta": (batch, length, channels), "B": (batch, length, state), "C": (batch, length, state),
                "D": (channels,)}
    for name, value in (("delta", delta), ("B", B), ("C", C), ("D", D)):
        if tuple(value.shape) != expected[name]:
            raise ValueError(f"`{name}` must have shape {expected[name]} to match `x` and `A`; got {tuple(value.shape)}")
    if length < 1:
        raise ValueError(f"`x` must have at least one token (L >= 1); got shape {tuple(x.shape)}")
    for name, value in (("x", x), ("delta", delta), ("A", A), ("B", B), ("C", C), ("D", D)):
        # The operator has a reverse-mode formula only; forward mode would see zero tangents.
        if forward_ad.unpack_dual(value).tangent is not None:
            raise NotImplementedError(
                f"`{name}` carries a forward-mode tangent (torch.func.jvp / torch.autograd.forward_ad): the "
                "selective tree scan supports reverse-mode autograd (backward, torch.autograd.grad) only"
            )
    if isinstance(tree_scale, bool) or not isinstance(tree_scale, (int, float)):
        raise TypeError(f"`tree_scale` must be a float; got {type(tree_scale).__name__}")
    if not math.isfinite(tree_scale):
        raise ValueError(f"`tree_scale` must be finite; got {tree_scale}")
    tensors = {"x": x, "delta": delta, "A": A, "B": B, "C": C, "D": D}
    order = parent = None
    if tree is not None:
        if not isinstance(tree, TreeOrder):
            raise TypeError(
                f"`tree` must be a tree_scan.TreeOrder (from tree_scan_lan.bfs) or None; got {type(tree).__name__}"
            )
        order, parent = tree.order, tree.parent
        if tree_plan is None and tree.layout is not None:
            tree_plan = list(tree.layout)
        for name, part in (("tree.order", order), ("tree.parent", parent)):
            _checks.tensor(name, part, (torch.int64,), 2, "(B, L)")
            if tuple(part.shape) != (batch, length):
                raise ValueError(f"`{name}` must be (B, L) = {(batch, length)} to match `x`; got {tuple(part.shape)}")
        tensors.update({"tree.order": order, "tree.parent": parent})
    if tree_plan is not None:
        if not isinstance(tree_plan, (list, tuple)) or not all(isinstance(t, torch.Tensor) for t in tree_plan):
            raise TypeError(f"`tree_plan` must be a list of tensors or None; got {type(tree_plan).__name__}")
        tree_plan = list(tree_plan)
    _checks.same_device(**tensors)
    return torch.ops.tree_scan_lan.selective_tree_scan(x, delta, A, B, C, D, order, parent, float(tree_scale), tree_plan)
