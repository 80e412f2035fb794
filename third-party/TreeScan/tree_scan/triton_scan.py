"""The tree scans on the GPU, written in Triton (SPEC §2).

    tree_scan(x, edge_weight, tree)                 all-roots scan (vision)
    tree_scan_causal(x, edge_weight, tree, root)    leaf-to-root scan (language)

Same arguments, results and autograd as the public ``tree_scan.tree_scan`` /
``tree_scan.tree_scan_causal``, which call these for CUDA tensors. Triton compiles the
kernels for the user's GPU at run time. On CPU tensors they run in Triton's interpreter
when ``TRITON_INTERPRET=1`` was set before the first import of ``tree_scan``: that is how
the tests check, on machines without a GPU, the very kernels a GPU runs.

How the kernels work. A scan follows the tree's heavy-path plan (``heavy_paths.py``): in
rounds by light depth, each round one first-order linear recurrence over the round's
elements, solved by a parallel prefix scan (``tl.associative_scan``) in chunks of
``BLOCK_N`` elements, a chunk's first element taking the value its neighbour in the
previous chunk ended with. One program owns one image and ``BLOCK_C`` channels and walks
all the rounds, so a scan is one kernel launch; the rounds meet through a scratch tensor
of the accumulator dtype, ``(B, C, V)`` with one row per vertex ("slot") in element order.

    going up (leaf -> root), deepest round first, within a path from its tail to its head:
        h_k = b_k + m_k h_{k+1}      b: x_v, or for an entry w_c a_c (the light child's result)
                                     m: w of the next vertex on the path, 1 before an entry,
                                        0 at the end of a path
    going down (root -> leaf, all-roots scan and the gradients), shallowest round first:
        g_k = c_k + n_k g_{k-1}      vertex: c = (1 - w_v^2) a_v, n = w_v;  entry: c = 0, n = 1;
                                     head: c = (1 - w_v^2) a_v + w_v out_parent, n = 0

Dependent steps per scan: per round log2(BLOCK_N) for the prefix scans plus one carry per
chunk, over at most floor(log2 V) + 1 rounds (docs/performance.md counts them).
"""

from __future__ import annotations

import contextlib
import functools
import os

import torch

from . import heavy_paths
from .heavy_paths import ScanLayout

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only wheels (macOS, Windows, aarch64): the CPU kernels need no Triton.
    triton = None

__all__ = ["AVAILABLE", "INTERPRETING", "tree_scan", "tree_scan_causal", "layout_of"]

AVAILABLE = triton is not None
# Read by Triton when it defines the kernels below, i.e. on the first import of tree_scan.
INTERPRETING = AVAILABLE and os.environ.get("TRITON_INTERPRET", "0") == "1"

_MISSING_TRITON = (
    "tree_scan: the GPU tree scans are written in Triton, which is not installed. Install it with "
    "`pip install triton` (Linux x86-64/aarch64 with an NVIDIA or AMD GPU; PyTorch's CUDA wheels bring it along)."
)


def layout_of(tree) -> ScanLayout:
    """The heavy-path plan of ``tree`` (a :class:`tree_scan.TreeOrder`), computed if it carries none."""
    if tree.layout is not None:
        return tree.layout
    return heavy_paths.layout_from_parent(tree.parent)


