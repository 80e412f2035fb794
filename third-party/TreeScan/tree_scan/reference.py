"""Plain-PyTorch ground truth for the tree operators.

Every function here computes exactly what its compiled twin in ``csrc/`` computes,
written for reading rather than speed: each works on any device, vectorised over
the batch and channels, and loops only over the levels of the tree (or the rounds
of Borůvka's algorithm). The tests compare the kernels against these functions, and
``tree_scan._library`` falls back to them where no compiled kernel is available.

Conventions (SPEC §1-2):
  * a tree is a ``(B, V-1, 2)`` tensor of vertex pairs; ``(-1, -1)`` rows pad a
    spanning forest;
  * ``order (B, V)`` lists the vertices breadth-first; ``parent (B, V)`` gives each
    vertex's parent (-1 at a root);
  * the weight of the edge between ``v`` and its parent is the child's ``w[..., v]``.
"""

from __future__ import annotations

import torch

__all__ = [
    "grid_edge_weights",
    "minimum_spanning_tree",
    "bfs",
    "scan_all_roots",
    "scan_causal",
    "scan_all_roots_backward",
    "scan_causal_backward",
]


def _dissimilarity(a: torch.Tensor, b: torch.Tensor, metric: str) -> torch.Tensor:
    """Per-edge weight between feature columns ``a`` and ``b`` (B, C, N) -> (B, N)."""
    if metric == "cosine":
        # exp(-cos) as the release computes it; exp is increasing, so the tree is that of -cos.
        return torch.exp(-torch.cosine_similarity(a, b, dim=1))
    if metric == "euclidean":
        return (a - b).square().sum(dim=1)
    if metric == "manhattan":
        return (a - b).abs().sum(dim=1)
    raise ValueError(f"grid_edge_weights: metric must be cosine, euclidean or manhattan, got {metric!r}")


def grid_edge_weights(guide: torch.Tensor, metric: str) -> torch.Tensor:
    """``(B, E)`` weights of the grid edges: vertical edges, then horizontal ones, raster order.

    float32 (float64 for a float64 guide). "cosine": ``exp(-cos)`` with each vector
    normalised by ``max(|f|, 1e-8)`` as ``torch.cosine_similarity`` does; "euclidean":
    squared L2 distance; "manhattan": L1 distance.
    """
    guide = guide.to(torch.promote_types(guide.dtype, torch.float32))
    batch, channels, height, width = guide.shape
    # Sizes spelled out rather than -1: B or C may be 0.
    vertical = _dissimilarity(guide[:, :, :-1, :].reshape(batch, channels, (height - 1) * width),
                              guide[:, :, 1:, :].reshape(batch, channels, (height - 1) * width), metric)
    horizontal = _dissimilarity(guide[:, :, :, :-1].reshape(batch, channels, height * (width - 1)),
                                guide[:, :, :, 1:].reshape(batch, channels, height * (width - 1)), metric)
    return torch.cat([vertical, horizontal], dim=1)


