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

import functools
from collections.abc import Sequence

import torch

from tree_scan import _checks
from tree_scan.ops import minimum_spanning_tree

__all__ = [
    "prompt_lengths_tensor",
    "candidate_edges",
    "candidate_edge_weights",
    "candidate_edge_weights_of_factors",
    "language_tree",
    "language_tree_of_factors",
    "chain_tree",
]

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
    return _cosine_edge_weights([features])


def candidate_edge_weights_of_factors(factors: Sequence[torch.Tensor]) -> torch.Tensor:
    """:func:`candidate_edge_weights` of features that are outer products, without forming them.

    Token ``t``'s feature is ``vec(f1_t ⊗ f2_t ⊗ ...)`` for the factors ``fk (B, Ck, L)``.
    The dot product of two such vectors is the product of their factors' dot products, and
    the norm the product of the factors' norms; the cosine (with the same ``1e-8`` clamp of
    the norm) thus costs ``sum Ck`` instead of ``prod Ck`` per token. GrootL's ``deltaB * x``
    features are ``(delta x) ⊗ B``: ``d_inner + d_state`` instead of ``d_inner x d_state``.

    The values equal those of the formed features up to rounding (the sums run in another
    order), so the minimum spanning tree is the same except where two candidate weights
    lie within rounding of each other. Exact ties of the formed features stay exact here
    when they come from equal factors (identical tokens, or zero tokens such as pads,
    whose cosine is exactly 0 both ways), and are broken by edge index as there.
    """
    if not isinstance(factors, (list, tuple)) or not factors:
        raise TypeError(f"`factors` must be a non-empty list of (B, C, L) tensors; got {type(factors).__name__}")
    factors = [_checks.tensor(f"factors[{k}]", f, _checks.FLOAT_DTYPES, 3, "(B, C, L)") for k, f in enumerate(factors)]
    for k, f in enumerate(factors[1:], 1):
        if f.shape[0] != factors[0].shape[0] or f.shape[2] != factors[0].shape[2]:
            raise ValueError(
                f"`factors[{k}]` must have the batch and length of `factors[0]` "
                f"({factors[0].shape[0]}, ., {factors[0].shape[2]}); got {tuple(f.shape)}"
            )
    return _cosine_edge_weights(factors)


def _cosine_edge_weights(factors: list[torch.Tensor]) -> torch.Tensor:
    dtype = functools.reduce(torch.promote_types, [f.dtype for f in factors], torch.float32)
    tokens = [f.transpose(1, 2).to(dtype) for f in factors]
    batch, length, _ = tokens[0].shape
    norm = functools.reduce(torch.mul, [torch.linalg.vector_norm(t, dim=-1) for t in tokens])
    inverse_norm = 1.0 / norm.clamp_min(1e-8)
    weights = tokens[0].new_zeros(batch, max(length - 1, 0), MAX_DISTANCE)
    for d in range(1, MAX_DISTANCE + 1):
        if length > d:
            dot = functools.reduce(torch.mul, [torch.einsum("blc,blc->bl", t[:, :-d], t[:, d:]) for t in tokens])
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
    with torch.no_grad():
        return _candidate_tree(candidate_edge_weights(features.detach()), features.shape[2], prompt_lengths)


def language_tree_of_factors(factors: Sequence[torch.Tensor], prompt_lengths) -> torch.Tensor:
    """:func:`language_tree` of outer-product features given by their factors ``(B, Ck, L)``
    (see :func:`candidate_edge_weights_of_factors`; GrootL: ``[delta x, B]``)."""
    with torch.no_grad():
        weights = candidate_edge_weights_of_factors(factors)
        return _candidate_tree(weights, factors[0].shape[2], prompt_lengths)


def _candidate_tree(weights: torch.Tensor, length: int, prompt_lengths) -> torch.Tensor:
    batch = weights.shape[0]
    edges = candidate_edges(length, prompt_lengths_tensor(prompt_lengths, batch, weights.device))
    return minimum_spanning_tree(edges, weights, length, validate=False)  # edges made here


def chain_tree(batch: int, seq_len: int, device=None) -> torch.Tensor:
    """``(B, L-1, 2)`` the chain ``(i, i+1)``: rooted at 0 its causal scan is Mamba's recurrence."""
    batch = _checks.positive_int("batch", batch, minimum=0)
    seq_len = _checks.positive_int("seq_len", seq_len)
    start = torch.arange(seq_len - 1, device=device)
    return torch.stack([start, start + 1], dim=-1).expand(batch, -1, -1)