if AVAILABLE:
    _PATH_VERTEX = tl.constexpr(heavy_paths.PATH_VERTEX)
    _HEAD = tl.constexpr(heavy_paths.HEAD)
    _ENTRY = tl.constexpr(heavy_paths.ENTRY)
    _PADDING = tl.constexpr(heavy_paths.PADDING)

    @triton.jit
    def _linear_step(n1, c1, n2, c2):
        # Two steps of g_k = c_k + n_k g_{k-1}, the earlier one first: one step.
        return n1 * n2, c2 + n2 * c1

    @triton.jit
    def _linear_step_pair(n1, c1, d1, n2, c2, d2):
        # The same for two recurrences sharing their multipliers.
        return n1 * n2, c2 + n2 * c1, d2 + n2 * d1

    @triton.jit
    def _element_rows(plan, plan_b, plan_row, b, k, valid):
        """(vertex, slot, link, kind) of elements ``k`` of image ``b`` (padding where not valid)."""
        base = plan + b.to(tl.int64) * plan_b + k
        vertex = tl.load(base, mask=valid, other=0)
        slot = tl.load(base + plan_row, mask=valid, other=0)
        link = tl.load(base + 2 * plan_row, mask=valid, other=-1)
        kind = tl.load(base + 3 * plan_row, mask=valid, other=_PADDING)
        return vertex, slot, link, kind

    @triton.jit
    def _upward_chunk(plan, plan_b, plan_row, b, start, end, high, lanes):
        """The elements [max(start, high - BLOCK_N), high) of a round, last first (the recurrence
        towards the head is then a forward scan), and what follows each: (k, valid, vertex,
        slot, link, kind, next_vertex, next_kind, is_vertex, is_entry)."""
        k = high - 1 - lanes
        valid = k >= start
        vertex, slot, link, kind = _element_rows(plan, plan_b, plan_row, b, k, valid)
        has_next = valid & (k + 1 < end)
        next_vertex, _, _, next_kind = _element_rows(plan, plan_b, plan_row, b, k + 1, has_next)
        is_vertex = valid & ((kind == _HEAD) | (kind == _PATH_VERTEX))
        is_entry = valid & (kind == _ENTRY)
        return k, valid, vertex, slot, link, kind, next_vertex, next_kind, is_vertex, is_entry

    @triton.jit
    def _round_bounds(rounds, rounds_b, b, d):
        start = tl.load(rounds + b.to(tl.int64) * rounds_b + d)
        end = tl.load(rounds + b.to(tl.int64) * rounds_b + d + 1)
        return start, end

    @triton.jit
    def _gather(ptr, row, stride, index, mask):
        """``ptr[row, index]`` for a [BLOCK_C] tensor of row offsets and a [BLOCK_N] index."""
        return tl.load(ptr + row[:, None] + index.to(tl.int64)[None, :] * stride, mask=mask, other=0.0)

    @triton.jit
    def _scratch(ptr, row, index, mask):
        """Scratch rows written by other threads of this program: read from L2, not L1."""
        return tl.load(ptr + row[:, None] + index.to(tl.int64)[None, :], mask=mask, other=0.0, cache_modifier=".cg")

    @triton.jit
    def _sweep_up(src, src_row, src_l, w, w_row, w_l, scratch, scratch_row, out, out_row, out_l,
                  plan, plan_b, plan_row, rounds, rounds_b, num_rounds, b, channel_ok,
                  STORE_OUT: tl.constexpr, HEADS_ONLY: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_N: tl.constexpr,
                  ACC: tl.constexpr):
        """a_v = src_v + sum over children c of w_c a_c, into ``out`` if STORE_OUT and into the
        scratch slots: of every vertex, or (HEADS_ONLY) of the heads, which the entries of the
        next round read."""
        lanes = tl.arange(0, BLOCK_N)
        for r in range(num_rounds):
            start, end = _round_bounds(rounds, rounds_b, b, num_rounds - 1 - r)
            carry = tl.zeros([BLOCK_C], ACC)
            for i in range(tl.cdiv(end - start, BLOCK_N)):
                high = end - i * BLOCK_N  # from the end of the round backwards
                k, valid, vertex, slot, link, kind, next_vertex, next_kind, is_vertex, is_entry = _upward_chunk(
                    plan, plan_b, plan_row, b, start, end, high, lanes)
                own = channel_ok[:, None] & is_vertex[None, :]
                entry = channel_ok[:, None] & is_entry[None, :]
                value = _gather(src, src_row, src_l, vertex, own).to(ACC)
                subtree = _scratch(scratch, scratch_row, link, entry)
                value += _gather(w, w_row, w_l, vertex, entry).to(ACC) * subtree
                step = _gather(w, w_row, w_l, next_vertex, channel_ok[:, None] & (next_kind == _PATH_VERTEX)[None, :])
                step = tl.where((next_kind == _ENTRY)[None, :], 1.0, step.to(ACC)).to(ACC)
                value = tl.where((lanes == 0)[None, :], value + step * carry[:, None], value)
                _, h = tl.associative_scan((step, value), 1, _linear_step)
                kept = own & (kind == _HEAD)[None, :] if HEADS_ONLY else own
                tl.store(scratch + scratch_row[:, None] + slot.to(tl.int64)[None, :], h, mask=kept)
                if STORE_OUT:
                    tl.store(out + out_row[:, None] + vertex.to(tl.int64)[None, :] * out_l, h, mask=own)
                first = tl.maximum(start, high - BLOCK_N)
                carry = tl.sum(tl.where((k == first)[None, :], h, 0.0), axis=1)
            tl.debug_barrier()  # the next round's entries read this round's heads

    @triton.jit
    def _down_values(w, w_row, w_l, scratch, scratch_row, vertex, slot, link, kind, valid, channel_ok,
                     ACC: tl.constexpr):
        """Per element: the weight w_v (0 at roots), the own scratch value, the parent's
        scratch value at heads, and the multiplier n_k of the downward recurrence."""
        is_vertex = (kind == _HEAD) | (kind == _PATH_VERTEX)
        own = channel_ok[:, None] & is_vertex[None, :]
        has_parent = is_vertex & (link >= 0)
        weight = _gather(w, w_row, w_l, vertex, channel_ok[:, None] & has_parent[None, :]).to(ACC)
        here = _scratch(scratch, scratch_row, slot, own)
        above = _scratch(scratch, scratch_row, link, channel_ok[:, None] & (has_parent & (kind == _HEAD))[None, :])
        step = tl.where((kind == _PATH_VERTEX)[None, :], weight, tl.where((kind == _ENTRY)[None, :], 1.0, 0.0))
        return weight, here, above, step.to(ACC), own

    @triton.jit
    def _scan_forward_kernel(x, w, out, scratch, plan, rounds,
                             x_b, x_c, x_l, w_b, w_c, w_l, out_b, out_c, out_l,
                             plan_b, plan_row, rounds_b, channels, length, num_rounds,
                             ALL_ROOTS: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_N: tl.constexpr,
                             FP64: tl.constexpr):
        ACC: tl.constexpr = tl.float64 if FP64 else tl.float32  # the accumulator: float32 at least
        b = tl.program_id(0)
        channel = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
        channel_ok = channel < channels
        channel64 = channel.to(tl.int64)
        x_row = b.to(tl.int64) * x_b + channel64 * x_c
        w_row = b.to(tl.int64) * w_b + channel64 * w_c
        out_row = b.to(tl.int64) * out_b + channel64 * out_c
        scratch_row = (b.to(tl.int64) * channels + channel64) * length
        _sweep_up(x, x_row, x_l, w, w_row, w_l, scratch, scratch_row, out, out_row, out_l,
                  plan, plan_b, plan_row, rounds, rounds_b, num_rounds, b, channel_ok,
                  not ALL_ROOTS, not ALL_ROOTS, BLOCK_C, BLOCK_N, ACC)
        if ALL_ROOTS:
            lanes = tl.arange(0, BLOCK_N)
            for d in range(num_rounds):
                start, end = _round_bounds(rounds, rounds_b, b, d)
                carry = tl.zeros([BLOCK_C], ACC)
                for i in range(tl.cdiv(end - start, BLOCK_N)):
                    k = start + i * BLOCK_N + lanes
                    valid = k < end
                    vertex, slot, link, kind = _element_rows(plan, plan_b, plan_row, b, k, valid)
                    weight, a, above, step, own = _down_values(w, w_row, w_l, scratch, scratch_row, vertex, slot,
                                                               link, kind, valid, channel_ok, ACC)
                    value = (1 - weight * weight) * a + weight * above
                    value = tl.where((lanes == 0)[None, :], value + step * carry[:, None], value)
                    _, g = tl.associative_scan((step, value), 1, _linear_step)
                    # Kept for the heads of the next rounds: only vertices with light children (an entry next).
                    _, _, _, next_kind = _element_rows(plan, plan_b, plan_row, b, k + 1, valid & (k + 1 < end))
                    parents = own & (next_kind == _ENTRY)[None, :]
                    tl.store(scratch + scratch_row[:, None] + slot.to(tl.int64)[None, :], g, mask=parents)
                    tl.store(out + out_row[:, None] + vertex.to(tl.int64)[None, :] * out_l, g, mask=own)
                    last = tl.minimum(end, start + (i + 1) * BLOCK_N) - 1
                    carry = tl.sum(tl.where((k == last)[None, :], g, 0.0), axis=1)
                tl.debug_barrier()  # the next round's heads read this round's results

    @triton.jit
    def _scan_backward_kernel(grad, x, w, grad_x, grad_w, scratch, scratch2, plan, rounds,
                              g_b, g_c, g_l, x_b, x_c, x_l, w_b, w_c, w_l, gx_b, gx_c, gx_l, gw_b, gw_c, gw_l,
                              plan_b, plan_row, rounds_b, channels, length, num_rounds,
                              ALL_ROOTS: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_N: tl.constexpr,
                              FP64: tl.constexpr):
        ACC: tl.constexpr = tl.float64 if FP64 else tl.float32
        b = tl.program_id(0)
        channel = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
        channel_ok = channel < channels
        channel64 = channel.to(tl.int64)
        g_row = b.to(tl.int64) * g_b + channel64 * g_c
        x_row = b.to(tl.int64) * x_b + channel64 * x_c
        w_row = b.to(tl.int64) * w_b + channel64 * w_c
        gx_row = b.to(tl.int64) * gx_b + channel64 * gx_c
        gw_row = b.to(tl.int64) * gw_b + channel64 * gw_c
        # Two scratch tensors: a (the upward sweep over x), and for the all-roots scan ag
        # (over grad), for the causal one G (the downward sweep over grad).
        scratch_row = (b.to(tl.int64) * channels + channel64) * length
        _sweep_up(x, x_row, x_l, w, w_row, w_l, scratch, scratch_row, grad_x, gx_row, gx_l,
                  plan, plan_b, plan_row, rounds, rounds_b, num_rounds, b, channel_ok,
                  False, False, BLOCK_C, BLOCK_N, ACC)
        if ALL_ROOTS:  # the gradient of x is the all-roots scan of grad (the path products are symmetric)
            _sweep_up(grad, g_row, g_l, w, w_row, w_l, scratch2, scratch_row, grad_x, gx_row, gx_l,
                      plan, plan_b, plan_row, rounds, rounds_b, num_rounds, b, channel_ok,
                      False, False, BLOCK_C, BLOCK_N, ACC)
        lanes = tl.arange(0, BLOCK_N)
        for d in range(num_rounds):
            start, end = _round_bounds(rounds, rounds_b, b, d)
            carry = tl.zeros([BLOCK_C], ACC)
            carry_g = tl.zeros([BLOCK_C], ACC)
            for i in range(tl.cdiv(end - start, BLOCK_N)):
                k = start + i * BLOCK_N + lanes
                valid = k < end
                vertex, slot, link, kind = _element_rows(plan, plan_b, plan_row, b, k, valid)
                weight, ag, above_g, step, own = _down_values(w, w_row, w_l, scratch2, scratch_row, vertex, slot,
                                                              link, kind, valid, channel_ok, ACC)
                first_lane = (lanes == 0)[None, :]
                if ALL_ROOTS:
                    # Both downward sweeps: out (over a) and og (over ag); og is grad_x.
                    a = _scratch(scratch, scratch_row, slot, own)
                    above = _scratch(scratch, scratch_row, link, channel_ok[:, None] & ((kind == _HEAD) & (link >= 0))[None, :])
                    value = (1 - weight * weight) * a + weight * above
                    value_g = (1 - weight * weight) * ag + weight * above_g
                    value = tl.where(first_lane, value + step * carry[:, None], value)
                    value_g = tl.where(first_lane, value_g + step * carry_g[:, None], value_g)
                    _, out_v, og = tl.associative_scan((step, value, value_g), 1, _linear_step_pair)
                    tl.store(scratch + scratch_row[:, None] + slot.to(tl.int64)[None, :], out_v, mask=own)
                else:
                    # G_v = grad_v + w_v G_parent: the gradient of x.
                    value_g = _gather(grad, g_row, g_l, vertex, own).to(ACC) + weight * above_g
                    value_g = tl.where(first_lane, value_g + step * carry_g[:, None], value_g)
                    _, og = tl.associative_scan((step, value_g), 1, _linear_step)
                tl.store(scratch2 + scratch_row[:, None] + slot.to(tl.int64)[None, :], og, mask=own)
                tl.store(grad_x + gx_row[:, None] + vertex.to(tl.int64)[None, :] * gx_l, og, mask=own)
                tl.debug_barrier()  # parents in this chunk have stored their results
                with_parent = channel_ok[:, None] & ((kind <= _HEAD) & (link >= 0))[None, :]
                parent_g = _scratch(scratch2, scratch_row, link, with_parent)
                if ALL_ROOTS:
                    # Paths through the edge (v, parent) join v's subtree to the rest of the tree.
                    parent_out = _scratch(scratch, scratch_row, link, with_parent)
                    gw = ag * (parent_out - weight * a) + a * (parent_g - weight * ag)
                else:
                    gw = parent_g * _scratch(scratch, scratch_row, slot, own)
                gw = tl.where(with_parent, gw, 0.0)
                tl.store(grad_w + gw_row[:, None] + vertex.to(tl.int64)[None, :] * gw_l, gw, mask=own)
                last = tl.minimum(end, start + (i + 1) * BLOCK_N) - 1
                if ALL_ROOTS:
                    carry = tl.sum(tl.where((k == last)[None, :], out_v, 0.0), axis=1)
                carry_g = tl.sum(tl.where((k == last)[None, :], og, 0.0), axis=1)
            tl.debug_barrier()


