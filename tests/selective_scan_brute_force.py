"""The fused selective tree scan written out (SPEC §4), and random problems shaped as GrootL makes them.

Kept apart from the tests so that a subprocess can import it without the language model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

import tree_scan_lan


def random_problem(generator, batch, length, channels, state, dtype=torch.float32, delta_dtype=None, prompts=None):
    """Inputs shaped as GrootL makes them, and the language tree of random features."""
    acc = torch.float64 if dtype == torch.float64 else torch.float32

    def randn(*shape, dtype=dtype):
        return torch.randn(*shape, generator=generator, dtype=torch.float64).to(dtype)

    x = randn(batch, length, channels)
    delta = F.softplus(randn(batch, length, channels, dtype=acc) + 0.5).to(delta_dtype or acc)
    A = -torch.rand(channels, state, generator=generator, dtype=torch.float64).mul(2).add(0.1).to(acc)
    B, C = randn(batch, length, state), randn(batch, length, state)
    D = randn(channels, dtype=acc)
    if prompts is None:
        prompts = torch.randint(0, length + 1, (batch,), generator=generator)
    features = torch.randn(batch, 4, length, generator=generator)
    tree = tree_scan_lan.bfs(tree_scan_lan.language_tree(features, prompts))
    return x, delta, A, B, C, D, tree


def brute_force(x, delta, A, B, C, D, tree, tree_scale):
    """SPEC §4 written out, one row at a time: y and the final state, in float64."""
    x, delta, A, B, C, D = (t.double() for t in (x, delta, A, B, C, D))
    batch, length, _ = x.shape
    ys, finals = [], []
    for b in range(batch):
        u = delta[b].unsqueeze(-1) * B[b].unsqueeze(1) * x[b].unsqueeze(-1)  # (L, d, N)
        decay = torch.exp(delta[b].unsqueeze(-1) * A)
        chain, h = [], torch.zeros_like(u[0])
        for t in range(length):
            h = decay[t] * h + u[t]
            chain.append(h)
        if tree is None:
            states = [(1 + tree_scale) * h for h in chain]
        else:
            # Vertex v is token L-1-v; the edge from v to its parent carries the decay of token L-v.
            parent = tree.parent[b].tolist()
            subtree = [u[length - 1 - v].clone() for v in range(length)]
            for v in reversed(tree.order[b].tolist()):
                if parent[v] >= 0:
                    subtree[parent[v]] += decay[(length - v) % length] * subtree[v]
            states = [chain[t] + tree_scale * subtree[length - 1 - t] for t in range(length)]
        ys.append(torch.stack([(s * C[b, t]).sum(-1) for t, s in enumerate(states)]) + D * x[b])
        finals.append(states[-1])
    return torch.stack(ys), torch.stack(finals)
