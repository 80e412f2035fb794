"""The heavy-path plan in Triton: what ``heavy_paths.py`` computes, in few GPU launches.

``heavy_paths`` writes the plan as plain tensor operations, for reading and as the twin the
tests compare against; on a GPU those would be some four hundred small kernels per tree.
Here each step of it is one kernel over all arcs or all vertices of the batch (the same
names and order as there), the sorts and prefix sums are torch's, and the pointer-jumping
rounds are one launch each: about 35 + log2(V) launches per tree, none waiting for the GPU.
On CPU tensors the kernels run in Triton's interpreter (``TRITON_INTERPRET=1``), which is
how the tests check them, bit for bit, against ``heavy_paths``.
"""

from __future__ import annotations

import torch

from .triton_scan import AVAILABLE, launchable, triton

if AVAILABLE:
    import triton.language as tl

__all__ = ["plan"]

_BLOCK = 1024

if AVAILABLE:

    @triton.jit
    def _lanes(n, BLOCK: tl.constexpr):
        """This program's image and its indices in [0, n)."""
        index = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        return tl.program_id(1).to(tl.int64), index, index < n

    @triton.jit
    def _arcs_kernel(rows, rows_b, rows_r, rows_e, num_rows, size, arcs, source, target, real, sort_key, degree,
                     checks, BLOCK: tl.constexpr):
        # Arc 2r runs u -> v along row r, arc 2r + 1 back; row num_rows is padding.
        b, a, ok = _lanes(arcs, BLOCK)
        row = a // 2
        has_row = ok & (row < num_rows)
        u = tl.load(rows + b * rows_b + row * rows_r, mask=has_row, other=-1)
        v = tl.load(rows + b * rows_b + row * rows_r + rows_e, mask=has_row, other=-1)
        is_real = (u >= 0) & (u < size) & (v >= 0) & (v < size)
        back = (a % 2) == 1
        src = tl.where(is_real, tl.where(back, v, u), 0).to(tl.int32)
        dst = tl.where(is_real, tl.where(back, u, v), 0).to(tl.int32)
        key_source = tl.where(is_real, src, size)
        tl.store(source + b * arcs + a, src, mask=ok)
        tl.store(target + b * arcs + a, dst, mask=ok)
        tl.store(real + b * arcs + a, is_real.to(tl.int8), mask=ok)
        tl.store(sort_key + b * arcs + a, key_source.to(tl.int64) * arcs + a, mask=ok)
        tl.atomic_add(degree + b * (size + 1) + key_source, ok.to(tl.int32), mask=ok)
        # For the checks: real arcs (two per edge), and rows that are neither edges nor padding.
        tl.atomic_add(checks + b * 3, tl.sum((ok & is_real).to(tl.int32)))
        tl.atomic_add(checks + b * 3 + 1, tl.sum((ok & ~is_real & (a % 2 == 0) & ((u != -1) | (v != -1))).to(tl.int32)))

    @triton.jit
    def _position_kernel(by_source, position, arcs, BLOCK: tl.constexpr):
        b, i, ok = _lanes(arcs, BLOCK)
        arc = tl.load(by_source + b * arcs + i, mask=ok, other=0)
        tl.store(position + b * arcs + arc, i.to(tl.int32), mask=ok)

    @triton.jit
    def _successor_kernel(source, target, real, position, first, degree, by_source, preferred, successor, key, ahead,
                          size, arcs, BLOCK: tl.constexpr):
        b, a, ok = _lanes(arcs, BLOCK)
        is_real = ok & (tl.load(real + b * arcs + a, mask=ok, other=0) != 0)
        src = tl.load(source + b * arcs + a, mask=ok, other=0)
        dst = tl.load(target + b * arcs + a, mask=ok, other=0)
        # Having come to dst, leave by the arc after dst -> src in dst's list, cyclically.
        following = tl.load(position + b * arcs + (a ^ 1), mask=ok, other=0) + 1
        list_start = tl.load(first + b * (size + 1) + dst, mask=ok, other=0)
        list_end = list_start + tl.load(degree + b * (size + 1) + dst, mask=ok, other=0)
        following = tl.where(following >= list_end, list_start, following)
        after = tl.load(by_source + b * arcs + following, mask=is_real, other=-1).to(tl.int32)
        tl.store(successor + b * arcs + a, tl.where(is_real, after, -1), mask=ok)
        leads = is_real & (tl.load(position + b * arcs + a, mask=ok, other=0)
                           == tl.load(first + b * (size + 1) + src, mask=ok, other=0))
        src_key = src + tl.where(tl.load(preferred + b * size + src, mask=ok, other=0) != 0, 0, size)
        tl.store(key + b * arcs + a, tl.where(leads, src_key, 2 * size), mask=ok)
        tl.store(ahead + b * arcs + a, tl.zeros_like(a).to(tl.int32), mask=ok)

    @triton.jit
    def _doubling_kernel(key, ahead, jump, key_out, ahead_out, jump_out, span, arcs, BLOCK: tl.constexpr):
        # The smallest key among the first arcs of the next 2^r arcs, and how far ahead.
        b, a, ok = _lanes(arcs, BLOCK)
        here = b * arcs + a
        k = tl.load(key + here, mask=ok, other=0)
        d = tl.load(ahead + here, mask=ok, other=0)
        j = tl.load(jump + here, mask=ok, other=-1)
        live = ok & (j >= 0)
        later_key = tl.load(key + b * arcs + j, mask=live, other=0)
        later_ahead = tl.load(ahead + b * arcs + j, mask=live, other=0)
        take = live & (later_key < k)  # on ties the nearer one stays
        tl.store(key_out + here, tl.where(take, later_key, k), mask=ok)
        tl.store(ahead_out + here, tl.where(take, later_ahead + span, d), mask=ok)
        tl.store(jump_out + here, tl.where(live, tl.load(jump + b * arcs + j, mask=live, other=-1), j), mask=ok)

    @triton.jit
    def _roots_kernel(degree, first, by_source, key, ahead, successor, preferred, root, tour_length, subtree, checks,
                      size, arcs, BLOCK: tl.constexpr):
        b, v, ok = _lanes(size, BLOCK)
        has_arcs = ok & (tl.load(degree + b * (size + 1) + v, mask=ok, other=0) > 0)
        first_arc = tl.load(by_source + b * arcs + tl.load(first + b * (size + 1) + v, mask=has_arcs, other=0),
                            mask=has_arcs, other=0)
        own_key = v + tl.where(tl.load(preferred + b * size + v, mask=ok, other=0) != 0, 0, size)
        found = tl.where(has_arcs, tl.load(key + b * arcs + first_arc, mask=has_arcs, other=0), own_key) % size
        tl.store(root + b * size + v, found.to(tl.int32), mask=ok)
        # The arc after the root's first one is the farthest from coming back to it.
        after_first = tl.load(successor + b * arcs + first_arc, mask=has_arcs, other=0)
        is_root = ok & (found == v)
        length = tl.load(ahead + b * arcs + after_first, mask=has_arcs & is_root, other=-1) + 1
        tl.store(tour_length + b * size + v, length, mask=ok)
        tl.store(subtree + b * size + v, length // 2 + 1, mask=is_root)
        tl.atomic_add(checks + b * 3 + 2, tl.sum(is_root.to(tl.int32)))

    @triton.jit
    def _tour_kernel(source, target, real, ahead, root, tour_length, tour_start, parent, arc_into, subtree, down,
                     tour_index, size, arcs, BLOCK: tl.constexpr):
        b, a, ok = _lanes(arcs, BLOCK)
        is_real = ok & (tl.load(real + b * arcs + a, mask=ok, other=0) != 0)
        src = tl.load(source + b * arcs + a, mask=ok, other=0)
        dst = tl.load(target + b * arcs + a, mask=ok, other=0)
        component = tl.load(root + b * size + src, mask=ok, other=0)
        length = tl.load(tour_length + b * size + component, mask=ok, other=0)
        here = tl.load(ahead + b * arcs + a, mask=ok, other=0)
        there = tl.load(ahead + b * arcs + (a ^ 1), mask=ok, other=0)
        position = tl.where(here == 0, 0, length - here)
        reverse_position = tl.where(there == 0, 0, length - there)
        is_down = is_real & (position < reverse_position)
        tl.store(parent + b * size + dst, src, mask=is_down)
        tl.store(arc_into + b * size + dst, a.to(tl.int32), mask=is_down)
        # Between the arcs down into dst and back up lie the 2 (size - 1) arcs of its subtree.
        tl.store(subtree + b * size + dst, (reverse_position - position + 1) // 2, mask=is_down)
        tl.store(down + b * arcs + a, is_down.to(tl.int8), mask=ok)
        start = tl.load(tour_start + b * size + component, mask=ok, other=0)
        tl.store(tour_index + b * arcs + a, tl.where(is_real, start + position, arcs), mask=ok)

    @triton.jit
    def _heaviest_kernel(root, parent, subtree, heaviest, size, BLOCK: tl.constexpr):
        # The heavy child: the largest subtree, the smallest vertex among equals.
        b, v, ok = _lanes(size, BLOCK)
        is_root = tl.load(root + b * size + v, mask=ok, other=0) == v
        group = tl.where(is_root, size, tl.load(parent + b * size + v, mask=ok, other=0))
        heaviness = tl.load(subtree + b * size + v, mask=ok, other=0).to(tl.int64) * (size + 1) + (size - v)
        tl.atomic_max(heaviest + b * (size + 1) + group, heaviness, mask=ok)

    @triton.jit
    def _light_kernel(root, parent, subtree, heaviest, preferred, light, light_children, root_sizes, size,
                      BLOCK: tl.constexpr):
        b, v, ok = _lanes(size, BLOCK)
        is_root = tl.load(root + b * size + v, mask=ok, other=0) == v
        group = tl.where(is_root, size, tl.load(parent + b * size + v, mask=ok, other=0))
        count = tl.load(subtree + b * size + v, mask=ok, other=0)
        heaviness = count.to(tl.int64) * (size + 1) + (size - v)
        is_light = ok & ~is_root & (heaviness != tl.load(heaviest + b * (size + 1) + group, mask=ok, other=0))
        tl.store(light + b * size + v, is_light.to(tl.int8), mask=ok)
        tl.atomic_add(light_children + b * (size + 1) + group, is_light.to(tl.int32), mask=ok)
        first = tl.load(preferred + b * size + v, mask=ok, other=0) != 0
        tl.store(root_sizes + (b * size + v) * 2, tl.where(is_root & first, count, 0), mask=ok)
        tl.store(root_sizes + (b * size + v) * 2 + 1, tl.where(is_root & ~first, count, 0), mask=ok)

    @triton.jit
    def _sibling_values_kernel(by_source, target, down, light, subtree, values, size, arcs, BLOCK: tl.constexpr):
        # In list order: the size of a light child, and one, at the arc down to it.
        b, i, ok = _lanes(arcs, BLOCK)
        arc = tl.load(by_source + b * arcs + i, mask=ok, other=0)
        child = tl.load(target + b * arcs + arc, mask=ok, other=0)
        light_arc = ok & (tl.load(down + b * arcs + arc, mask=ok, other=0) != 0) & \
            (tl.load(light + b * size + child, mask=ok, other=0) != 0)
        tl.store(values + (b * arcs + i) * 2, tl.where(light_arc, tl.load(subtree + b * size + child, mask=ok,
                                                                         other=0), 0), mask=ok)
        tl.store(values + (b * arcs + i) * 2 + 1, light_arc.to(tl.int32), mask=ok)

    @triton.jit
    def _offsets_kernel(root, parent, arc_into, position, first, light, heaviest, preferred, subtree, siblings,
                        roots_up_to, offset, siblings_before, size, arcs, BLOCK: tl.constexpr):
        # The depth-first order: a child 1 + (the sizes of the siblings before it) after its
        # parent, the heavy child first; a root after the roots before it (preferred first).
        b, v, ok = _lanes(size, BLOCK)
        is_root = tl.load(root + b * size + v, mask=ok, other=0) == v
        child = ok & ~is_root
        p = tl.load(parent + b * size + v, mask=child, other=0)
        at_arc = tl.load(position + b * arcs + tl.load(arc_into + b * size + v, mask=child, other=0), mask=child,
                         other=0)
        at_list = tl.load(first + b * (size + 1) + p, mask=child, other=0)
        size_before = tl.load(siblings + (b * arcs + at_arc) * 2, mask=child, other=0) - \
            tl.load(siblings + (b * arcs + at_list) * 2, mask=child, other=0)
        count_before = tl.load(siblings + (b * arcs + at_arc) * 2 + 1, mask=child, other=0) - \
            tl.load(siblings + (b * arcs + at_list) * 2 + 1, mask=child, other=0)
        heavy_size = (tl.load(heaviest + b * (size + 1) + p, mask=child, other=0) // (size + 1)).to(tl.int32)
        is_light = tl.load(light + b * size + v, mask=ok, other=0) != 0
        is_first = tl.load(preferred + b * size + v, mask=ok, other=0) != 0
        own = tl.load(subtree + b * size + v, mask=ok, other=0)
        # roots_up_to: inclusive running sums of the sizes of preferred roots, and of the others.
        first_roots = tl.load(roots_up_to + (b * size + v) * 2, mask=ok, other=0) - tl.where(is_first, own, 0)
        other_roots = tl.load(roots_up_to + (b * size + v) * 2 + 1, mask=ok, other=0) - tl.where(is_first, 0, own)
        all_first_roots = tl.load(roots_up_to + (b * size + size - 1) * 2)
        root_offset = tl.where(is_first, first_roots, all_first_roots + other_roots)
        child_offset = 1 + tl.where(is_light, heavy_size + size_before, 0)
        tl.store(offset + b * size + v, tl.where(is_root, root_offset, child_offset), mask=ok)
        tl.store(siblings_before + b * size + v, count_before, mask=ok)

    @triton.jit
    def _tour_steps_kernel(source, target, real, down, tour_index, offset, light, steps, size, arcs,
                           BLOCK: tl.constexpr):
        # Walking down into u adds (offset, light) of u, walking back up subtracts it.
        b, a, ok = _lanes(arcs, BLOCK)
        is_real = ok & (tl.load(real + b * arcs + a, mask=ok, other=0) != 0)
        is_down = tl.load(down + b * arcs + a, mask=ok, other=0) != 0
        child = tl.where(is_down, tl.load(target + b * arcs + a, mask=ok, other=0),
                         tl.load(source + b * arcs + a, mask=ok, other=0))
        sign = tl.where(is_down, 1, -1)
        at = tl.load(tour_index + b * arcs + a, mask=ok, other=0)
        step_offset = sign * tl.load(offset + b * size + child, mask=is_real, other=0)
        step_light = sign * tl.load(light + b * size + child, mask=is_real, other=0).to(tl.int32)
        tl.store(steps + (b * (arcs + 1) + at) * 2, step_offset, mask=is_real)
        tl.store(steps + (b * (arcs + 1) + at) * 2 + 1, step_light, mask=is_real)

    @triton.jit
    def _preorder_kernel(root, arc_into, tour_index, running, offset, preorder, light_depth, order, round_key,
                         size, arcs, BLOCK: tl.constexpr):
        b, v, ok = _lanes(size, BLOCK)
        top = tl.load(root + b * size + v, mask=ok, other=0)
        child = ok & (top != v)
        at = tl.load(tour_index + b * arcs + tl.load(arc_into + b * size + v, mask=child, other=0), mask=child,
                     other=0)
        sum_offset = tl.load(running + (b * (arcs + 1) + at) * 2, mask=child, other=0)
        sum_light = tl.load(running + (b * (arcs + 1) + at) * 2 + 1, mask=child, other=0)
        place = tl.load(offset + b * size + top, mask=ok, other=0) + sum_offset
        tl.store(preorder + b * size + v, place, mask=ok)
        tl.store(light_depth + b * size + v, sum_light, mask=ok)
        tl.store(order + b * size + place, v.to(tl.int64), mask=ok)
        tl.store(round_key + b * size + v, sum_light.to(tl.int64) * size + place, mask=ok)

    @triton.jit
    def _slots_kernel(by_round, light_children, slot, owned, size, BLOCK: tl.constexpr):
        # A vertex's scratch slot is its rank in element order; it owns itself and its entries.
        b, i, ok = _lanes(size, BLOCK)
        v = tl.load(by_round + b * size + i, mask=ok, other=0)
        tl.store(slot + b * size + v, i.to(tl.int32), mask=ok)
        tl.store(owned + b * size + i, 1 + tl.load(light_children + b * (size + 1) + v, mask=ok, other=0), mask=ok)

    @triton.jit
    def _elements_kernel(slot, element_at, parent, root, light, siblings_before, light_depth, light_children,
                         elements, round_size, size, num_rounds, BLOCK: tl.constexpr):
        b, v, ok = _lanes(size, BLOCK)
        width = 2 * size
        own_slot = tl.load(slot + b * size + v, mask=ok, other=0)
        element = tl.load(element_at + b * size + own_slot, mask=ok, other=0)
        is_root = tl.load(root + b * size + v, mask=ok, other=0) == v
        is_light = tl.load(light + b * size + v, mask=ok, other=0) != 0
        p = tl.load(parent + b * size + v, mask=ok & ~is_root, other=0)
        parent_slot = tl.load(slot + b * size + p, mask=ok & ~is_root, other=0)
        base = elements + b * 4 * width
        tl.store(base + element, v.to(tl.int32), mask=ok)
        tl.store(base + width + element, own_slot, mask=ok)
        tl.store(base + 2 * width + element, tl.where(is_root, -1, parent_slot), mask=ok)
        tl.store(base + 3 * width + element, tl.where(is_root | is_light, 1, 0), mask=ok)
        # The entry of a light child: after its parent and the earlier light siblings' entries.
        entry = tl.load(element_at + b * size + parent_slot, mask=ok & is_light, other=0) + 1 + \
            tl.load(siblings_before + b * size + v, mask=ok & is_light, other=0)
        tl.store(base + entry, v.to(tl.int32), mask=ok & is_light)
        tl.store(base + width + entry, -1, mask=ok & is_light)
        tl.store(base + 2 * width + entry, own_slot, mask=ok & is_light)
        tl.store(base + 3 * width + entry, 2, mask=ok & is_light)
        depth = tl.load(light_depth + b * size + v, mask=ok, other=0)
        owns = 1 + tl.load(light_children + b * (size + 1) + v, mask=ok, other=0)
        tl.atomic_add(round_size + b * num_rounds + depth, owns, mask=ok)


def _launch(kernel, grid):
    """``kernel[grid]`` (one place for every launch of the plan: benchmarks/gpu_cost_model.py counts them)."""
    return launchable(kernel)[grid]


def plan(rows: torch.Tensor, num_vertices: int, preferred: torch.Tensor):
    """``heavy_paths._plan`` in Triton: ``(order, parent, layout)`` of the forest ``rows (B, R, 2)``
    rooted at its ``preferred`` vertices (and elsewhere at the smallest vertex)."""
    from .heavy_paths import PADDING, ScanLayout, _doubling_rounds, num_rounds

    batch, num_rows = rows.shape[:2]
    size, arcs = num_vertices, 2 * (rows.shape[1] + 1)
    device = rows.device

    def new(*shape, dtype=torch.int32, fill=None):
        return torch.empty(*shape, dtype=dtype, device=device) if fill is None else \
            torch.full(shape, fill, dtype=dtype, device=device)

    def launch(kernel, count):
        return _launch(kernel, (triton.cdiv(count, _BLOCK), batch))

    preferred = preferred.to(torch.int8)
    source, target, real = new(batch, arcs), new(batch, arcs), new(batch, arcs, dtype=torch.int8)
    sort_key, degree, checks = new(batch, arcs, dtype=torch.long), new(batch, size + 1, fill=0), new(batch, 3, fill=0)
    launch(_arcs_kernel, arcs)(rows, *rows.stride(), num_rows, size, arcs, source, target, real, sort_key, degree,
                               checks, BLOCK=_BLOCK)
    by_source = torch.sort(sort_key, dim=1).indices
    first = torch.cumsum(degree, dim=1, dtype=torch.int32) - degree
    position = new(batch, arcs)
    launch(_position_kernel, arcs)(by_source, position, arcs, BLOCK=_BLOCK)

    successor, key, ahead = new(batch, arcs), new(batch, arcs), new(batch, arcs)
    launch(_successor_kernel, arcs)(source, target, real, position, first, degree, by_source, preferred, successor,
                                    key, ahead, size, arcs, BLOCK=_BLOCK)
    jump = successor
    for r in range(_doubling_rounds(arcs)):
        key_out, ahead_out, jump_out = new(batch, arcs), new(batch, arcs), new(batch, arcs)
        launch(_doubling_kernel, arcs)(key, ahead, jump, key_out, ahead_out, jump_out, 1 << r, arcs, BLOCK=_BLOCK)
        key, ahead, jump = key_out, ahead_out, jump_out

    root, tour_length, subtree = new(batch, size), new(batch, size), new(batch, size)
    launch(_roots_kernel, size)(degree, first, by_source, key, ahead, successor, preferred, root, tour_length, subtree,
                                checks, size, arcs, BLOCK=_BLOCK)
    tour_start = torch.cumsum(tour_length, dim=1, dtype=torch.int32) - tour_length
    parent, arc_into = new(batch, size, dtype=torch.long, fill=-1), new(batch, size, fill=0)
    down, tour_index = new(batch, arcs, dtype=torch.int8), new(batch, arcs)
    launch(_tour_kernel, arcs)(source, target, real, ahead, root, tour_length, tour_start, parent, arc_into, subtree,
                               down, tour_index, size, arcs, BLOCK=_BLOCK)
    # A forest of T trees over V vertices has V - T edges; more means a cycle, a repeated edge
    # or a self-loop. Asserted on the device, without waiting for it.
    torch._assert_async((checks[:, 1] == 0).all(), "tree_scan: the tree names a vertex out of range")
    torch._assert_async((checks[:, 0] == 2 * (size - checks[:, 2])).all(),
                        "tree_scan: the tree has a cycle, a repeated edge or a self-loop (it is not a forest)")

    heaviest = new(batch, size + 1, dtype=torch.long, fill=0)
    launch(_heaviest_kernel, size)(root, parent, subtree, heaviest, size, BLOCK=_BLOCK)
    light, light_children = new(batch, size, dtype=torch.int8), new(batch, size + 1, fill=0)
    root_sizes = new(batch, size, 2)
    launch(_light_kernel, size)(root, parent, subtree, heaviest, preferred, light, light_children, root_sizes, size,
                                BLOCK=_BLOCK)
    siblings = new(batch, arcs, 2)
    launch(_sibling_values_kernel, arcs)(by_source, target, down, light, subtree, siblings, size, arcs, BLOCK=_BLOCK)
    siblings = torch.cumsum(siblings, dim=1, dtype=torch.int32) - siblings
    roots_up_to = torch.cumsum(root_sizes, dim=1, dtype=torch.int32)
    offset, siblings_before = new(batch, size), new(batch, size)
    launch(_offsets_kernel, size)(root, parent, arc_into, position, first, light, heaviest, preferred, subtree,
                                  siblings, roots_up_to, offset, siblings_before, size, arcs, BLOCK=_BLOCK)

    steps = new(batch, arcs + 1, 2, fill=0)
    launch(_tour_steps_kernel, arcs)(source, target, real, down, tour_index, offset, light, steps, size, arcs,
                                     BLOCK=_BLOCK)
    running = torch.cumsum(steps, dim=1, dtype=torch.int32)
    preorder, light_depth = new(batch, size), new(batch, size)
    order, round_key = new(batch, size, dtype=torch.long), new(batch, size, dtype=torch.long)
    launch(_preorder_kernel, size)(root, arc_into, tour_index, running, offset, preorder, light_depth, order,
                                   round_key, size, arcs, BLOCK=_BLOCK)

    by_round = torch.sort(round_key, dim=1).indices
    slot, owned = new(batch, size), new(batch, size)
    launch(_slots_kernel, size)(by_round, light_children, slot, owned, size, BLOCK=_BLOCK)
    element_at = torch.cumsum(owned, dim=1, dtype=torch.int32) - owned
    rounds_room = num_rounds(size)
    elements = torch.stack([new(batch, 2 * size, fill=0), new(batch, 2 * size, fill=-1),
                            new(batch, 2 * size, fill=-1), new(batch, 2 * size, fill=PADDING)], dim=1)
    round_size = new(batch, rounds_room, fill=0)
    launch(_elements_kernel, size)(slot, element_at, parent, root, light, siblings_before, light_depth,
                                   light_children, elements, round_size, size, rounds_room, BLOCK=_BLOCK)
    rounds = torch.nn.functional.pad(torch.cumsum(round_size, dim=1, dtype=torch.int32), (1, 0))
    return order, parent, ScanLayout(elements, rounds)