# ---------------------------------------------------------------------------------------
# Launching. One program per (image, block of channels) walks the whole plan.

_tile_override: tuple[int, int] | None = None
_WARPS = 8


@contextlib.contextmanager
def tiles(block_c: int, block_n: int):
    """``with tiles(block_c, block_n):`` launches with these tile sizes (tests use small ones
    to cross chunk and channel-block boundaries on small trees)."""
    global _tile_override
    before, _tile_override = _tile_override, (block_c, block_n)
    try:
        yield
    finally:
        _tile_override = before


def launchable(kernel):
    """``kernel``, wrapped for torch.compile on a GPU (the interpreter's kernels cannot be)."""
    return kernel if INTERPRETING else torch.library.wrap_triton(kernel)


def tile_sizes(batch: int, channels: int, multiprocessors: int) -> tuple[int, int]:
    """(BLOCK_C, BLOCK_N) on a GPU: tiles of 1024 elements (with 8 warps, 4 per thread: no
    spills, 60-150 registers for sm_90 by cuobjdump; 2048 spilled in the backward), and fewer
    channels per program while the batch is too small to give every multiprocessor two
    programs (detection sizes)."""
    block_c = min(16, triton.next_power_of_2(channels))
    while block_c > 1 and batch * triton.cdiv(channels, block_c) < 2 * multiprocessors:
        block_c //= 2
    return block_c, max(1024 // block_c, 64)


def _tile_sizes(batch: int, channels: int, device: torch.device) -> tuple[int, int]:
    if _tile_override is not None:
        return _tile_override
    if device.type == "cpu":
        # The interpreter runs a prefix scan element by element, padding included: small tiles.
        return min(4, triton.next_power_of_2(channels)), 128
    return tile_sizes(batch, channels, _multiprocessors(device))


@functools.lru_cache(maxsize=None)
def _multiprocessors(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count


def _scratch_like(x: torch.Tensor, count: int) -> list[torch.Tensor]:
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    return [torch.empty(x.shape, dtype=dtype, device=x.device) for _ in range(count)]


def _plan_strides(elements: torch.Tensor, rounds: torch.Tensor) -> tuple[int, int, int]:
    if elements.stride(2) != 1 or rounds.stride(1) != 1:
        raise ValueError("tree_scan: the layout's elements and rounds must be contiguous along their last dimension")
    return elements.stride(0), elements.stride(1), rounds.stride(0)


def forward(x: torch.Tensor, edge_weight: torch.Tensor, elements: torch.Tensor, rounds: torch.Tensor,
             all_roots: bool) -> torch.Tensor:
    out = torch.empty_like(x)
    batch, channels, length = x.shape
    if out.numel() == 0:
        return out
    (scratch,) = _scratch_like(x, 1)
    block_c, block_n = _tile_sizes(batch, channels, x.device)
    # wrap_triton spelled out with the kernel's name (not launchable()): torch reads the op's
    # source for such calls to key its compile caches on the kernels' code.
    kernel = _scan_forward_kernel if INTERPRETING else torch.library.wrap_triton(_scan_forward_kernel)
    kernel[(batch, triton.cdiv(channels, block_c))](
        x, edge_weight, out, scratch, elements, rounds,
        *x.stride(), *edge_weight.stride(), *out.stride(), *_plan_strides(elements, rounds),
        channels, length, rounds.shape[1] - 1,
        ALL_ROOTS=all_roots, BLOCK_C=block_c, BLOCK_N=block_n, FP64=x.dtype == torch.float64, num_warps=_WARPS,
    )
    return out


def backward(grad_out: torch.Tensor, x: torch.Tensor, edge_weight: torch.Tensor, elements: torch.Tensor,
              rounds: torch.Tensor, all_roots: bool) -> tuple[torch.Tensor, torch.Tensor]:
    grad_x = torch.empty_like(x)
    grad_w = torch.empty_like(edge_weight)
    batch, channels, length = x.shape
    if x.numel() == 0:
        return grad_x, grad_w
    grad_out = grad_out.to(x.dtype)
    scratch, scratch2 = _scratch_like(x, 2)
    block_c, block_n = _tile_sizes(batch, channels, x.device)
    kernel = _scan_backward_kernel if INTERPRETING else torch.library.wrap_triton(_scan_backward_kernel)  # as above
    kernel[(batch, triton.cdiv(channels, block_c))](
        grad_out, x, edge_weight, grad_x, grad_w, scratch, scratch2, elements, rounds,
        *grad_out.stride(), *x.stride(), *edge_weight.stride(), *grad_x.stride(), *grad_w.stride(),
        *_plan_strides(elements, rounds), channels, length, rounds.shape[1] - 1,
        ALL_ROOTS=all_roots, BLOCK_C=block_c, BLOCK_N=block_n, FP64=x.dtype == torch.float64, num_warps=_WARPS,
    )
    return grad_x, grad_w


def _fake_forward(x, edge_weight, elements, rounds, all_roots):
    return torch.empty_like(x)


def _fake_backward(grad_out, x, edge_weight, elements, rounds, all_roots):
    return torch.empty_like(x), torch.empty_like(edge_weight)


def _define(name: str, implementation, fake):
    """``torch.ops.tree_scan.<name>``. On a GPU a ``triton_op``, which torch.compile traces
    into; in the interpreter (whose kernels torch cannot wrap) an opaque custom op."""
    qualified = f"tree_scan::{name}"
    if not INTERPRETING and hasattr(torch.library, "triton_op"):
        return torch.library.triton_op(qualified, implementation, mutates_args=())
    op = torch.library.custom_op(qualified, implementation, mutates_args=())
    op.register_fake(fake)
    return op


if AVAILABLE:

    def heavy_path_scan(x: torch.Tensor, edge_weight: torch.Tensor, elements: torch.Tensor, rounds: torch.Tensor,
                        all_roots: bool) -> torch.Tensor:
        return forward(x, edge_weight, elements, rounds, all_roots)

    def heavy_path_scan_backward(grad_out: torch.Tensor, x: torch.Tensor, edge_weight: torch.Tensor,
                                 elements: torch.Tensor, rounds: torch.Tensor,
                                 all_roots: bool) -> tuple[torch.Tensor, torch.Tensor]:
        return backward(grad_out, x, edge_weight, elements, rounds, all_roots)

    _define("heavy_path_scan", heavy_path_scan, _fake_forward)
    _define("heavy_path_scan_backward", heavy_path_scan_backward, _fake_backward)

    def _save_inputs(ctx, inputs, output):
        x, edge_weight, elements, rounds, all_roots = inputs
        ctx.save_for_backward(x, edge_weight, elements, rounds)
        ctx.all_roots = all_roots

    def _scan_backward(ctx, grad_out):
        x, edge_weight, elements, rounds = ctx.saved_tensors
        grad_x, grad_w = torch.ops.tree_scan.heavy_path_scan_backward(
            grad_out, x, edge_weight, elements, rounds, ctx.all_roots)
        return grad_x, grad_w, None, None, None

    def _no_double_backward(ctx, grad_x, grad_w):
        raise RuntimeError(
            "tree_scan: the scans have first derivatives only; differentiating their backward "
            "(double backward, Hessians, gradient penalties through a tree scan) is not supported"
        )

    torch.library.register_autograd("tree_scan::heavy_path_scan", _scan_backward, setup_context=_save_inputs)
    torch.library.register_autograd("tree_scan::heavy_path_scan_backward", _no_double_backward,
                                    setup_context=lambda ctx, inputs, output: None)


def _check_usable(x: torch.Tensor) -> None:
    if not AVAILABLE:
        raise RuntimeError(_MISSING_TRITON)
    if x.device.type == "cpu" and not INTERPRETING:
        raise RuntimeError(
            "tree_scan.triton_scan: CPU tensors run in Triton's interpreter only, which needs TRITON_INTERPRET=1 "
            "in the environment before tree_scan is first imported (tree_scan.tree_scan runs the C++ kernels "
            "on the CPU)"
        )


def scan(x: torch.Tensor, edge_weight: torch.Tensor, tree, all_roots: bool) -> torch.Tensor:
    """The scan of checked arguments along a :class:`tree_scan.TreeOrder` (what ``ops`` calls)."""
    _check_usable(x)
    layout = layout_of(tree)
    return torch.ops.tree_scan.heavy_path_scan(x, edge_weight, layout.elements, layout.rounds, all_roots)


def tree_scan(x: torch.Tensor, edge_weight: torch.Tensor, tree) -> torch.Tensor:
    """All-roots tree scan with the Triton kernels; arguments and result as :func:`tree_scan.tree_scan`."""
    from .ops import _scan_arguments

    x, edge_weight, order = _scan_arguments(x, edge_weight, tree, None)
    return scan(x, edge_weight, order, all_roots=True)


def tree_scan_causal(x: torch.Tensor, edge_weight: torch.Tensor, tree, root: int | None = None) -> torch.Tensor:
    """Leaf-to-root tree scan with the Triton kernels; arguments and result as :func:`tree_scan.tree_scan_causal`."""
    from .ops import _scan_arguments

    x, edge_weight, order = _scan_arguments(x, edge_weight, tree, root)
    return scan(x, edge_weight, order, all_roots=False)
