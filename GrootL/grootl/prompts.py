"""Prompt lengths ("contex_len") and padding, resolved once per forward for every mixer.

GrootL's language tree (SPEC §1) is built over the sequence flipped so that vertex 0 is
the last token; the prompt occupies the last ``P`` vertices. Each row has its own ``P``.

Padding. Right padding needs nothing: flipped, the pads sit at vertices ``0 .. pad-1``,
which are ancestors of every real token (they hang on the continuation chain), so they
never enter a real token's subtree. Left padding puts the pads at the END of the flipped
sequence, inside the prompt region, where they would join the tree. For those rows the
tree is built on the row "compacted" (real tokens first, pads after, as if right padded)
and its vertices are then relabelled to their real positions; see :class:`PromptLayout`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tree_scan_lan import prompt_lengths_tensor

__all__ = ["IGNORE_INDEX", "PromptLayout", "prompt_lengths_from_labels"]

IGNORE_INDEX = -100


@dataclass(frozen=True)
class PromptLayout:
    """What every mixer of one forward needs to build its row trees.

    lengths: ``(B,)`` int64 prompt length of every row, counted in real tokens.
    relabel: ``None`` when no row has padding before its tokens; otherwise ``(B, L)`` int64:
        ``relabel[b, c]`` is the flipped position of the vertex that sits at flipped
        position ``c`` once row ``b`` is compacted (its pads moved after its tokens).
    longest: the largest prompt length (a prompt of <= 2 tokens makes the tree a chain).
    """

    lengths: torch.Tensor
    relabel: torch.Tensor | None
    longest: int

    @classmethod
    def build(
        cls,
        contex_len,
        batch: int,
        seq_len: int,
        attention_mask: torch.Tensor | None = None,
        batch_min: bool = False,
        device=None,
    ) -> "PromptLayout":
        """Checks ``contex_len`` and ``attention_mask`` and resolves them.

        Args:
            contex_len: prompt length of every row: an int (all rows), a list/tuple of ints or
                an int tensor with one entry per row; ``None`` = every real token is prompt.
                Each value must lie in ``[0, number of real tokens of the row]``.
            attention_mask: ``(B, L)``, 1 on real tokens; each row's real tokens must be
                contiguous (left and/or right padding).
            batch_min: use the smallest prompt length of the batch for every row (the release).
        """
        if isinstance(contex_len, PromptLayout):
            return contex_len
        real = _real_token_mask(attention_mask, batch, seq_len, device)
        if real is not None:
            row_lengths = real.sum(1)
        else:
            row_lengths = torch.full((batch,), seq_len, dtype=torch.long, device=device)
        if contex_len is None:
            lengths = row_lengths
        else:
            lengths = _contex_len_tensor(contex_len, batch, row_lengths.device)
            too_long = lengths > row_lengths
            if bool(too_long.any()):
                row = int(too_long.nonzero()[0, 0])
                raise ValueError(
                    f"`contex_len` of row {row} is {int(lengths[row])}, more than the row's "
                    f"{int(row_lengths[row])} real tokens"
                )
        if batch_min and lengths.numel() > 0:
            lengths = lengths.min().expand(batch).clone()
        return cls(
            lengths=lengths,
            relabel=_relabel_for_left_padding(real) if real is not None else None,
            longest=int(lengths.max()) if lengths.numel() else 0,
        )


def prompt_lengths_from_labels(labels: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """The training default of ``contex_len``: label positions equal to -100, per row.

    Padded positions (``attention_mask == 0``) are not counted, so a right-padded batch gives
    each row its prompt length; without a mask every -100 counts (the release, batch size 1).
    """
    if not isinstance(labels, torch.Tensor) or labels.dim() != 2:
        raise ValueError(f"`labels` must be a (B, L) tensor; got {getattr(labels, 'shape', type(labels).__name__)}")
    ignored = labels == IGNORE_INDEX
    if attention_mask is not None:
        ignored = ignored & attention_mask.to(device=labels.device).bool()
    return ignored.sum(1)


def _real_token_mask(attention_mask, batch: int, seq_len: int, device) -> torch.Tensor | None:
    """``attention_mask`` as a (B, L) bool tensor after checking it; None when there is none."""
    if attention_mask is None:
        return None
    if not isinstance(attention_mask, torch.Tensor):
        raise TypeError(f"`attention_mask` must be a tensor; got {type(attention_mask).__name__}")
    if tuple(attention_mask.shape) != (batch, seq_len):
        raise ValueError(f"`attention_mask` must be (B, L) = {(batch, seq_len)}; got {tuple(attention_mask.shape)}")
    real = attention_mask.to(device=device if device is not None else attention_mask.device).bool()
    # Real tokens must be contiguous: a tree over a row with holes has no meaning here.
    count = real.sum(1, keepdim=True)
    first = real.long().argmax(1, keepdim=True)
    position = torch.arange(seq_len, device=real.device).unsqueeze(0)
    contiguous = real == ((position >= first) & (position < first + count))
    if not bool(contiguous.all()):
        row = int((~contiguous).any(1).nonzero()[0, 0])
        raise ValueError(
            f"`attention_mask` row {row} has padding between real tokens; GrootL needs each row's tokens "
            "contiguous (left and/or right padding)"
        )
    return real


def _contex_len_tensor(contex_len, batch: int, device) -> torch.Tensor:
    lengths = prompt_lengths_tensor(contex_len, batch, device, name="contex_len")
    if lengths.numel() and int(lengths.min()) < 0:
        raise ValueError(f"`contex_len` must be >= 0; got {int(lengths.min())}")
    return lengths.contiguous()


def _relabel_for_left_padding(real: torch.Tensor) -> torch.Tensor | None:
    """Map from compacted flipped positions to actual flipped positions, or None if not needed."""
    seq_len = real.shape[1]
    if seq_len == 0 or not bool((~real[:, 0] & real.any(1)).any()):
        return None
    # Stable sort: real tokens first, in order, then the pads in order.
    compact_to_position = torch.sort((~real).to(torch.int8), dim=1, stable=True).indices
    # Flipped coordinates on both sides: vertex c <-> token L-1-c.
    flipped = compact_to_position.flip(1)
    return (seq_len - 1) - flipped
