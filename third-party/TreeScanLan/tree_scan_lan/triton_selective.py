"""GrootL's fused selective tree scan on the GPU, in Triton (the CUDA kernel of
``torch.ops.tree_scan_lan.selective_tree_scan``; ``selective_reference`` is its twin).

Per row and block of ``BLOCK_D`` inner channels, with the state in the other half of the
channel axis (channel ``c`` = ``(d, n)``), a program forms ``u = delta B x`` and the decays
``exp(delta A)`` of a chunk of tokens in registers, scans them, reads the states out with
``C`` and moves on: no ``(B, L, d, N)`` tensor exists. The chain is Mamba's recurrence over
the tokens in order; the tree runs the rounds of its heavy-path plan exactly as
``tree_scan.triton_scan`` does (the helpers are shared), with an entry's subtree kept in a
scratch row of the program. A program walks several channel blocks in turn, so the scratch
is ``programs x L x BLOCK_D N`` floats, not ``B x L x d x N``.

Conventions (SPEC §4, ``selective_reference``): the tree lives on the flipped sequence,
vertex ``v`` = token ``L - 1 - v``; the edge from a vertex to its parent carries the decay of
the token after the vertex's token.

On CPU tensors the kernels run in Triton's interpreter (``TRITON_INTERPRET=1``), which is
how the tests check them against the reference.
"""

from __future__ import annotations

import torch

from tree_scan import heavy_paths
from tree_scan.triton_scan import AVAILABLE, launchable, triton

if AVAILABLE:
    import triton.language as tl

    from tree_scan.triton_scan import (
        _ENTRY,
        _HEAD,
        _PATH_VERTEX,
        _element_rows,
        _linear_step,
        _round_bounds,
        _upward_chunk,
    )

__all__ = ["forward", "backward", "selective_tree_scan", "selective_tree_scan_backward"]

