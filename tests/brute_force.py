"""Slow, obviously correct definitions the operators are tested against.

Pure Python loops over one image at a time: Kruskal's algorithm for the minimum
spanning tree, a deque for the breadth-first order, and the O(L^2) path-product
definition of the scans.
"""

from __future__ import annotations

import math
from collections import deque

import torch


def kruskal(edges: list[tuple[int, int]], weights: list[float], num_vertices: int) -> list[tuple[int, int]]:
    """Tree edges, in increasing candidate index, of the MST under the (weight, index) order (NaN last)."""
    parent = list(range(num_vertices))

    def find(v):
        while parent[v] != v:
            v = parent[v]
        return v

    def key(e):
        w = weights[e]
        return (1, 0.0, e) if math.isnan(w) else (0, w, e)

    chosen = []
    for e in sorted(range(len(edges)), key=key):
        ru, rv = find(edges[e][0]), find(edges[e][1])
        if ru != rv:
            parent[ru] = rv
            chosen.append(e)
    return [edges[e] for e in sorted(chosen)]


def mst_batch(edge_index: torch.Tensor, edge_weight: torch.Tensor, num_vertices: int) -> torch.Tensor:
    """``kruskal`` over a batch, padded with (-1, -1) rows to (B, V-1, 2)."""
    trees = []
    for b in range(edge_index.shape[0]):
        tree = kruskal([tuple(e) for e in edge_index[b].tolist()], edge_weight[b].tolist(), num_vertices)
        tree += [(-1, -1)] * (num_vertices - 1 - len(tree))
        trees.append(tree)
    return torch.tensor(trees, dtype=torch.long).view(edge_index.shape[0], num_vertices - 1, 2)


def bfs_one(tree: list[tuple[int, int]], num_vertices: int, root: int) -> tuple[list[int], list[int]]:
    """FIFO order (neighbours in tree-row order; unreached vertices start new trees) and parents."""
    neighbours = [[] for _ in range(num_vertices)]
    for u, v in tree:
        if u == -1:
            continue
        neighbours[u].append(v)
        neighbours[v].append(u)
    order, parent, seen = [], [-1] * num_vertices, [False] * num_vertices
    for start in [root] + list(range(num_vertices)):
        if seen[start]:
            continue
        seen[start] = True
        queue = deque([start])
        while queue:
            u = queue.popleft()
            order.append(u)
            for n in neighbours[u]:
                if not seen[n]:
                    seen[n] = True
                    parent[n] = u
                    queue.append(n)
    return order, parent