def minimum_spanning_tree(edge_index: torch.Tensor, edge_weight: torch.Tensor, num_vertices: int) -> torch.Tensor:
    """Borůvka's algorithm: every component joins its cheapest outgoing edge, until none is left.

    Edges are ranked by (weight, index), with NaN weights last, so the tree is unique.
    Returns the tree edges in increasing candidate index, ``(-1, -1)`` rows after them
    when the graph is disconnected.
    """
    batch, num_edges = edge_weight.shape
    device = edge_index.device
    # Rank of every edge in its image by (weight, index), NaN after +inf: a stable sort
    # by weight (NaN read as +inf, -0.0 as +0.0), then a stable sort moving NaN last.
    weight = edge_weight.double() + 0.0
    by_weight = torch.sort(torch.where(weight.isnan(), float("inf"), weight), dim=1, stable=True).indices
    nan_flags = torch.gather(weight.isnan(), 1, by_weight).to(torch.int8)
    sorted_edges = torch.gather(by_weight, 1, torch.sort(nan_flags, dim=1, stable=True).indices)
    rank = torch.empty_like(sorted_edges)
    rank.scatter_(1, sorted_edges, torch.arange(num_edges, device=device).expand(batch, -1).contiguous())

    # Vertices and edges of all images in one graph: vertex b*V + v, edge b*E + e.
    offsets = (torch.arange(batch, device=device) * num_vertices).view(batch, 1)
    u = (edge_index[..., 0].long() + offsets).reshape(-1)
    v = (edge_index[..., 1].long() + offsets).reshape(-1)
    rank = rank.reshape(-1)
    edge_of_rank = (sorted_edges + torch.arange(batch, device=device).view(batch, 1) * num_edges).reshape(-1)
    image_of_vertex = torch.arange(batch * num_vertices, device=device) // num_vertices

    component = torch.arange(batch * num_vertices, device=device)
    in_tree = torch.zeros(batch * num_edges, dtype=torch.bool, device=device)
    no_edge = num_edges
    while True:
        cu, cv = component[u], component[v]
        crossing = cu != cv
        if not bool(crossing.any()):
            break
        # Cheapest crossing edge of every component (by rank: one per image).
        cheapest = torch.full((batch * num_vertices,), no_edge, device=device)
        cheapest.scatter_reduce_(0, cu[crossing], rank[crossing], reduce="amin")
        cheapest.scatter_reduce_(0, cv[crossing], rank[crossing], reduce="amin")
        roots = torch.nonzero(cheapest < no_edge).squeeze(1)
        chosen = edge_of_rank[image_of_vertex[roots] * num_edges + cheapest[roots]]
        in_tree[chosen] = True
        # Hook every component onto the one across its edge; two components that chose
        # the same edge point at each other, and the smaller becomes the root.
        pointer = torch.arange(batch * num_vertices, device=device)
        across = torch.where(component[u[chosen]] == roots, component[v[chosen]], component[u[chosen]])
        pointer[roots] = across
        mutual = (pointer[across] == roots) & (roots < across)
        pointer[roots[mutual]] = roots[mutual]
        while True:
            jumped = pointer[pointer]
            if torch.equal(jumped, pointer):
                break
            pointer = jumped
        component = pointer[component]

    # Tree edges in candidate order: sort selected edges first, keep the first V-1.
    in_tree = in_tree.view(batch, num_edges)
    position = torch.arange(num_edges, device=device).expand(batch, -1)
    first = torch.sort(torch.where(in_tree, position, position + num_edges), dim=1).values
    # fewer candidates than tree rows: the missing rows are padding too
    first = torch.nn.functional.pad(first, (0, max(0, num_vertices - 1 - num_edges)), value=num_edges)
    first = first[:, : num_vertices - 1]
    tree = torch.full((batch, num_vertices - 1, 2), -1, dtype=torch.long, device=device)
    if num_edges == 0:
        return tree  # nothing to gather from: every row is padding
    found = first < num_edges
    rows = torch.gather(edge_index.long(), 1, (first % num_edges).unsqueeze(-1).expand(-1, -1, 2))
    return torch.where(found.unsqueeze(-1), rows, tree)