if AVAILABLE:

    @triton.jit
    def _token_values(x, dt, Bm, b64, token, valid, d, n, channel_ok, x_b, x_l, x_d, dt_b, dt_l, dt_d,
                      B_b, B_l, B_n, ACC: tl.constexpr):
        """x, delta (per inner channel) and B (per state) of the tokens, as [channels, tokens] tiles."""
        mask = channel_ok[:, None] & valid[None, :]
        t64 = token.to(tl.int64)[None, :]
        xs = tl.load(x + b64 * x_b + t64 * x_l + d[:, None] * x_d, mask=mask, other=0.0).to(ACC)
        dts = tl.load(dt + b64 * dt_b + t64 * dt_l + d[:, None] * dt_d, mask=mask, other=0.0).to(ACC)
        bs = tl.load(Bm + b64 * B_b + t64 * B_l + n[:, None] * B_n, mask=mask, other=0.0).to(ACC)
        return xs, dts, bs

    @triton.jit
    def _decay(dt, b64, token, valid, d, channel_ok, a, dt_b, dt_l, dt_d):
        """exp(delta_t A) of the tokens: the decay an edge carries ([channels, tokens])."""
        mask = channel_ok[:, None] & valid[None, :]
        dts = tl.load(dt + b64 * dt_b + token.to(tl.int64)[None, :] * dt_l + d[:, None] * dt_d, mask=mask,
                      other=0.0).to(a.dtype)
        return tl.where(mask, tl.exp(dts * a[:, None]), 0.0)

    @triton.jit
    def _read_out(h, Cm, b64, token, valid, n, channel_ok, C_b, C_l, C_n,
                  BLOCK_D: tl.constexpr, NP: tl.constexpr, BLOCK_N: tl.constexpr):
        """sum over the state of C_t[n] h[d, n]: ([BLOCK_D, tokens])."""
        mask = channel_ok[:, None] & valid[None, :]
        cs = tl.load(Cm + b64 * C_b + token.to(tl.int64)[None, :] * C_l + n[:, None] * C_n, mask=mask,
                     other=0.0).to(h.dtype)
        return tl.sum(tl.reshape(cs * h, (BLOCK_D, NP, BLOCK_N)), axis=1)

    @triton.jit
    def _chain_up(x, dt, Bm, Cm, y, final, chain_states, dy, dC, b64, a, skip, d, n, d_out, channel_ok, length,
                  channels, state, chain_scale, x_b, x_l, x_d, dt_b, dt_l, dt_d, B_b, B_l, B_n, C_b, C_l, C_n,
                  state_row, dC_row, BACKWARD: tl.constexpr, BLOCK_D: tl.constexpr, NP: tl.constexpr,
                  BLOCK_N: tl.constexpr, ACC: tl.constexpr):
        """The chain, tokens in order: h_t = exp(delta_t A) h_{t-1} + u_t. Forward: y = C h + D x
        and the final state; backward: h into ``chain_states`` and C's gradient."""
        lanes = tl.arange(0, BLOCK_N)
        carry = tl.zeros([BLOCK_D * NP], ACC)
        out_ok = d_out < channels
        for i in range(tl.cdiv(length, BLOCK_N)):
            token = i * BLOCK_N + lanes
            valid = token < length
            t64 = token.to(tl.int64)
            xs, dts, bs = _token_values(x, dt, Bm, b64, token, valid, d, n, channel_ok,
                                        x_b, x_l, x_d, dt_b, dt_l, dt_d, B_b, B_l, B_n, ACC)
            step = tl.where(channel_ok[:, None] & valid[None, :], tl.exp(dts * a[:, None]), 0.0)
            value = dts * xs * bs
            value = tl.where((lanes == 0)[None, :], value + step * carry[:, None], value)
            _, h = tl.associative_scan((step, value), 1, _linear_step)
            if BACKWARD:
                tl.store(chain_states + state_row[:, None] + t64[None, :], h, mask=channel_ok[:, None] & valid[None, :])
                _add_to_C_gradient(dy, dC, b64, token, valid, d_out, n, chain_scale * h, length, channels, state,
                                   dC_row, BLOCK_D, NP, BLOCK_N, ACC)
            else:
                out = chain_scale * _read_out(h, Cm, b64, token, valid, n, channel_ok, C_b, C_l, C_n,
                                              BLOCK_D, NP, BLOCK_N)
                x_out = tl.load(x + b64 * x_b + t64[None, :] * x_l + d_out[:, None] * x_d,
                                mask=out_ok[:, None] & valid[None, :], other=0.0).to(ACC)
                tl.store(y + (b64 * length + t64[None, :]) * channels + d_out[:, None], out + skip[:, None] * x_out,
                         mask=out_ok[:, None] & valid[None, :])
                last = channel_ok[:, None] & (token == length - 1)[None, :]
                tl.store(final + (b64 * channels + d[:, None]) * state + n[:, None] + t64[None, :] * 0,
                         chain_scale * h, mask=last)
            carry = tl.sum(tl.where((token == tl.minimum(length, (i + 1) * BLOCK_N) - 1)[None, :], h, 0.0), axis=1)

    @triton.jit
    def _add_to_C_gradient(dy, dC, b64, token, valid, d_out, n, h, length, channels, state, dC_row,
                           BLOCK_D: tl.constexpr, NP: tl.constexpr, BLOCK_N: tl.constexpr, ACC: tl.constexpr):
        """dC_t[n] += sum over the block's d of dy_t[d] h[d, n] (this program's partial sums)."""
        mask = (d_out < channels)[:, None] & valid[None, :]
        t64 = token.to(tl.int64)
        dys = tl.load(dy + (b64 * length + t64[None, :]) * channels + d_out[:, None], mask=mask, other=0.0).to(ACC)
        per_state = tl.sum(tl.reshape(h, (BLOCK_D, NP, BLOCK_N)) * dys[:, None, :], axis=0)  # [NP, tokens]
        states = tl.arange(0, NP)
        at = dC + dC_row + t64[None, :] * state + states[:, None]
        ok = (states < state)[:, None] & valid[None, :]
        tl.store(at, tl.load(at, mask=ok, other=0.0) + per_state, mask=ok)

    @triton.jit
    def _tree_up(x, dt, Bm, Cm, y, final, scratch, dy, dC, plan, rounds, b, b64, a, d, n, d_out, channel_ok,
                 length, channels, state, tree_scale, x_b, x_l, x_d, dt_b, dt_l, dt_d, B_b, B_l, B_n, C_b, C_l, C_n,
                 plan_b, plan_row, rounds_b, num_rounds, scratch_row, dC_row, BACKWARD: tl.constexpr,
                 BLOCK_D: tl.constexpr, NP: tl.constexpr, BLOCK_N: tl.constexpr, ACC: tl.constexpr):
        """The tree, leaves to root, deepest round first (as triton_scan's _sweep_up), with u and
        the decays formed on the fly. Forward: the heads into ``scratch`` (for the entries),
        tree_scale C h added to y and the final state; backward: every vertex into ``scratch``
        and C's gradient."""
        lanes = tl.arange(0, BLOCK_N)
        for r in range(num_rounds):
            start, end = _round_bounds(rounds, rounds_b, b, num_rounds - 1 - r)
            carry = tl.zeros([BLOCK_D * NP], ACC)
            for i in range(tl.cdiv(end - start, BLOCK_N)):
                high = end - i * BLOCK_N
                k, valid, vertex, slot, link, kind, next_vertex, next_kind, is_vertex, is_entry = _upward_chunk(
                    plan, plan_b, plan_row, b, start, end, high, lanes)
                token = length - 1 - vertex
                xs, dts, bs = _token_values(x, dt, Bm, b64, token, is_vertex, d, n, channel_ok,
                                            x_b, x_l, x_d, dt_b, dt_l, dt_d, B_b, B_l, B_n, ACC)
                # An entry brings its light child's subtree, times the child's edge decay.
                subtree = tl.load(scratch + scratch_row[:, None] + link.to(tl.int64)[None, :],
                                  mask=channel_ok[:, None] & is_entry[None, :], other=0.0, cache_modifier=".cg")
                value = dts * xs * bs + _decay(dt, b64, token + 1, is_entry, d, channel_ok, a,
                                               dt_b, dt_l, dt_d) * subtree
                step = _decay(dt, b64, length - next_vertex, next_kind == _PATH_VERTEX, d, channel_ok, a,
                              dt_b, dt_l, dt_d)
                step = tl.where((next_kind == _ENTRY)[None, :], 1.0, step)
                value = tl.where((lanes == 0)[None, :], value + step * carry[:, None], value)
                _, h = tl.associative_scan((step, value), 1, _linear_step)
                kept = is_vertex if BACKWARD else is_vertex & (kind == _HEAD)
                tl.store(scratch + scratch_row[:, None] + slot.to(tl.int64)[None, :], h,
                         mask=channel_ok[:, None] & kept[None, :])
                if BACKWARD:
                    _add_to_C_gradient(dy, dC, b64, token, is_vertex, d_out, n, tree_scale * h, length, channels,
                                       state, dC_row, BLOCK_D, NP, BLOCK_N, ACC)
                else:
                    out_mask = (d_out < channels)[:, None] & is_vertex[None, :]
                    y_at = y + (b64 * length + token.to(tl.int64)[None, :]) * channels + d_out[:, None]
                    out = _read_out(h, Cm, b64, token, is_vertex, n, channel_ok, C_b, C_l, C_n,
                                    BLOCK_D, NP, BLOCK_N)
                    tl.store(y_at, tl.load(y_at, mask=out_mask, other=0.0) + tree_scale * out, mask=out_mask)
                    root = channel_ok[:, None] & (is_vertex & (vertex == 0))[None, :]
                    final_at = final + (b64 * channels + d[:, None]) * state + n[:, None] + vertex[None, :] * 0
                    tl.store(final_at, tl.load(final_at, mask=root, other=0.0) + tree_scale * h, mask=root)
                first = tl.maximum(start, high - BLOCK_N)
                carry = tl.sum(tl.where((k == first)[None, :], h, 0.0), axis=1)
            tl.debug_barrier()  # the next round's entries read this round's heads

    @triton.jit
    def _selective_forward_kernel(
        x, dt, A, Bm, Cm, D, y, final, scratch, plan, rounds,
        x_b, x_l, x_d, dt_b, dt_l, dt_d, A_d, A_n, B_b, B_l, B_n, C_b, C_l, C_n,
        plan_b, plan_row, rounds_b, length, channels, state, d_blocks, num_rounds, tree_scale, chain_scale,
        HAS_TREE: tl.constexpr, BLOCK_D: tl.constexpr, NP: tl.constexpr, BLOCK_N: tl.constexpr, FP64: tl.constexpr,
    ):
        ACC: tl.constexpr = tl.float64 if FP64 else tl.float32  # the accumulator: float32 at least
        b = tl.program_id(0)
        b64 = b.to(tl.int64)
        program, programs = tl.program_id(1), tl.num_programs(1)
        c = tl.arange(0, BLOCK_D * NP)
        n = c % NP
        # This program's scratch: one row of L floats per channel of the block.
        scratch_row = ((b64 * programs + program) * (BLOCK_D * NP) + c.to(tl.int64)) * length
        for block in range(program, d_blocks, programs):
            d = block * BLOCK_D + c // NP
            channel_ok = (d < channels) & (n < state)
            d_out = block * BLOCK_D + tl.arange(0, BLOCK_D)
            a = tl.load(A + d * A_d + n * A_n, mask=channel_ok, other=0.0).to(ACC)
            skip = tl.load(D + d_out, mask=d_out < channels, other=0.0).to(ACC)
            _chain_up(x, dt, Bm, Cm, y, final, scratch, x, y, b64, a, skip, d, n, d_out, channel_ok, length,
                      channels, state, chain_scale, x_b, x_l, x_d, dt_b, dt_l, dt_d, B_b, B_l, B_n, C_b, C_l, C_n,
                      scratch_row, scratch_row, False, BLOCK_D, NP, BLOCK_N, ACC)
            tl.debug_barrier()  # the tree adds to what the chain wrote
            if HAS_TREE:
                _tree_up(x, dt, Bm, Cm, y, final, scratch, x, y, plan, rounds, b, b64, a, d, n, d_out, channel_ok,
                         length, channels, state, tree_scale, x_b, x_l, x_d, dt_b, dt_l, dt_d, B_b, B_l, B_n,
                         C_b, C_l, C_n, plan_b, plan_row, rounds_b, num_rounds, scratch_row, scratch_row, False,
                         BLOCK_D, NP, BLOCK_N, ACC)
            tl.debug_barrier()  # the next channel block reuses the scratch

    @triton.jit
    def _input_gradients(du, xs, dts, bs, dB, b64, token, valid, length, state, dB_row,
                         BLOCK_D: tl.constexpr, NP: tl.constexpr, BLOCK_N: tl.constexpr):
        """Through u = delta B x: adds B's gradient (summed over the block's channels, this
        program's partial sums) and returns x's and delta's ([BLOCK_D, tokens], summed over the state)."""
        per_state = tl.sum(tl.reshape(du * dts * xs, (BLOCK_D, NP, BLOCK_N)), axis=0)
        states = tl.arange(0, NP)
        b_at = dB + dB_row + token.to(tl.int64)[None, :] * state + states[:, None]
        ok = (states < state)[:, None] & valid[None, :]
        tl.store(b_at, tl.load(b_at, mask=ok, other=0.0) + per_state, mask=ok)
        by_x = tl.sum(tl.reshape(du * dts * bs, (BLOCK_D, NP, BLOCK_N)), axis=1)
        by_dt = tl.sum(tl.reshape(du * xs * bs, (BLOCK_D, NP, BLOCK_N)), axis=1)
        return by_x, by_dt

    @triton.jit
    def _decay_gradients(da, dt, b64, token, valid, d, channel_ok, a, dt_b, dt_l, dt_d,
                         BLOCK_D: tl.constexpr, NP: tl.constexpr, BLOCK_N: tl.constexpr):
        """Through the decays exp(delta_t A) of the tokens, given their gradient ``da``: delta's
        gradient ([BLOCK_D, tokens]) and A's ([channels], summed over the tokens)."""
        decay = _decay(dt, b64, token, valid, d, channel_ok, a, dt_b, dt_l, dt_d)
        dts = tl.load(dt + b64 * dt_b + token.to(tl.int64)[None, :] * dt_l + d[:, None] * dt_d,
                      mask=channel_ok[:, None] & valid[None, :], other=0.0).to(a.dtype)
        by_product = da * decay  # the gradient of delta_t A
        by_dt = tl.sum(tl.reshape(by_product * a[:, None], (BLOCK_D, NP, BLOCK_N)), axis=1)
        return by_dt, tl.sum(by_product * dts, axis=1)

    @triton.jit
    def _add(buffer, b64, token, valid, d_out, length, channels, value):
        """buffer[b, t, d] += value ([BLOCK_D, tokens]); each (t, d) once per call."""
        mask = (d_out < channels)[:, None] & valid[None, :]
        at = buffer + (b64 * length + token.to(tl.int64)[None, :]) * channels + d_out[:, None]
        tl.store(at, tl.load(at, mask=mask, other=0.0) + value, mask=mask)

    @triton.jit
    def _selective_backward_kernel(
        dy, dfinal, x, dt, A, Bm, Cm, D, gx, gdt, dA, dB, dC, dD, chain_states, states, grads, plan, rounds,
        x_b, x_l, x_d, dt_b, dt_l, dt_d, A_d, A_n, B_b, B_l, B_n, C_b, C_l, C_n,
        plan_b, plan_row, rounds_b, length, channels, state, d_blocks, num_rounds, tree_scale, chain_scale,
        HAS_TREE: tl.constexpr, HAS_FINAL: tl.constexpr, BLOCK_D: tl.constexpr, NP: tl.constexpr,
        BLOCK_N: tl.constexpr, FP64: tl.constexpr,
    ):
        ACC: tl.constexpr = tl.float64 if FP64 else tl.float32
        b = tl.program_id(0)
        b64 = b.to(tl.int64)
        program, programs = tl.program_id(1), tl.num_programs(1)
        lanes = tl.arange(0, BLOCK_N)
        c = tl.arange(0, BLOCK_D * NP)
        n = c % NP
        scratch_row = ((b64 * programs + program) * (BLOCK_D * NP) + c.to(tl.int64)) * length
        partial_row = (b64 * programs + program) * length * state  # this program's rows of dB and dC
        for block in range(program, d_blocks, programs):
            d = block * BLOCK_D + c // NP
            channel_ok = (d < channels) & (n < state)
            d_out = block * BLOCK_D + tl.arange(0, BLOCK_D)
            out_ok = d_out < channels
            a = tl.load(A + d * A_d + n * A_n, mask=channel_ok, other=0.0).to(ACC)
            skip = tl.load(D + d_out, mask=out_ok, other=0.0).to(ACC)
            grad_a = tl.zeros([BLOCK_D * NP], ACC)
            grad_skip = tl.zeros([BLOCK_D], ACC)
            if HAS_FINAL:
                final_grad = tl.load(dfinal + (b64 * channels + d) * state + n, mask=channel_ok, other=0.0).to(ACC)
            else:
                final_grad = tl.zeros([BLOCK_D * NP], ACC)

            # Forward again: the chain's states (and the tree's), and C's gradient.
            _chain_up(x, dt, Bm, Cm, x, x, chain_states, dy, dC, b64, a, skip, d, n, d_out, channel_ok, length,
                      channels, state, chain_scale, x_b, x_l, x_d, dt_b, dt_l, dt_d, B_b, B_l, B_n, C_b, C_l, C_n,
                      scratch_row, partial_row, True, BLOCK_D, NP, BLOCK_N, ACC)
            if HAS_TREE:
                tl.debug_barrier()
                _tree_up(x, dt, Bm, Cm, x, x, states, dy, dC, plan, rounds, b, b64, a, d, n, d_out, channel_ok,
                         length, channels, state, tree_scale, x_b, x_l, x_d, dt_b, dt_l, dt_d, B_b, B_l, B_n,
                         C_b, C_l, C_n, plan_b, plan_row, rounds_b, num_rounds, scratch_row, partial_row, True,
                         BLOCK_D, NP, BLOCK_N, ACC)
            tl.debug_barrier()

            # The chain backwards, tokens from the last: G_t = chain_scale dH_t + a_{t+1} G_{t+1},
            # with dH_t = dy_t C_t (+ the final state's gradient at the last token).
            carry = tl.zeros([BLOCK_D * NP], ACC)
            for i in range(tl.cdiv(length, BLOCK_N)):
                high = length - i * BLOCK_N
                token = high - 1 - lanes
                valid = token >= 0
                t64 = token.to(tl.int64)
                mask = channel_ok[:, None] & valid[None, :]
                dys = tl.load(dy + (b64 * length + t64[None, :]) * channels + d[:, None], mask=mask, other=0.0)
                cs = tl.load(Cm + b64 * C_b + t64[None, :] * C_l + n[:, None] * C_n, mask=mask, other=0.0)
                grad_h = dys.to(ACC) * cs.to(ACC) + tl.where((token == length - 1)[None, :], final_grad[:, None], 0.0)
                step = _decay(dt, b64, token + 1, valid & (token + 1 < length), d, channel_ok, a, dt_b, dt_l, dt_d)
                value = chain_scale * grad_h
                value = tl.where((lanes == 0)[None, :], value + step * carry[:, None], value)
                _, du = tl.associative_scan((step, value), 1, _linear_step)
                xs, dts, bs = _token_values(x, dt, Bm, b64, token, valid, d, n, channel_ok,
                                            x_b, x_l, x_d, dt_b, dt_l, dt_d, B_b, B_l, B_n, ACC)
                by_x, by_dt = _input_gradients(du, xs, dts, bs, dB, b64, token, valid, length, state, partial_row,
                                               BLOCK_D, NP, BLOCK_N)
                # h_t = a_t h_{t-1} + u_t: the decay of token t meets the chain's state before it.
                before = tl.load(chain_states + scratch_row[:, None] + t64[None, :] - 1,
                                 mask=mask & (token >= 1)[None, :], other=0.0, cache_modifier=".cg")
                by_decay, by_a = _decay_gradients(du * before, dt, b64, token, valid, d, channel_ok, a,
                                                  dt_b, dt_l, dt_d, BLOCK_D, NP, BLOCK_N)
                grad_a += by_a
                x_out = tl.load(x + b64 * x_b + t64[None, :] * x_l + d_out[:, None] * x_d,
                                mask=out_ok[:, None] & valid[None, :], other=0.0).to(ACC)
                dy_out = tl.load(dy + (b64 * length + t64[None, :]) * channels + d_out[:, None],
                                 mask=out_ok[:, None] & valid[None, :], other=0.0).to(ACC)
                _add(gx, b64, token, valid, d_out, length, channels, by_x + skip[:, None] * dy_out)
                _add(gdt, b64, token, valid, d_out, length, channels, by_dt + by_decay)
                grad_skip += tl.sum(dy_out * x_out, axis=1)
                first = tl.maximum(0, high - BLOCK_N)
                carry = tl.sum(tl.where((token == first)[None, :], du, 0.0), axis=1)
                tl.debug_barrier()  # the next chunk adds to the same gradients

            if HAS_TREE:
                # The tree backwards, root to leaves (as triton_scan's causal backward):
                # G_v = tree_scale dH_v + w_v G_parent; u's gradient is G, and the edge of v
                # (the decay of the token after v's) gets G_parent h_v.
                for r in range(num_rounds):
                    start, end = _round_bounds(rounds, rounds_b, b, r)
                    carry = tl.zeros([BLOCK_D * NP], ACC)
                    for i in range(tl.cdiv(end - start, BLOCK_N)):
                        k = start + i * BLOCK_N + lanes
                        valid = k < end
                        vertex, slot, link, kind = _element_rows(plan, plan_b, plan_row, b, k, valid)
                        is_vertex = valid & ((kind == _HEAD) | (kind == _PATH_VERTEX))
                        with_parent = is_vertex & (link >= 0)
                        token = length - 1 - vertex
                        t64 = token.to(tl.int64)
                        mask = channel_ok[:, None] & is_vertex[None, :]
                        dys = tl.load(dy + (b64 * length + t64[None, :]) * channels + d[:, None], mask=mask,
                                      other=0.0).to(ACC)
                        cs = tl.load(Cm + b64 * C_b + t64[None, :] * C_l + n[:, None] * C_n, mask=mask,
                                     other=0.0).to(ACC)
                        grad_h = dys * cs + tl.where((vertex == 0)[None, :], final_grad[:, None], 0.0)
                        weight = _decay(dt, b64, token + 1, with_parent, d, channel_ok, a, dt_b, dt_l, dt_d)
                        above = tl.load(grads + scratch_row[:, None] + link.to(tl.int64)[None, :],
                                        mask=channel_ok[:, None] & (with_parent & (kind == _HEAD))[None, :],
                                        other=0.0, cache_modifier=".cg")
                        step = tl.where((kind == _PATH_VERTEX)[None, :], weight,
                                        tl.where((kind == _ENTRY)[None, :], 1.0, 0.0))
                        value = tl.where(mask, tree_scale * grad_h, 0.0) + weight * above
                        value = tl.where((lanes == 0)[None, :], value + step * carry[:, None], value)
                        _, du = tl.associative_scan((step, value), 1, _linear_step)
                        tl.store(grads + scratch_row[:, None] + slot.to(tl.int64)[None, :], du, mask=mask)
                        xs, dts, bs = _token_values(x, dt, Bm, b64, token, is_vertex, d, n, channel_ok,
                                                    x_b, x_l, x_d, dt_b, dt_l, dt_d, B_b, B_l, B_n, ACC)
                        by_x, by_dt = _input_gradients(du, xs, dts, bs, dB, b64, token, is_vertex, length, state,
                                                       partial_row, BLOCK_D, NP, BLOCK_N)
                        _add(gx, b64, token, is_vertex, d_out, length, channels, by_x)
                        _add(gdt, b64, token, is_vertex, d_out, length, channels, by_dt)
                        tl.debug_barrier()  # parents in this chunk have stored G; delta's gradients are in
                        parent_grad = tl.load(grads + scratch_row[:, None] + link.to(tl.int64)[None, :],
                                              mask=channel_ok[:, None] & with_parent[None, :], other=0.0,
                                              cache_modifier=".cg")
                        own = tl.load(states + scratch_row[:, None] + slot.to(tl.int64)[None, :],
                                      mask=channel_ok[:, None] & with_parent[None, :], other=0.0, cache_modifier=".cg")
                        by_decay, by_a = _decay_gradients(parent_grad * own, dt, b64, token + 1, with_parent, d,
                                                          channel_ok, a, dt_b, dt_l, dt_d, BLOCK_D, NP, BLOCK_N)
                        grad_a += by_a
                        _add(gdt, b64, token + 1, with_parent, d_out, length, channels, by_decay)
                        carry = tl.sum(tl.where((k == tl.minimum(end, start + (i + 1) * BLOCK_N) - 1)[None, :], du,
                                                0.0), axis=1)
                        tl.debug_barrier()  # the next chunk adds to the same gradients
                    tl.debug_barrier()
            tl.store(dA + (b64 * channels + d) * state + n, grad_a, mask=channel_ok)
            tl.store(dD + b64 * channels + d_out, grad_skip, mask=out_ok)
            tl.debug_barrier()  # the next channel block reuses the scratch


