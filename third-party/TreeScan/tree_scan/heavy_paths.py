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
``torch.compile``, and the CPU tests exercise exactly the code the GPU runs. The tree is
rooted by an Euler tour ranked by pointer jumping, which gives parents, subtree sizes and
the heavy-first depth-first order in O(log V) rounds, whatever the depth of the tree.
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


class _EulerTour:
    """The forest given by undirected edges, rooted, with its Euler tour ranked.

    Vertex keys decide the roots: every connected component is rooted at its vertex of
    smallest key. ``preferred`` vertices have keys below all others, so a component holding
    one is rooted there; any other component at its smallest vertex (as ``tree_scan.bfs``
    roots a forest).
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
        by_source = torch.sort(source_key * arcs + arc_id, dim=1).indices
        position = torch.empty_like(by_source).scatter_(1, by_source, arc_id.contiguous())
        degree = torch.zeros(batch, size + 1, dtype=torch.long, device=device)
        degree.scatter_add_(1, source_key, torch.ones_like(source_key))
        first = torch.cumsum(degree, dim=1) - degree

        # The tour: having come to v along u -> v, leave along the arc after v -> u in v's
        # list, cyclically. Around a tree this visits every arc once, as one cycle.
        reverse_position = _gather(position, self.reverse)
        following = reverse_position + 1
        list_end = _gather(first, self.target) + _gather(degree, self.target)
        following = torch.where(following >= list_end, _gather(first, self.target), following)
        successor = torch.where(self.real, _gather(by_source, following), -1)

        # Components: the smallest source key around each cycle, by doubling the jump.
        vertex = torch.arange(size, device=device).expand(batch, -1)
        key = torch.where(preferred, vertex, vertex + size)
        self.vertex_key = key
        label = torch.where(self.real, _gather(key, self.source), 2 * size)
        jump = successor
        for _ in range(_doubling_rounds(arcs)):
            live = jump >= 0
            label = torch.where(live, torch.minimum(label, _gather(label, jump)), label)
            jump = torch.where(live, _gather(jump, jump), jump)
        self.has_arcs = degree[:, :size] > 0
        first_arc = _gather(by_source, first[:, :size])  # of every vertex that has arcs
        root_key = torch.where(self.has_arcs, _gather(label, first_arc), key)
        self.root = root_key % size  # the root of every vertex's component
        self.is_root = self.root == vertex

        # Cut every cycle just before the root's first arc, and rank the arcs from the cut.
        starts = self.real & (position == _gather(first, self.source)) & _gather(self.is_root, self.source)
        next_arc = torch.where((successor >= 0) & _gather(starts, successor), -1, successor)
        to_end = (next_arc >= 0).long()
        jump = next_arc
        for _ in range(_doubling_rounds(arcs)):
            live = jump >= 0
            to_end = torch.where(live, to_end + _gather(to_end, jump), to_end)
            jump = torch.where(live, _gather(jump, jump), jump)
        # Arcs in each component's tour, indexed by its root (0 where the root has no arcs).
        self.tour_length = torch.where(self.is_root & self.has_arcs, _gather(to_end, first_arc) + 1, 0)
        self.component = _gather(self.root, self.source)
        self.position = _gather(self.tour_length, self.component) - 1 - to_end

        # Rooted: the arc u -> v is walked down before it is walked up; u is v's parent.
        self.down = self.real & (self.position < _gather(self.position, self.reverse))
        into = torch.where(self.down, self.target, size)
        self.parent = torch.full((batch, size + 1), -1, dtype=torch.long, device=device)
        self.parent.scatter_(1, into, self.source)
        self.parent = self.parent[:, :size]
        self.arc_into = torch.zeros(batch, size + 1, dtype=torch.long, device=device)
        self.arc_into.scatter_(1, into, arc_id.contiguous())
        self.arc_into = self.arc_into[:, :size]
        up = _gather(self.position, self.arc_into ^ 1) - _gather(self.position, self.arc_into)
        self.subtree_size = torch.where(self.is_root, self.tour_length // 2 + 1, (up + 1) // 2)
        # Tours laid end to end (in the order of their roots' numbers) for prefix sums.
        start = torch.cumsum(self.tour_length, dim=1) - self.tour_length
        self.tour_index = _gather(start, self.component) + self.position
        self.edges_given = real[:, :-1].sum(dim=1)

    def sum_over_ancestors(self, value: torch.Tensor) -> torch.Tensor:
        """``sum of value[u]`` over the non-root vertices ``u`` on the path from the root to
        ``v``, ``v`` included (0 at roots): a prefix sum over the tour, where walking down
        into ``u`` adds ``value[u]`` and walking back up subtracts it."""
        batch, arcs = self.source.shape
        child = torch.where(self.down, self.target, self.source)
        step = torch.where(self.down, 1, -1) * _gather(value, child)
        slot = torch.where(self.real, self.tour_index, arcs)
        tour = torch.zeros(batch, arcs + 1, dtype=value.dtype, device=value.device)
        tour.scatter_(1, slot, torch.where(self.real, step, 0))
        running = torch.cumsum(tour, dim=1)
        return torch.where(self.is_root, 0, _gather(running, _gather(self.tour_index, self.arc_into)))


def _check_forest(tour: _EulerTour, num_vertices: int) -> None:
    """A forest of T trees over V vertices has V - T edges; more means a cycle, a repeated
    edge or a self-loop. Asserted on the device, without waiting for it."""
    trees = tour.is_root.sum(dim=1)
    torch._assert_async(
        (tour.edges_given == num_vertices - trees).all(),
        "tree_scan: the tree has a cycle, a repeated edge or a self-loop (it is not a forest)",
    )


def _heavy_path_layout(tour: _EulerTour, num_vertices: int, root_key: torch.Tensor) -> tuple[torch.Tensor, ScanLayout]:
    """The depth-first order (heavy child first) and the element layout of a rooted forest;
    its roots come in the order of ``root_key``."""
    size = num_vertices
    device = tour.parent.device
    batch = tour.parent.shape[0]
    vertex = torch.arange(size, device=device).expand(batch, -1)
    is_root, parent, subtree = tour.is_root, tour.parent, tour.subtree_size

    # The heavy child of every vertex: the largest subtree, the smallest vertex among equals.
    heaviness = subtree * (size + 1) + (size - vertex)
    group = torch.where(is_root, size, parent)  # roots are the children of one virtual vertex
    heaviest = torch.zeros(batch, size + 1, dtype=torch.long, device=device)
    heaviest.scatter_reduce_(1, group, heaviness, reduce="amax")
    light = ~is_root & (heaviness != _gather(heaviest, group))
    head = is_root | light

    # Depth-first order, heavy child first, so that every heavy path is a run of it:
    # a child comes 1 + (the sizes of the siblings before it) after its parent. Roots come
    # in the order of their keys (the preferred root first), the others by vertex.
    rank_in_group = torch.where(is_root, root_key, light.long() * size + vertex)
    siblings = torch.sort(group * 2 * size + rank_in_group, dim=1).indices
    sizes = _gather(subtree, siblings)
    before = torch.cumsum(sizes, dim=1) - sizes
    sorted_group = _gather(group, siblings)
    starts_group = torch.ones_like(sorted_group, dtype=torch.bool)
    starts_group[:, 1:] = sorted_group[:, 1:] != sorted_group[:, :-1]
    place = torch.arange(size, device=device).expand(batch, -1)
    group_start = torch.cummax(torch.where(starts_group, place, 0), dim=1).values
    offset_sorted = before - _gather(before, group_start) + (sorted_group != size).long()
    offset = torch.empty_like(offset_sorted).scatter_(1, siblings, offset_sorted)
    preorder = _gather(offset, tour.root) + tour.sum_over_ancestors(offset)
    light_depth = tour.sum_over_ancestors(light.long())
    order = torch.empty_like(preorder).scatter_(1, preorder, vertex.contiguous())

    # Elements: vertex v sorts at (depth, preorder(v), 0); the entry of a light child c at
    # (depth(p), preorder(p), preorder(c)) with p its parent, i.e. after p, before p's heavy child.
    owner = parent.clamp(min=0)
    vertex_key = (light_depth * size + preorder) * size
    entry_key = (_gather(light_depth, owner) * size + _gather(preorder, owner)) * size + preorder
    never = torch.iinfo(torch.long).max
    keys = torch.cat([vertex_key, torch.where(light, entry_key, never)], dim=1)
    keys, candidate = torch.sort(keys, dim=1)
    exists = keys != never
    is_vertex = exists & (candidate < size)
    element_vertex = torch.where(exists, candidate % size, 0)
    slot = torch.where(is_vertex, torch.cumsum(is_vertex.long(), dim=1) - 1, -1)
    slot_of_vertex = torch.zeros(batch, size + 1, dtype=torch.long, device=device)
    slot_of_vertex.scatter_(1, torch.where(is_vertex, element_vertex, size), slot)
    parent_slot = torch.where(_gather(parent, element_vertex) >= 0,
                              _gather(slot_of_vertex, _gather(parent, element_vertex)), -1)
    link = torch.where(is_vertex, parent_slot, torch.where(exists, _gather(slot_of_vertex, element_vertex), -1))
    kind = torch.where(is_vertex, _gather(head, element_vertex).long(), torch.where(exists, ENTRY, PADDING))
    elements = torch.stack([element_vertex, slot, link, kind], dim=1).to(torch.int32)

    rounds_room = num_rounds(size)
    depth_of_element = torch.where(exists, keys // (size * size), rounds_room)
    counts = torch.zeros(batch, rounds_room + 1, dtype=torch.long, device=device)
    counts.scatter_add_(1, depth_of_element, torch.ones_like(depth_of_element))
    rounds = torch.zeros(batch, rounds_room + 1, dtype=torch.int32, device=device)
    rounds[:, 1:] = torch.cumsum(counts[:, :rounds_room], dim=1)
    return order, ScanLayout(elements, rounds)


def _plan(rows: torch.Tensor, num_vertices: int, preferred: torch.Tensor):
    in_range = (rows >= 0) & (rows < num_vertices)
    torch._assert_async((in_range.all(dim=-1) | (rows == -1).all(dim=-1)).all(),
                        "tree_scan: the tree names a vertex out of range")
    tour = _EulerTour(rows, num_vertices, preferred)
    _check_forest(tour, num_vertices)
    order, layout = _heavy_path_layout(tour, num_vertices, tour.vertex_key)
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


@functools.lru_cache(maxsize=64)
def _chain(length: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, ScanLayout]:
    # Made on the device (no host-to-device copy: nothing waits for the GPU).
    vertex = torch.arange(length, device=device)
    kind = torch.where(vertex == 0, HEAD, PATH_VERTEX)
    elements = torch.stack([vertex, vertex, vertex - 1, kind]).to(torch.int32).unsqueeze(0)
    rounds = torch.stack([vertex[:1] * 0, vertex[:1] * 0 + length], dim=1).to(torch.int32)
    return vertex.unsqueeze(0), (vertex - 1).unsqueeze(0), ScanLayout(elements, rounds)


def chain_layout(batch: int, length: int, device=None) -> tuple[torch.Tensor, torch.Tensor, ScanLayout]:
    """``(order, parent, layout)`` of the chain ``0 - 1 - ... - (L-1)`` rooted at 0, for every
    image of the batch: one heavy path, one round. Built once per (length, device) and shared
    through batch strides of 0."""
    order, parent, layout = _chain(length, torch.device(device) if device is not None else torch.device("cpu"))
    return (order.expand(batch, -1), parent.expand(batch, -1),
            ScanLayout(layout.elements.expand(batch, -1, -1), layout.rounds.expand(batch, -1)))