def bfs(tree: torch.Tensor, num_vertices: int, root: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Breadth-first order of a tree (or forest), one level at a time.

    The order is that of a FIFO queue started at ``root`` whose vertices queue their
    neighbours in increasing order of the tree row joining them; vertices the root
    cannot reach start new trees, in increasing vertex order.
    """
    batch, rows, _ = tree.shape
    device = tree.device
    if batch == 0:
        empty = torch.empty((0, num_vertices), dtype=torch.long, device=device)
        return empty, empty.clone()
    size = batch * num_vertices
    tree = tree.long()
    real = tree[..., 0] >= 0
    offsets = (torch.arange(batch, device=device) * num_vertices).view(batch, 1)
    row_id = torch.arange(rows, device=device).expand(batch, -1)
    # Directed arcs both ways, sorted by (source, row): each vertex's neighbours in row order.
    source = torch.cat([tree[..., 0] + offsets, tree[..., 1] + offsets], 1)[torch.cat([real, real], 1)]
    target = torch.cat([tree[..., 1] + offsets, tree[..., 0] + offsets], 1)[torch.cat([real, real], 1)]
    arc_row = torch.cat([row_id, row_id], 1)[torch.cat([real, real], 1)]
    arcs = torch.sort(source * max(rows, 1) + arc_row).indices
    source, target = source[arcs], target[arcs]
    degree = torch.bincount(source, minlength=size)
    first_arc = torch.cumsum(degree, 0) - degree

    visited = torch.zeros(size, dtype=torch.bool, device=device)
    parent = torch.full((size,), -1, dtype=torch.long, device=device)
    levels = []
    frontier = torch.arange(batch, device=device) * num_vertices + root
    while True:
        if frontier.numel() == 0:
            unvisited = ~visited.view(batch, num_vertices)
            pending = unvisited.any(1)
            if not bool(pending.any()):
                break
            # The smallest unreached vertex of each unfinished image starts a new tree.
            frontier = (torch.nonzero(pending).squeeze(1) * num_vertices
                        + unvisited[pending].to(torch.int8).argmax(1))
        visited[frontier] = True
        levels.append(frontier)
        # All arcs out of the frontier, in (frontier position, row) order.
        count = degree[frontier]
        arc = torch.repeat_interleave(first_arc[frontier], count)
        arc += torch.arange(arc.numel(), device=device) - torch.repeat_interleave(torch.cumsum(count, 0) - count, count)
        child, via = target[arc], source[arc]
        fresh = ~visited[child]
        child, via = child[fresh], via[fresh]
        # A vertex reached twice in one level belongs to the first arc that reached it.
        position = torch.arange(child.numel(), device=device)
        first_reach = torch.full((size,), child.numel(), dtype=torch.long, device=device)
        first_reach.scatter_reduce_(0, child, position, reduce="amin")
        keep = first_reach[child] == position
        child, via = child[keep], via[keep]
        parent[child] = via
        frontier = child

    # A forest of T trees over V vertices has V - T edges; more means a cycle, a
    # repeated edge or a self-loop.
    trees = (parent.view(batch, num_vertices) < 0).sum(1)
    edges_given = real.sum(1)
    bad = torch.nonzero(edges_given != num_vertices - trees).flatten()
    if bad.numel():
        b = int(bad[0])
        raise ValueError(f"bfs: tree[{b}] is not a tree (nor a forest): its {int(edges_given[b])} edges span "
                         f"{num_vertices - int(trees[b])} (a cycle, a repeated edge or a self-loop)")
    everyone = torch.cat(levels)
    # Levels were appended image by image within each level; a stable sort by image
    # keeps, for every image, its own vertices in queue order.
    everyone = everyone[torch.sort(everyone // num_vertices, stable=True).indices]
    order = (everyone % num_vertices).view(batch, num_vertices)
    parent = parent.view(batch, num_vertices)
    parent = torch.where(parent >= 0, parent - offsets, parent)
    return order, parent


def _levels(order: torch.Tensor, parent: torch.Tensor) -> list[torch.Tensor]:
    """Flat (image * V + vertex) indices of the vertices at depth 1, 2, ... of every tree."""
    batch, length = order.shape
    offsets = (torch.arange(batch, device=order.device) * length).view(batch, 1)
    flat_parent = torch.where(parent >= 0, parent + offsets, -1).reshape(-1)
    # Depth by pointer jumping: `hops[v]` edges separate v from `ancestor[v]`; each
    # round doubles the jump until every vertex points past its root.
    hops = (flat_parent >= 0).long()
    ancestor = flat_parent
    for _ in range(max(length, 2).bit_length() + 1):
        if not bool((ancestor >= 0).any()):
            break
        jumping = ancestor >= 0
        target = ancestor.clamp(min=0)
        hops, ancestor = torch.where(jumping, hops + hops[target], hops), torch.where(jumping, ancestor[target], ancestor)
    else:
        raise ValueError("tree scan: `parent` does not describe a forest (it has a cycle)")
    by_depth = torch.sort(hops, stable=True).indices
    counts = torch.bincount(hops).tolist()
    return list(torch.split(by_depth, counts))[1:]


class _Rows:
    """A (B, C, L) scan problem as rows (image * L + vertex) x channels, with its tree levels."""

    def __init__(self, x: torch.Tensor, order: torch.Tensor, parent: torch.Tensor):
        self.batch, self.channels, self.length = x.shape
        self.acc = torch.promote_types(x.dtype, torch.float32)
        offsets = (torch.arange(self.batch, device=x.device) * self.length).view(self.batch, 1)
        self.parent = torch.where(parent >= 0, parent + offsets, -1).reshape(-1)
        self.levels = _levels(order, parent)

    def rows(self, t: torch.Tensor) -> torch.Tensor:
        return t.to(self.acc).permute(0, 2, 1).reshape(self.batch * self.length, self.channels)

    def unrows(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Back to (B, C, L), in the dtype and memory layout of ``like`` (as the kernels return)."""
        return torch.empty_like(like).copy_(t.view(self.batch, self.length, self.channels).permute(0, 2, 1))

    def sweep_up(self, a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Leaf -> root: ``a_p += w_v a_v``, deepest level first."""
        for level in reversed(self.levels):
            a = a.index_add(0, self.parent[level], w[level] * a[level])
        return a

    def sweep_down_all_roots(self, a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Root -> leaf: ``out_v = (1 - w_v^2) a_v + w_v out_p``, shallowest level first."""
        for level in self.levels:
            wl = w[level]
            a = a.index_copy(0, level, (1 - wl * wl) * a[level] + wl * a[self.parent[level]])
        return a

    def sweep_down_causal(self, g: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Root -> leaf: ``G_v = g_v + w_v G_p`` (the gradient of the causal scan)."""
        for level in self.levels:
            g = g.index_copy(0, level, g[level] + w[level] * g[self.parent[level]])
        return g

    def at_parent(self, t: torch.Tensor) -> torch.Tensor:
        """Row v -> the row of v's parent (zeros at roots)."""
        return torch.where((self.parent >= 0).unsqueeze(1), t[self.parent.clamp(min=0)], 0)


def scan_all_roots(x, edge_weight, order, parent):
    """``out_i = sum_j S(i, j) x_j`` for every vertex i (SPEC §2, vision)."""
    problem = _Rows(x, order, parent)
    w = problem.rows(edge_weight)
    return problem.unrows(problem.sweep_down_all_roots(problem.sweep_up(problem.rows(x), w), w), x)


def scan_causal(x, edge_weight, order, parent):
    """``out_i = sum_{j in subtree(i)} S(i, j) x_j`` (SPEC §2, language)."""
    problem = _Rows(x, order, parent)
    return problem.unrows(problem.sweep_up(problem.rows(x), problem.rows(edge_weight)), x)


def scan_all_roots_backward(grad_out, x, edge_weight, order, parent):
    """Gradients of :func:`scan_all_roots` (paper, Algorithm 1).

    S is symmetric, so ``grad_x`` is the scan of ``grad_out``. The paths through the
    edge (v, parent p) join v's subtree to the rest of the tree, which gives
    ``grad_w_v = ag_v (out_p - w_v a_v) + a_v (og_p - w_v ag_v)`` with a/out the two
    sweeps over x and ag/og those over grad_out.
    """
    problem = _Rows(x, order, parent)
    w = problem.rows(edge_weight)
    a = problem.sweep_up(problem.rows(x), w)
    ag = problem.sweep_up(problem.rows(grad_out), w)
    out, og = problem.sweep_down_all_roots(a, w), problem.sweep_down_all_roots(ag, w)
    grad_w = ag * (problem.at_parent(out) - w * a) + a * (problem.at_parent(og) - w * ag)
    grad_w = torch.where((problem.parent >= 0).unsqueeze(1), grad_w, 0)
    return problem.unrows(og, x), problem.unrows(grad_w, edge_weight)


def scan_causal_backward(grad_out, x, edge_weight, order, parent):
    """Gradients of :func:`scan_causal`: ``G_v = g_v + w_v G_p``, ``grad_x = G``, ``grad_w_v = G_p a_v``."""
    problem = _Rows(x, order, parent)
    w = problem.rows(edge_weight)
    a = problem.sweep_up(problem.rows(x), w)
    g = problem.sweep_down_causal(problem.rows(grad_out), w)
    grad_w = problem.at_parent(g) * a
    return problem.unrows(g, x), problem.unrows(grad_w, edge_weight)