_programs_override: int | None = None


def _programs(batch: int, d_blocks: int, device: torch.device) -> int:
    """Programs per row: enough to give every multiprocessor a few, no more than the blocks."""
    if _programs_override is not None:
        return min(_programs_override, d_blocks)
    if device.type == "cpu":
        return min(2, d_blocks)
    multiprocessors = torch.cuda.get_device_properties(device).multi_processor_count
    return max(1, min(d_blocks, triton.cdiv(4 * multiprocessors, batch)))


def _tiles(state: int, device: torch.device) -> tuple[int, int, int]:
    """(BLOCK_D, NP, BLOCK_N): the state padded to a power of two; on a GPU tiles of 512
    elements on 8 warps (for sm_90 by cuobjdump: about 110 registers forward, 210 backward, no
    spills; 1024-element tiles spilled)."""
    padded = triton.next_power_of_2(state)
    if device.type == "cpu":
        return 2, padded, 16
    block_d = max(1, 32 // padded)
    return block_d, padded, max(512 // (block_d * padded), 16)


def forward(x, delta, A, B, C, D, tree_plan, tree_scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(y, final_state)`` of the fused scan; ``tree_plan`` = ``[elements, rounds]`` of the
    tree's heavy-path plan, or None (the second tree is then the chain itself)."""
    batch, length, channels = x.shape
    state = A.shape[1]
    acc = A.dtype  # float32, or float64 for float64 inputs
    y = torch.empty(batch, length, channels, dtype=acc, device=x.device)
    final = torch.empty(batch, channels, state, dtype=acc, device=x.device)
    if x.numel() == 0:
        return y.to(x.dtype), final.to(A.dtype)
    block_d, padded, block_n = _tiles(state, x.device)
    d_blocks = triton.cdiv(channels, block_d)
    programs = _programs(batch, d_blocks, x.device)
    has_tree = tree_plan is not None
    elements, rounds = tree_plan if has_tree else (x.new_zeros(1, 4, 1, dtype=torch.int32),
                                                    x.new_zeros(1, 2, dtype=torch.int32))
    scratch = torch.empty(batch * programs * block_d * padded * (length if has_tree else 1), dtype=acc,
                          device=x.device)
    launchable(_selective_forward_kernel)[(batch, programs)](
        x, delta, A, B, C, D, y, final, scratch, elements, rounds,
        *x.stride(), *delta.stride(), *A.stride(), *B.stride(), *C.stride(),
        elements.stride(0), elements.stride(1), rounds.stride(0), length, channels, state, d_blocks,
        rounds.shape[1] - 1, float(tree_scale), 1.0 if has_tree else 1.0 + float(tree_scale),
        HAS_TREE=has_tree, BLOCK_D=block_d, NP=padded, BLOCK_N=block_n, FP64=acc == torch.float64, num_warps=8,
    )
    return y.to(x.dtype), final


def backward(grad_y, grad_final, x, delta, A, B, C, D, tree_plan, tree_scale: float):
    """Gradients of :func:`forward` for ``x, delta, A, B, C, D``, recomputing the scans."""
    batch, length, channels = x.shape
    state = A.shape[1]
    acc = A.dtype
    device = x.device
    block_d, padded, block_n = _tiles(state, device)
    d_blocks = triton.cdiv(channels, block_d)
    programs = _programs(batch, d_blocks, device)
    has_tree = tree_plan is not None
    elements, rounds = tree_plan if has_tree else (x.new_zeros(1, 4, 1, dtype=torch.int32),
                                                    x.new_zeros(1, 2, dtype=torch.int32))
    grad_x = torch.zeros(batch, length, channels, dtype=acc, device=device)
    grad_delta = torch.zeros_like(grad_x)
    grad_A = torch.empty(batch, channels, state, dtype=acc, device=device)  # per row, summed below
    grad_D = torch.empty(batch, channels, dtype=acc, device=device)
    grad_B = torch.zeros(batch, programs, length, state, dtype=acc, device=device)  # per program, summed below
    grad_C = torch.zeros_like(grad_B)
    rows = batch * programs * block_d * padded * length
    chain_states = torch.empty(rows, dtype=acc, device=device)
    states, grads = (torch.empty(rows, dtype=acc, device=device) for _ in range(2)) if has_tree else (chain_states,) * 2
    if x.numel() > 0:
        launchable(_selective_backward_kernel)[(batch, programs)](
            grad_y.contiguous(), grad_final.contiguous() if grad_final is not None else grad_A, x, delta, A, B, C, D,
            grad_x, grad_delta, grad_A, grad_B, grad_C, grad_D, chain_states, states, grads, elements, rounds,
            *x.stride(), *delta.stride(), *A.stride(), *B.stride(), *C.stride(),
            elements.stride(0), elements.stride(1), rounds.stride(0), length, channels, state, d_blocks,
            rounds.shape[1] - 1, float(tree_scale), 1.0 if has_tree else 1.0 + float(tree_scale),
            HAS_TREE=has_tree, HAS_FINAL=grad_final is not None, BLOCK_D=block_d, NP=padded, BLOCK_N=block_n,
            FP64=acc == torch.float64, num_warps=8,
        )
    else:
        grad_A.zero_(), grad_D.zero_()
    return (grad_x.to(x.dtype), grad_delta.to(delta.dtype), grad_A.sum(0), grad_B.sum(1).to(B.dtype),
            grad_C.sum(1).to(C.dtype), grad_D.sum(0).to(D.dtype))


def plan_of(tree_order, tree_parent, tree_plan):
    """The tree's ``[elements, rounds]``: as given, or made from ``tree_parent``."""
    if tree_order is None:
        return None
    if tree_plan:
        return list(tree_plan)
    return list(heavy_paths.layout_from_parent(tree_parent))


def selective_tree_scan(x, delta, A, B, C, D, tree_order, tree_parent, tree_scale, tree_plan=None):
    """The operator's CUDA kernel (arguments as ``torch.ops.tree_scan_lan.selective_tree_scan``)."""
    return forward(x, delta, A, B, C, D, plan_of(tree_order, tree_parent, tree_plan), tree_scale)


def selective_tree_scan_backward(grad_y, grad_final_state, x, delta, A, B, C, D, tree_order, tree_parent, tree_scale,
                                 tree_plan=None):
    """The backward operator's CUDA kernel."""
    return backward(grad_y, grad_final_state, x, delta, A, B, C, D, plan_of(tree_order, tree_parent, tree_plan),
                    tree_scale)