def bfs_batch(tree: torch.Tensor, num_vertices: int, root: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    results = [bfs_one([tuple(e) for e in tree[b].tolist()], num_vertices, root) for b in range(tree.shape[0])]
    return torch.tensor([r[0] for r in results]), torch.tensor([r[1] for r in results])


def path_products(parent: list[int], weights: torch.Tensor) -> torch.Tensor:
    """``S[i, j, c]``: product of the child weights on the tree path between i and j (0 across trees)."""
    num_vertices, channels = len(parent), weights.shape[1]
    neighbours = [[] for _ in range(num_vertices)]
    for v, p in enumerate(parent):
        if p >= 0:
            neighbours[v].append((p, v))  # the edge (v, p) carries w[v]
            neighbours[p].append((v, v))
    products = torch.zeros(num_vertices, num_vertices, channels, dtype=torch.float64)
    for i in range(num_vertices):
        products[i, i] = 1.0
        stack, seen = [i], {i}
        while stack:
            u = stack.pop()
            for n, carrier in neighbours[u]:
                if n not in seen:
                    seen.add(n)
                    products[i, n] = products[i, u] * weights[carrier]
                    stack.append(n)
    return products


def subtree_mask(parent: list[int]) -> torch.Tensor:
    """``M[i, j]`` = 1 when j lies in the subtree of i (j itself included)."""
    num_vertices = len(parent)
    mask = torch.zeros(num_vertices, num_vertices, dtype=torch.float64)
    for j in range(num_vertices):
        v = j
        while v >= 0:
            mask[v, j] = 1.0
            v = parent[v]
    return mask


def scan_by_definition(x: torch.Tensor, weight: torch.Tensor, parent: torch.Tensor, causal: bool) -> torch.Tensor:
    """``out_i = sum_j S(i, j) x_j`` (all roots) or over j in subtree(i) (causal), in float64."""
    out = torch.empty(x.shape, dtype=torch.float64)
    for b in range(x.shape[0]):
        parents = parent[b].tolist()
        products = path_products(parents, weight[b].double().T)  # (L, L, C)
        if causal:
            products = products * subtree_mask(parents).unsqueeze(-1)
        out[b] = torch.einsum("ijc,cj->ci", products, x[b].double())
    return out


def random_tree(num_vertices: int, generator: torch.Generator) -> torch.Tensor:
    """A random labelled tree as (V-1, 2) edges in random order and orientation."""
    labels = torch.randperm(num_vertices, generator=generator)
    edges = []
    for k in range(1, num_vertices):
        attach = int(torch.randint(0, k, (1,), generator=generator))
        pair = [int(labels[k]), int(labels[attach])]
        if bool(torch.rand(1, generator=generator) < 0.5):
            pair.reverse()
        edges.append(pair)
    edges = torch.tensor(edges, dtype=torch.long).view(-1, 2)
    return edges[torch.randperm(len(edges), generator=generator)] if len(edges) else edges


def heavy_path_plan(parent: list[int], roots_first: list[int] = (), row_of: list[int] | None = None
                    ) -> tuple[list[int], list[tuple[str, int]], list[int]]:
    """The heavy-path plan of ``tree_scan.heavy_paths``, walked vertex by vertex.

    Returns the depth-first order (heavy child first, then the light children in the
    order of ``row_of[child]``, the tree row joining a child to its parent (default: the
    child's number); the roots in ``roots_first`` first, then the others by vertex), the
    elements (``("vertex", v)`` or ``("entry", c)``) sorted by light depth, path and
    position, and the first element of every light depth (plus the end).
    """
    num_vertices = len(parent)
    row_of = list(range(num_vertices)) if row_of is None else row_of
    children = [[] for _ in range(num_vertices)]
    roots = []
    for v, p in enumerate(parent):
        (children[p] if p >= 0 else roots).append(v)
    roots = [r for r in roots_first if r in roots] + [r for r in roots if r not in roots_first]
    size = [1] * num_vertices
    for v in reversed(_preorder(children, roots)):
        if parent[v] >= 0:
            size[parent[v]] += size[v]
    heavy = [max(kids, key=lambda c: (size[c], -c)) if kids else -1 for kids in children]
    ordered = [[heavy[v]] + sorted((c for c in children[v] if c != heavy[v]), key=lambda c: row_of[c])
               if children[v] else [] for v in range(num_vertices)]
    order = _preorder(ordered, roots)
    depth = [0] * num_vertices
    heads = []
    for v in order:  # parents first
        if parent[v] < 0:
            heads.append(v)
        elif heavy[parent[v]] != v:
            depth[v] = depth[parent[v]] + 1
            heads.append(v)
        else:
            depth[v] = depth[parent[v]]
    elements, starts = [], []
    for level in range(num_vertices.bit_length()):
        starts.append(len(elements))
        for head in (h for h in heads if depth[h] == level):  # heads in depth-first order
            v = head
            while v >= 0:
                elements.append(("vertex", v))
                elements += [("entry", c) for c in ordered[v][1:]]
                v = heavy[v]
    starts.append(len(elements))
    return order, elements, starts


def _preorder(children: list[list[int]], roots: list[int]) -> list[int]:
    order, stack = [], list(reversed(roots))
    while stack:
        v = stack.pop()
        order.append(v)
        stack += reversed(children[v])
    return order
