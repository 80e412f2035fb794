"""Candidate edges over a token sequence and the language tree built from them (SPEC §1).

GrootL works on the sequence flipped so that vertex 0 is the LAST token. With prompt
length P ("contex_len"), the prompt occupies vertices ``[L-P, L)`` and the generated
continuation ``[0, L-P)``. Candidates: the chain ``(i, i+1)`` everywhere, and inside
the prompt also ``(i, i+2)`` and ``(i, i+3)``. The edge list of the release,

    chain (i, i+1) for i < L-P; then (i, i+1), (i, i+2), (i, i+3) for L-P <= i < L-3;
    then (L-3, L-2), (L-3, L-1), (L-2, L-1),

is exactly this set in this order (and the chain when P <= 2), so ties break alike.

Here the candidates keep one fixed slot per (i, distance): slot ``3 i + d - 1`` holds
``(i, i+d)`` when that edge exists for the row's P and a self-loop ``(i, i)`` (never part
of a spanning tree) when it does not. Every row of a batch thus has the same number of
candidates whatever its prompt length, without reading P on the host.
"""

from __future__ import annotations

import torch

from tree_scan import _checks
from tree_scan.ops import minimum_spanning_tree

__all__ = ["prompt_lengths_tensor", "candidate_edges", "candidate_edge_weights", "language_tree", "chain_tree"]

MAX_DISTANCE = 3


def prompt_lengths_tensor(prompt_lengths, batch: int, device=None, name: str = "prompt_lengths") -> torch.Tensor:
    """``prompt_lengths`` (an int, a list of ints, or a scalar or (B,) integer tensor) as a
    (B,) int64 tensor. ``name`` is the argument named in errors (GrootL's ``contex_len``)."""
    if isinstance(prompt_lengths, int) and not isinstance(prompt_lengths, bool):
        lengths = torch.full((batch,), prompt_lengths, dtype=torch.long, device=device)
    elif isinstance(prompt_lengths, (list, tuple)):
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in prompt_lengths):
            raise TypeError(f"`{name}` must hold ints; got {[type(v).__name__ for v in prompt_lengths]}")
        lengths = torch.tensor(list(prompt_lengths), dtype=torch.long, device=device)
    elif isinstance(prompt_lengths, torch.Tensor):
        if prompt_lengths.is_floating_point() or prompt_lengths.is_complex() or prompt_lengths.dtype == torch.bool:
            raise TypeError(f"`{name}` must hold integers (an integer tensor); got dtype {prompt_lengths.dtype}")
        if prompt_lengths.dim() > 1:
            raise ValueError(f"`{name}` must be an int or (B,); got a tensor of shape {tuple(prompt_lengths.shape)} "
                             "(pass a scalar or a (B,) tensor)")
        lengths = prompt_lengths.to(device=device, dtype=torch.long).reshape(-1)
        if lengths.numel() == 1:
            lengths = lengths.expand(batch)
    else:
        raise TypeError(f"`{name}` must be an int, a list of ints or an int tensor; got {type(prompt_lengths).__name__}")
    if lengths.numel() != batch:
        raise ValueError(f"`{name}` must give one length per row ({batch}); got {lengths.numel()}")
    return lengths


def candidate_edges(seq_len: int, prompt_lengths, device=None) -> torch.Tensor:
    """``(B, 3 (L-1), 2)`` int64 candidate edges for rows with the given prompt lengths.

    ``prompt_lengths`` is clamped to ``[0, seq_len]``.
    """
    seq_len = _checks.positive_int("seq_len", seq_len)
    if isinstance(prompt_lengths, torch.Tensor) and device is None:
        device = prompt_lengths.device
    batch = prompt_lengths.numel() if isinstance(prompt_lengths, torch.Tensor) else (
        len(prompt_lengths) if isinstance(prompt_lengths, (list, tuple)) else 1)
    lengths = prompt_lengths_tensor(prompt_lengths, batch, device).clamp(0, seq_len)
    start = torch.arange(seq_len - 1, device=device).view(1, -1, 1)
    distance = torch.arange(1, MAX_DISTANCE + 1, device=device).view(1, 1, -1)
    end = start + distance
    in_prompt = start >= (seq_len - lengths).view(-1, 1, 1)
    exists = (distance == 1) | (in_prompt & (end <= seq_len - 1))
    end = torch.where(exists, end, start)
    edges = torch.stack(torch.broadcast_tensors(start, end), dim=-1)
    return edges.reshape(lengths.numel(), MAX_DISTANCE * (seq_len - 1), 2)  # sizes spelled out: B may be 0


def candidate_edge_weights(features: torch.Tensor) -> torch.Tensor:
    """``(B, 3 (L-1))`` weights ``exp(-cos)`` of every candidate slot, over the channels of ``features (B, C, L)``.

    Each token's norm is computed once and the cosines come from row-wise dot products,
    which reads a token-major (``(B, L, C)`` in memory) input without copies; the values
    are those of ``torch.cosine_similarity`` (each vector normalised by ``max(|f|, 1e-8)``).
    Slots without an edge get a weight too; their self-loops are never chosen.
    """
    features = _checks.tensor("features", features, _checks.FLOAT_DTYPES, 3, "(B, C, L)")
    tokens = features.transpose(1, 2).to(torch.promote_types(features.dtype, torch.float32))
    batch, length, _ = tokens.shape
    inverse_norm = 1.0 / torch.linalg.vector_norm(tokens, dim=-1).clamp_min(1e-8)
    weights = tokens.new_zeros(batch, max(length - 1, 0), MAX_DISTANCE)
    for d in range(1, MAX_DISTANCE + 1):
        if length > d:
            dot = torch.einsum("blc,blc->bl", tokens[:, :-d], tokens[:, d:])
            weights[:, : length - d, d - 1] = torch.exp(-(dot * inverse_norm[:, :-d] * inverse_norm[:, d:]))
    return weights.reshape(batch, MAX_DISTANCE * max(length - 1, 0))


def language_tree(features: torch.Tensor, prompt_lengths) -> torch.Tensor:
    """Minimum spanning tree of the candidate edges, weighted by feature similarity.

    Args:
        features: ``(B, C, L)`` features of the flipped sequence (GrootL: ``deltaB * u``,
            its ``d_inner * d_state`` channels).
        prompt_lengths: prompt length of every row (int, list or (B,) tensor).

    Returns ``(B, L-1, 2)`` int64 tree edges. No gradient flows through the tree.
    """
    features = _checks.tensor("features", features, _checks.FLOAT_DTYPES, 3, "(B, C, L)")
    batch, _, length = features.shape
    with torch.no_grad():
        edges = candidate_edges(length, prompt_lengths_tensor(prompt_lengths, batch, features.device))
        weights = candidate_edge_weights(features.detach())
        return minimum_spanning_tree(edges, weights, length, validate=False)  # edges made here


def chain_tree(batch: int, seq_len: int, device=None) -> torch.Tensor:
    """``(B, L-1, 2)`` the chain ``(i, i+1)``: rooted at 0 its causal scan is Mamba's recurrence."""
    batch = _checks.positive_int("batch", batch, minimum=0)
    seq_len = _checks.positive_int("seq_len", seq_len)
    start = torch.arange(seq_len - 1, device=device)
    return torch.stack([start, start + 1], dim=-1).expand(batch, -1, -1)
