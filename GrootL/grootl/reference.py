"""Plain-PyTorch ground truth for :class:`grootl.modeling.GrootLMixer`, one row at a time.

Written for reading, not speed, and independently of the ``tree_scan`` kernels: it lists the
candidate edges in the release's order, runs Kruskal's algorithm with a union-find, roots
the tree at vertex 0 by a depth-first walk and scans it vertex by vertex. Padded rows are
handled by dropping their pads. The tests compare the fast mixer against it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["reference_mixer_forward", "release_candidate_edges", "kruskal", "root_tree", "causal_tree_scan"]


def release_candidate_edges(seq_len: int, prompt_len: int) -> list[tuple[int, int]]:
    """The candidate edges of SPEC §1 over the flipped sequence, in the release's order."""
    if prompt_len <= 2 or seq_len < 3:
        return [(i, i + 1) for i in range(seq_len - 1)]
    edges = [(i, i + 1) for i in range(seq_len - prompt_len)]
    for i in range(seq_len - prompt_len, seq_len - 3):
        edges += [(i, i + 1), (i, i + 2), (i, i + 3)]
    return edges + [(seq_len - 3, seq_len - 2), (seq_len - 3, seq_len - 1), (seq_len - 2, seq_len - 1)]


def kruskal(edges: list[tuple[int, int]], weights: list[float], num_vertices: int) -> list[tuple[int, int]]:
    """Minimum spanning tree; equal weights are taken in list order."""
    parent = list(range(num_vertices))

    def find(v: int) -> int:
        while parent[v] != v:
            parent[v] = parent[parent[v]]
            v = parent[v]
        return v

    tree = []
    for index in sorted(range(len(edges)), key=lambda e: (weights[e], e)):
        a, b = find(edges[index][0]), find(edges[index][1])
        if a != b:
            parent[a] = b
            tree.append(edges[index])
    return tree


def root_tree(tree: list[tuple[int, int]], num_vertices: int, root: int = 0) -> tuple[list[int], list[int]]:
    """``(parent, order)``: each vertex's parent (-1 at the root) and a root-first order."""
    neighbours = [[] for _ in range(num_vertices)]
    for a, b in tree:
        neighbours[a].append(b)
        neighbours[b].append(a)
    parent = [-1] * num_vertices
    order, stack, seen = [], [root], {root}
    while stack:
        v = stack.pop()
        order.append(v)
        for n in neighbours[v]:
            if n not in seen:
                seen.add(n)
                parent[n] = v
                stack.append(n)
    return parent, order


def causal_tree_scan(x: torch.Tensor, w: torch.Tensor, parent: list[int], order: list[int]) -> torch.Tensor:
    """``out_v = x_v + sum over children c of w_c * out_c`` for ``x, w (L, C)``, leaves first."""
    out = [x[v] for v in range(x.shape[0])]
    for v in reversed(order):
        if parent[v] >= 0:
            out[parent[v]] = out[parent[v]] + w[v] * out[v]
    return torch.stack(out)


def _row(mixer, hidden: torch.Tensor, prompt_len: int, use_tree: bool, tree_scale: float) -> torch.Tensor:
    """The mixer on one unpadded row ``hidden (L, hidden_size)``."""
    seq_len = hidden.shape[0]
    dtype = hidden.dtype
    x, gate = mixer.in_proj(hidden).chunk(2, dim=-1)
    kernel = mixer.conv1d.weight.shape[-1]
    x = F.conv1d(F.pad(x.t().unsqueeze(0), (kernel - 1, 0)), mixer.conv1d.weight, mixer.conv1d.bias, groups=x.shape[-1])
    x = mixer.act(x[0].t())  # (L, d_inner)
    time_step, B, C = torch.split(
        mixer.x_proj(x), [mixer.time_step_rank, mixer.ssm_state_size, mixer.ssm_state_size], dim=-1
    )
    dt = F.softplus(time_step @ mixer.dt_proj.weight.t().float() + mixer.dt_proj.bias.float())  # (L, d_inner)
    A = -torch.exp(mixer.A_log.float())
    a_bar = torch.exp(dt.unsqueeze(-1) * A)  # (L, d_inner, N), token order
    u = dt.unsqueeze(-1) * B.float().unsqueeze(1) * x.float().unsqueeze(-1)

    # Mamba's recurrence, token by token: the chain scan.
    state = torch.zeros_like(u[0])
    chain = []
    for t in range(seq_len):
        state = a_bar[t] * state + u[t]
        chain.append(state)
    h = torch.stack(chain)

    if use_tree:
        # Vertex v is token L-1-v; the edge from v to its parent carries the decay of token L-v.
        x_flip = u.flip(0).reshape(seq_len, -1)
        w_flip = torch.roll(a_bar.flip(0), 1, dims=0).reshape(seq_len, -1)
        edges = release_candidate_edges(seq_len, prompt_len)
        weights = []
        for a, b in edges:
            fa, fb = x_flip[a].double(), x_flip[b].double()
            cosine = (fa @ fb) / (fa.norm() * fb.norm()).clamp_min(1e-8)
            weights.append(float(torch.exp(-cosine).detach()))  # the tree is not differentiated
        parent, order = root_tree(kruskal(edges, weights, seq_len), seq_len)
        tree = causal_tree_scan(x_flip, w_flip, parent, order).flip(0).reshape(h.shape)
        h = h + tree_scale * tree

    y = (h.to(dtype) @ C.to(dtype).unsqueeze(-1)).squeeze(-1)
    y = (y + x * mixer.D.float()) * F.silu(gate)
    return mixer.out_proj(y.to(dtype))


def reference_mixer_forward(
    mixer,
    hidden_states: torch.Tensor,
    prompt_lengths: list[int],
    attention_mask: torch.Tensor | None = None,
    use_tree: bool = True,
    tree_scale: float = 0.3,
) -> torch.Tensor:
    """``GrootLMixer.forward`` recomputed row by row; padded positions of the result are 0."""
    out = torch.zeros_like(hidden_states)
    for b in range(hidden_states.shape[0]):
        keep = (
            attention_mask[b].bool()
            if attention_mask is not None
            else torch.ones(hidden_states.shape[1], dtype=torch.bool, device=hidden_states.device)
        )
        out[b, keep] = _row(mixer, hidden_states[b, keep], int(prompt_lengths[b]), use_tree, tree_scale).to(out.dtype)
    return out
