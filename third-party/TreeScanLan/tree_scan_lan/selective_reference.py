"""The plain-PyTorch twin of the fused selective tree scan (``torch.ops.tree_scan_lan``).

It computes what GrootL's mixer computed before the fused operator existed, the obvious
way: form ``u = delta B x`` and the decays ``exp(delta A)`` over all ``d x N`` channels
(``(B, L, d, N)`` tensors), flip the sequence, run the causal scans of ``tree_scan`` on the
chain and on the tree, and read out with ``C``. The backward takes the scans' own backward
operators and the chain rule through ``u`` and the decays.

It serves the operators when the compiled kernels are missing, and the tests compare the
kernels against it.
"""

from __future__ import annotations

import torch

import tree_scan  # noqa: F401  (registers torch.ops.tree_scan)

__all__ = ["selective_tree_scan", "selective_tree_scan_backward"]


def _chain_order(batch: int, length: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """The chain ``(v, v+1)`` rooted at vertex 0, as ``tree_scan.bfs`` orders it."""
    order = torch.arange(length, device=device).expand(batch, length).contiguous()
    return order, order - 1


def _expand(x, delta, A, B):
    """``u`` and the decays, ``(B, L, d, N)`` in token order, in A's (the accumulation) dtype."""
    acc = A.dtype
    delta = delta.to(acc)
    u = (delta * x.to(acc)).unsqueeze(-1) * B.to(acc).unsqueeze(2)
    decay = torch.exp(delta.unsqueeze(-1) * A)
    return u, decay


def _to_scan(t: torch.Tensor) -> torch.Tensor:
    """``(B, L, d, N)`` in token order -> ``(B, d N, L)`` over the flipped sequence."""
    batch, length = t.shape[:2]
    return t.flip(1).reshape(batch, length, -1).transpose(1, 2)


def _from_scan(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return t.transpose(1, 2).reshape(like.shape).flip(1)


def _edge_weights(decay: torch.Tensor) -> torch.Tensor:
    """The edge from a vertex to its parent carries the decay of the token after the vertex's."""
    return _to_scan(decay).roll(1, dims=2)


def _states(u, decay, tree_order, tree_parent, tree_scale) -> torch.Tensor:
    """``h = scan_chain + tree_scale scan_tree``, ``(B, L, d, N)`` in token order."""
    batch, length = u.shape[:2]
    u_scan, w_scan = _to_scan(u), _edge_weights(decay)
    h = torch.ops.tree_scan.scan_causal(u_scan, w_scan, *_chain_order(batch, length, u.device))
    if tree_order is None:
        h = h * (1 + tree_scale)  # the second tree is the chain itself
    else:
        h = h + tree_scale * torch.ops.tree_scan.scan_causal(u_scan, w_scan, tree_order, tree_parent)
    return _from_scan(h, u)


def selective_tree_scan(x, delta, A, B, C, D, tree_order, tree_parent, tree_scale, tree_plan=None):
    """``(y, final_state)``; see :func:`tree_scan_lan.selective_tree_scan`."""
    u, decay = _expand(x, delta, A, B)
    h = _states(u, decay, tree_order, tree_parent, tree_scale)
    y = torch.einsum("bldn,bln->bld", h, C.to(A.dtype)) + D * x.to(A.dtype)
    return y.to(x.dtype).contiguous(), h[:, -1].contiguous()


def selective_tree_scan_backward(
    grad_y, grad_final_state, x, delta, A, B, C, D, tree_order, tree_parent, tree_scale, tree_plan=None
):
    """Gradients for ``x, delta, A, B, C, D``."""
    acc = A.dtype
    batch, length = x.shape[:2]
    u, decay = _expand(x, delta, A, B)
    h = _states(u, decay, tree_order, tree_parent, tree_scale)
    grad_y = grad_y.to(acc)
    grad_h = grad_y.unsqueeze(-1) * C.to(acc).unsqueeze(2)
    if grad_final_state is not None:
        grad_h[:, -1] += grad_final_state.to(acc)

    u_scan, w_scan, grad_h_scan = _to_scan(u), _edge_weights(decay), _to_scan(grad_h)
    chain_scale = 1 + tree_scale if tree_order is None else 1
    grad_u_scan, grad_w_scan = torch.ops.tree_scan.scan_causal_backward(
        chain_scale * grad_h_scan, u_scan, w_scan, *_chain_order(batch, length, x.device)
    )
    if tree_order is not None:
        grad_u_tree, grad_w_tree = torch.ops.tree_scan.scan_causal_backward(
            tree_scale * grad_h_scan, u_scan, w_scan, tree_order, tree_parent
        )
        grad_u_scan, grad_w_scan = grad_u_scan + grad_u_tree, grad_w_scan + grad_w_tree
    grad_u = _from_scan(grad_u_scan, u)
    grad_decay = _from_scan(grad_w_scan.roll(-1, dims=2), decay)

    x_acc, delta_acc, B_acc = x.to(acc), delta.to(acc), B.to(acc)
    grad_u_B = (grad_u * B_acc.unsqueeze(2)).sum(-1)
    grad_delta_A = grad_decay * decay  # the gradient for delta * A
    grads = (
        (grad_u_B * delta_acc + grad_y * D).to(x.dtype),
        (grad_u_B * x_acc + (grad_delta_A * A).sum(-1)).to(delta.dtype),
        (grad_delta_A * delta_acc.unsqueeze(-1)).sum((0, 1)),
        (grad_u * (delta_acc * x_acc).unsqueeze(-1)).sum(2).to(B.dtype),
        (grad_y.unsqueeze(-1) * h).sum(2).to(C.dtype),
        (grad_y * x_acc).sum((0, 1)).to(D.dtype),
    )
    return tuple(g.contiguous() for g in grads)
