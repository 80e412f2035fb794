"""Heavy-path plans: what the GPU tree scans need to know about a tree, computed once.

A scan along a tree is a chain of dependent steps as long as the tree is deep (hundreds
of levels at 56x56 pixels, thousands at detection sizes), if it follows the tree level by
level. The GPU scans (``triton_scan.py``) follow a *heavy-path decomposition* instead:

  * every vertex picks as its *heavy* child the child with the largest subtree; the other
    children are *light*. Heavy edges chain the vertices into *heavy paths*, each starting
    at a root or a light child (its *head*);
  * a light child's subtree is at most half of its parent's, so any root-to-vertex path
    crosses at most log2(V) light edges: the *light depth* of a path (the number of light
    edges above its head) is below log2(V);
  * along one heavy path a scan is a first-order linear recurrence, which a parallel
    prefix scan solves in log steps; the paths of one light depth are independent. So a
    scan runs in at most log2(V) + 1 *rounds* of prefix scans (deepest paths first going
    up, shallowest first going down) instead of depth-many steps.

The plan lays the tree out as a sequence of *elements*, sorted by (light depth, path,
position on the path): one element per vertex, and after a vertex, one *entry* element per
light child of it, through which the child's subtree flows into the parent's recurrence.
With entries in the sequence, a vertex with many light children (a star) sums them in the
same prefix scan rather than one by one. Elements of one round are contiguous, and so are
the elements of one path, head first.

Everything here is computed with plain tensor operations in a fixed number of rounds (no
data-dependent loop, no host synchronisation), so it runs on any device and under
``torch.compile``. The tree is rooted by an Euler tour ranked by pointer jumping, which
gives parents, subtree sizes and the heavy-first depth-first order in O(log V) rounds,
whatever the depth of the tree. On a GPU the same steps run as the Triton kernels of
``triton_plan.py`` (a few dozen launches instead of some four hundred small ones); the
tests check that both give the same plan, bit for bit, and this one against a plan walked
vertex by vertex.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch

__all__ = ["ScanLayout", "VERTEX", "SLOT", "LINK", "KIND", "PATH_VERTEX", "HEAD", "ENTRY", "PADDING",
           "root_forest", "layout_from_parent", "chain_layout"]

# Rows of ScanLayout.elements.
VERTEX, SLOT, LINK, KIND = range(4)
# Element kinds.
PATH_VERTEX = 0  # a vertex after the head of its heavy path
HEAD = 1  # the first vertex of a heavy path: a root or a light child
ENTRY = 2  # a light child's subtree, flowing into the vertex before it
PADDING = 3  # after the last element (every image has room for 2V elements)


class ScanLayout(NamedTuple):
    """The heavy-path plan of a batch of trees (see the module docstring).

    ``elements (B, 4, N)`` int32, per element ``k`` of image ``b``:
      * ``[b, VERTEX, k]``: the vertex whose input the element reads (for an entry, the light child);
      * ``[b, SLOT, k]``: for a vertex element, its row in the kernels' scratch (the rank of the
        element among the image's vertex elements); -1 otherwise;
      * ``[b, LINK, k]``: for a vertex element, the slot of its parent (-1 at a root); for an
        entry, the slot of the light child it stands for; -1 for padding;
      * ``[b, KIND, k]``: PATH_VERTEX, HEAD, ENTRY or PADDING.
    ``rounds (B, R + 1)`` int32: round ``d`` (the paths of light depth ``d``) is the elements
    ``[rounds[b, d], rounds[b, d + 1])``; ``R = floor(log2 V) + 1`` bounds the light depth.

    Either tensor may have a batch stride of 0 (one plan shared by the batch).
    """

    elements: torch.Tensor
    rounds: torch.Tensor


def num_rounds(num_vertices: int) -> int:
    """Rounds a plan of ``num_vertices`` vertices has room for: light depths 0 .. floor(log2 V)."""
    return max(int(num_vertices), 1).bit_length()


def _doubling_rounds(length: int) -> int:
    """Pointer-jumping rounds that cover a list or cycle of ``length`` links."""
    return max(length - 1, 1).bit_length()


def _gather(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``values[b, index[b, i]]``, with index -1 allowed (reads entry 0; mask the result)."""
    return values.gather(1, index.clamp(min=0))


def _exclusive_cumsum(values: torch.Tensor, dim: int) -> torch.Tensor:
    return torch.cumsum(values, dim=dim) - values


class _EulerTour:
    """The forest given by undirected edges, rooted, with its Euler tour ranked.

    Every vertex lists its arcs in the order of the tree rows; the tour leaves a vertex
    by the arc after the one it came in by. Vertex keys decide the roots: a connected
    component is rooted at its vertex of smallest key, and ``preferred`` vertices have keys
    below all others, so a component holding one is rooted there, any other at its
    smallest vertex (as ``tree_scan.bfs`` roots a forest).

    One pointer-jumping pass over the tour's cycles finds, for every arc, the smallest key
    among the first arcs of the vertices around its cycle (its component's root) and how
    many steps ahead that arc is: the tour then starts at the root's first arc.
    """

    def __init__(self, rows: torch.Tensor, num_vertices: int, preferred: torch.Tensor):
        batch = rows.shape[0]
        device = rows.device
        size = num_vertices
        # One padding row more: every image then has arcs, so no gather reads an empty tensor.
        rows = torch.cat([rows.long(), rows.new_full((batch, 1, 2), -1, dtype=torch.long)], dim=1)
        real = (rows >= 0).all(dim=-1) & (rows < size).all(dim=-1)
        ends = rows.clamp(0, size - 1)
        # Arc 2r runs u -> v along row r = (u, v), arc 2r + 1 back; arc ^ 1 is the reverse.
        self.source = ends.reshape(batch, -1)
        self.target = ends.flip(-1).reshape(batch, -1)
        self.real = real.repeat_interleave(2, dim=1)
        arcs = self.source.shape[1]
        arc_id = torch.arange(arcs, device=device).expand(batch, -1)
        self.reverse = arc_id ^ 1

        # Adjacency lists: arcs sorted by (source, arc); padding arcs last, under source V.
        source_key = torch.where(self.real, self.source, size)
        self.by_source = torch.sort(source_key * arcs + arc_id, dim=1).indices
        self.position = torch.empty_like(self.by_source).scatter_(1, self.by_source, arc_id.contiguous())
        self.degree = torch.zeros(batch, size + 1, dtype=torch.long, device=device)
        self.degree.scatter_add_(1, source_key, torch.ones_like(source_key))
        self.first = _exclusive_cumsum(self.degree, dim=1)

        # The tour: having come to v along u -> v, leave along the arc after v -> u in v's
        # list, cyclically. Around a tree this visits every arc once, as one cycle.
        following = _gather(self.position, self.reverse) + 1
        list_end = _gather(self.first, self.target) + _gather(self.degree, self.target)
        following = torch.where(following >= list_end, _gather(self.first, self.target), following)
        successor = torch.where(self.real, _gather(self.by_source, following), -1)

        # Doubling: after r rounds an arc knows the smallest key among the first arcs in the
        # 2^r arcs from it on, and how far ahead the first of them is.
        vertex = torch.arange(size, device=device).expand(batch, -1)
        self.vertex_key = torch.where(preferred, vertex, vertex + size)
        leads = self.real & (self.position == _gather(self.first, self.source))
        key = torch.where(leads, _gather(self.vertex_key, self.source), 2 * size)
        ahead = torch.zeros_like(key)
        jump = successor
        for span in (1 << r for r in range(_doubling_rounds(arcs))):
            live = jump >= 0
            later_key, later_ahead = _gather(key, jump), _gather(ahead, jump)
            take = live & (later_key < key)  # on ties the nearer one stays
            key, ahead = torch.where(take, later_key, key), torch.where(take, later_ahead + span, ahead)
            jump = torch.where(live, _gather(jump, jump), jump)

        self.has_arcs = self.degree[:, :size] > 0
        first_arc = _gather(self.by_source, self.first[:, :size])  # of every vertex that has arcs
        self.root = torch.where(self.has_arcs, _gather(key, first_arc), self.vertex_key) % size
        self.is_root = self.root == vertex
        # Arcs in each component's tour, indexed by its root (0 where the root has no arcs):
        # the arc after the root's first one is the farthest from coming back to it.
        after_first = _gather(successor, first_arc)
        self.tour_length = torch.where(self.is_root & self.has_arcs, _gather(ahead, after_first) + 1, 0)
        self.component = _gather(self.root, self.source)
        length = _gather(self.tour_length, self.component)
        self.tour_position = torch.where(ahead == 0, 0, length - ahead)

        # Rooted: the arc u -> v is walked down before it is walked up; u is v's parent.
        self.down = self.real & (self.tour_position < _gather(self.tour_position, self.reverse))
        into = torch.where(self.down, self.target, size)
        self.parent = torch.full((batch, size + 1), -1, dtype=torch.long, device=device)
        self.parent.scatter_(1, into, self.source)
        self.parent = self.parent[:, :size]
        self.arc_into = torch.zeros(batch, size + 1, dtype=torch.long, device=device)
        self.arc_into.scatter_(1, into, arc_id.contiguous())
        self.arc_into = self.arc_into[:, :size]
        up = _gather(self.tour_position, self.arc_into ^ 1) - _gather(self.tour_position, self.arc_into)
        self.subtree_size = torch.where(self.is_root, self.tour_length // 2 + 1, (up + 1) // 2)
        # Tours laid end to end (in the order of their roots' numbers) for prefix sums.
        self.tour_index = _gather(_exclusive_cumsum(self.tour_length, dim=1), self.component) + self.tour_position
        self.edges_given = real[:, :-1].sum(dim=1)

    def sum_over_ancestors(self, values: torch.Tensor) -> torch.Tensor:
        """``sum of values[u]`` over the non-root vertices ``u`` on the path from the root to
        ``v``, ``v`` included (0 at roots), for ``values (B, V, K)``: a prefix sum over the
        tour, where walking down into ``u`` adds ``values[u]`` and walking back up subtracts it."""
        batch, arcs = self.source.shape
        child = torch.where(self.down, self.target, self.source)
        sign = torch.where(self.real, torch.where(self.down, 1, -1), 0).unsqueeze(-1)
        step = sign * values.gather(1, child.unsqueeze(-1).expand(-1, -1, values.shape[-1]))
        tour = torch.zeros(batch, arcs + 1, values.shape[-1], dtype=values.dtype, device=values.device)
        slot = torch.where(self.real, self.tour_index, arcs).unsqueeze(-1).expand_as(step)
        tour.scatter_(1, slot, step)
        running = torch.cumsum(tour, dim=1)
        at = _gather(self.tour_index, self.arc_into).unsqueeze(-1).expand(-1, -1, values.shape[-1])
        return torch.where(self.is_root.unsqueeze(-1), 0, running.gather(1, at))

    def along_lists(self, per_arc: torch.Tensor) -> torch.Tensor:
        """For every vertex ``v``: the sum of ``per_arc (B, A, K)`` over the arcs before
        ``v``'s down arc in its parent's list (the arcs to its earlier siblings)."""
        in_list_order = per_arc.gather(1, self.by_source.unsqueeze(-1).expand_as(per_arc))
        before = _exclusive_cumsum(in_list_order, dim=1)
        at_arc = _gather(self.position, self.arc_into).unsqueeze(-1).expand(-1, -1, per_arc.shape[-1])
        at_list = _gather(self.first, self.parent).unsqueeze(-1).expand(-1, -1, per_arc.shape[-1])
        return before.gather(1, at_arc) - before.gather(1, at_list)


def _check_forest(tour: _EulerTour, num_vertices: int) -> None:
    """A forest of T trees over V vertices has V - T edges; more means a cycle, a repeated
    edge or a self-loop. Asserted on the device, without waiting for it."""
    trees = tour.is_root.sum(dim=1)
    torch._assert_async(
        (tour.edges_given == num_vertices - trees).all(),
        "tree_scan: the tree has a cycle, a repeated edge or a self-loop (it is not a forest)",
    )


def _heavy_path_layout(tour: _EulerTour, num_vertices: int, preferred: torch.Tensor) -> tuple[torch.Tensor, ScanLayout]:
    """The depth-first order (heavy child first, then the light children in the order of
    their tree rows; preferred roots first) and the element layout of a rooted forest."""
    size = num_vertices
    device = tour.parent.device
    batch = tour.parent.shape[0]
    vertex = torch.arange(size, device=device).expand(batch, -1)
    is_root, parent, subtree = tour.is_root, tour.parent, tour.subtree_size
    group = torch.where(is_root, size, parent)  # roots are the children of one virtual vertex

    # The heavy child of every vertex: the largest subtree, the smallest vertex among equals.
    heaviness = subtree * (size + 1) + (size - vertex)
    heaviest = torch.zeros(batch, size + 1, dtype=torch.long, device=device)
    heaviest.scatter_reduce_(1, group, heaviness, reduce="amax")
    light = ~is_root & (heaviness != _gather(heaviest, group))
    head = is_root | light
    light_children = torch.zeros(batch, size + 1, dtype=torch.long, device=device)
    light_children.scatter_add_(1, group, light.long())

    # Depth-first order: a child comes 1 + (the sizes of the siblings before it) after its
    # parent, the heavy child first, so that every heavy path is a run of the order.
    light_arc = tour.down & _gather(light, tour.target)
    per_arc = torch.stack([light_arc * _gather(subtree, tour.target), light_arc.long()], dim=-1)
    siblings_before = tour.along_lists(per_arc)  # sizes and count of the earlier light siblings
    heavy_size = _gather(heaviest, parent) // (size + 1)
    roots_first = torch.stack([is_root & preferred, is_root & ~preferred], dim=-1) * subtree.unsqueeze(-1)
    roots_before = _exclusive_cumsum(roots_first, dim=1)
    root_offset = torch.where(preferred, roots_before[..., 0], roots_first[..., 0].sum(1, keepdim=True)
                              + roots_before[..., 1])
    offset = torch.where(is_root, root_offset, 1 + torch.where(light, heavy_size + siblings_before[..., 0], 0))
    ancestors = tour.sum_over_ancestors(torch.stack([offset, light.long()], dim=-1))
    preorder = _gather(offset, tour.root) + ancestors[..., 0]
    light_depth = ancestors[..., 1]
    order = torch.empty_like(preorder).scatter_(1, preorder, vertex.contiguous())

    # Elements, by light depth, then depth-first: a vertex, then the entries of its light
    # children. Sorting the vertices so, a vertex's element comes after those its
    # predecessors own (1 + their light children), its scratch slot is its rank.
    by_round = torch.sort(light_depth * size + preorder, dim=1).indices
    owned = 1 + light_children[:, :size]
    element = torch.empty_like(by_round).scatter_(1, by_round, _exclusive_cumsum(_gather(owned, by_round), dim=1))
    slot = torch.empty_like(by_round).scatter_(1, by_round, vertex.contiguous())
    entry = torch.where(light, _gather(element, parent) + 1 + siblings_before[..., 1], 2 * size)
    rounds_room = num_rounds(size)
    round_size = torch.zeros(batch, rounds_room, dtype=torch.long, device=device)
    round_size.scatter_add_(1, light_depth, owned)

    parent_slot = torch.where(parent < 0, -1, _gather(slot, parent))
    elements = torch.zeros(batch, 4, 2 * size + 1, dtype=torch.long, device=device)
    elements[:, SLOT:LINK + 1] = -1
    elements[:, KIND] = PADDING
    vertex_rows = torch.stack([vertex, slot, parent_slot, torch.where(head, HEAD, PATH_VERTEX)], dim=1)
    entry_rows = torch.stack([vertex, torch.full_like(slot, -1), slot, torch.full_like(slot, ENTRY)], dim=1)
    elements.scatter_(2, element.unsqueeze(1).expand(-1, 4, -1), vertex_rows)
    elements.scatter_(2, entry.unsqueeze(1).expand(-1, 4, -1), entry_rows)
    rounds = torch.zeros(batch, rounds_room + 1, dtype=torch.int32, device=device)
    rounds[:, 1:] = torch.cumsum(round_size, dim=1)
    return order, ScanLayout(elements[:, :, :2 * size].to(torch.int32), rounds)


def _plan(rows: torch.Tensor, num_vertices: int, preferred: torch.Tensor):
    if rows.is_cuda:
        from . import triton_plan  # the same plan in a few kernels (imported late: it imports this module)

        if triton_plan.AVAILABLE:
            return triton_plan.plan(rows, num_vertices, preferred)
    return _plan_with_tensor_ops(rows, num_vertices, preferred)


def _plan_with_tensor_ops(rows: torch.Tensor, num_vertices: int, preferred: torch.Tensor):
    in_range = (rows >= 0) & (rows < num_vertices)
    torch._assert_async((in_range.all(dim=-1) | (rows == -1).all(dim=-1)).all(),
                        "tree_scan: the tree names a vertex out of range")
    tour = _EulerTour(rows, num_vertices, preferred)
    _check_forest(tour, num_vertices)
    order, layout = _heavy_path_layout(tour, num_vertices, preferred)
    return order, tour.parent, layout


def root_forest(tree: torch.Tensor, num_vertices: int, root: int = 0):
    """Roots the forest ``tree (B, R, 2)`` (vertex pairs; ``(-1, -1)`` rows are padding).

    The component holding ``root`` is rooted there, every other component at its smallest
    vertex: the parents are those of ``tree_scan.bfs``. Returns ``(order, parent, layout)``
    with ``order`` the depth-first order, heavy child first (every parent before its
    children), and the :class:`ScanLayout`.
    """
    batch = tree.shape[0]
    preferred = torch.zeros(batch, num_vertices, dtype=torch.bool, device=tree.device)
    preferred[:, root] = True
    return _plan(tree, num_vertices, preferred)


def layout_from_parent(parent: torch.Tensor) -> ScanLayout:
    """The :class:`ScanLayout` of the forest given by ``parent (B, V)`` (-1 at roots)."""
    batch, size = parent.shape
    parent = parent.long()
    child = torch.arange(size, device=parent.device).expand(batch, -1)
    is_root = parent < 0
    rows = torch.where(is_root.unsqueeze(-1), -1, torch.stack([child, parent], dim=-1))
    _, planned_parent, layout = _plan(rows, size, is_root)
    torch._assert_async((planned_parent == parent).all(),
                        "tree_scan: `parent` does not describe a forest (a cycle, or a vertex out of range)")
    return layout


def _make_chain(length: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, ScanLayout]:
    # Made on the device (no host-to-device copy: nothing waits for the GPU).
    vertex = torch.arange(length, device=device)
    kind = torch.where(vertex == 0, HEAD, PATH_VERTEX)
    elements = torch.stack([vertex, vertex, vertex - 1, kind]).to(torch.int32).unsqueeze(0)
    rounds = torch.stack([vertex[:1] * 0, vertex[:1] * 0 + length], dim=1).to(torch.int32)
    return vertex.unsqueeze(0), (vertex - 1).unsqueeze(0), ScanLayout(elements, rounds)


_cached_chain = functools.lru_cache(maxsize=64)(_make_chain)


def chain_layout(batch: int, length: int, device=None) -> tuple[torch.Tensor, torch.Tensor, ScanLayout]:
    """``(order, parent, layout)`` of the chain ``0 - 1 - ... - (L-1)`` rooted at 0, for every
    image of the batch: one heavy path, one round. Built once per (length, device) and shared
    through batch strides of 0 (made afresh while torch.compile or torch.export traces: the
    tensors they make stand for values and must not be kept)."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    tracing = torch.compiler.is_compiling() or torch._guards.detect_fake_mode() is not None
    order, parent, layout = (_make_chain if tracing else _cached_chain)(length, device)
    return (order.expand(batch, -1), parent.expand(batch, -1),
            ScanLayout(layout.elements.expand(batch, -1, -1), layout.rounds.expand(batch, -1)))
