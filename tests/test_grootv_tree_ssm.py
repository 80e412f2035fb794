"""Tree_SSM against a slow twin written from SPEC §3 with tree_scan.reference; trees of every variant."""

import pytest
import torch
import torch.nn.functional as F

import tree_scan
from grootv.models import GrootV, Tree_SSM
from tree_scan import reference


def randomise(ssm, generator):
    """Parameters away from their initial values, so that every one of them matters."""
    with torch.no_grad():
        for p in ssm.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, dtype=torch.float64).to(p.dtype) * 0.5)
        ssm.A_logs.copy_(torch.rand(ssm.A_logs.shape, generator=generator, dtype=torch.float64) - 0.5)
        ssm.dt_projs_bias.sub_(1.0)
    return ssm


def slow_tree_ssm(ssm, x, root="all", scan="tree", metric="cosine"):
    """SPEC §3 step by step, channels-first, with the reference MST / BFS / scans."""
    batch, height, width, _ = x.shape
    length, inner, rank = height * width, ssm.d_inner, ssm.dt_rank
    projected = torch.einsum("bhwc,oc->bohw", x, ssm.in_proj.weight)
    xc, z = projected[:, :inner], projected[:, inner:]
    xc = F.silu(F.conv2d(xc, ssm.conv2d.weight, padding=1, groups=inner))
    z = F.silu(z)
    xs = xc.reshape(batch, inner, length)
    x_dbl = torch.einsum("bdl,cd->bcl", xs, ssm.x_proj_weight[0])
    dt, b, c = x_dbl[:, :rank], x_dbl[:, rank:rank + 1], x_dbl[:, rank + 1:]
    delta = F.softplus(torch.einsum("brl,dr->bdl", dt, ssm.dt_projs_weight[0]) + ssm.dt_projs_bias[0][:, None])
    decay = torch.exp(delta * -torch.exp(ssm.A_logs))  # (B, D, L) * (D, 1)
    u = delta * b * xs

    if scan == "tree":
        edges, weights = [], []
        for r in range(height):
            for col in range(width):
                if r + 1 < height:
                    edges.append((r * width + col, (r + 1) * width + col))
        for r in range(height):
            for col in range(width):
                if col + 1 < width:
                    edges.append((r * width + col, r * width + col + 1))
        for i, j in edges:
            fi, fj = xs[:, :, i], xs[:, :, j]
            if metric == "cosine":
                weights.append(torch.exp(-(fi * fj).sum(1) / (fi.norm(dim=1) * fj.norm(dim=1))))
            elif metric == "euclidean":
                weights.append((fi - fj).square().sum(1))
            else:
                weights.append((fi - fj).abs().sum(1))
        edge_index = torch.tensor(edges, dtype=torch.long).reshape(-1, 2).expand(batch, -1, -1)
        edge_weight = torch.stack(weights, 1) if weights else torch.zeros(batch, 0, dtype=x.dtype)
        tree = reference.minimum_spanning_tree(edge_index, edge_weight, length)
    else:
        tree = torch.tensor([(i, i + 1) for i in range(length - 1)], dtype=torch.long).reshape(-1, 2)
        tree = tree.expand(batch, -1, -1)
    order, parent = reference.bfs(tree, length, length - 1 if root == "last" else 0)
    if root == "all":
        h = reference.scan_all_roots(u, decay, order, parent)
    else:
        h = reference.scan_causal(u, decay, order, parent)

    h = F.layer_norm(h.transpose(1, 2), (inner,), ssm.h_norm.weight, ssm.h_norm.bias, ssm.h_norm.eps)
    y = h * c.transpose(1, 2) + ssm.Ds * xs.transpose(1, 2)
    y = F.layer_norm(y, (inner,), ssm.out_norm.weight, ssm.out_norm.bias, ssm.out_norm.eps)
    y = y * z.reshape(batch, inner, length).transpose(1, 2)
    return (y @ ssm.out_proj.weight.T).reshape(batch, height, width, -1), (order, parent)


CASES = [
    dict(), dict(metric="euclidean"), dict(metric="manhattan"), dict(root="first"), dict(root="last"),
    dict(scan="raster"), dict(scan="raster", root="last"),
]


@pytest.mark.parametrize("shape", [(2, 5, 7), (1, 1, 1), (1, 1, 2), (2, 2, 1), (1, 6, 4)])
@pytest.mark.parametrize("variant", CASES, ids=lambda v: ",".join(f"{k}={w}" for k, w in v.items()) or "release")
def test_matches_slow_twin(variant, shape, generator):
    batch, height, width = shape
    ssm = randomise(Tree_SSM(6, **variant), generator).double()
    x = torch.randn(batch, height, width, 6, generator=generator, dtype=torch.float64)
    got, tree = ssm(x)
    want, (order, parent) = slow_tree_ssm(ssm, x, **variant)
    assert torch.equal(tree.order, order) and torch.equal(tree.parent, parent)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_float32_matches_the_float64_twin(generator):
    ssm = randomise(Tree_SSM(8), generator)
    x = torch.randn(2, 6, 5, 8, generator=generator)
    got, tree = ssm(x)
    want, (order, parent) = slow_tree_ssm(ssm.double(), x.double())
    if torch.equal(tree.order, order):  # a near-tie may flip an edge in float32; then only the shapes agree
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-4)
    assert got.dtype == torch.float32 and got.shape == want.shape


def test_gradients_match_slow_twin(generator):
    ssm = randomise(Tree_SSM(4), generator).double()
    x = torch.randn(1, 3, 4, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    got = torch.autograd.grad(ssm(x)[0].square().sum(), [x, *ssm.parameters()])
    want = torch.autograd.grad(slow_tree_ssm(ssm, x)[0].square().sum(), [x, *ssm.parameters()])
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-10)


def test_given_tree_is_used_and_returned(generator):
    ssm = randomise(Tree_SSM(4), generator)
    x = torch.randn(2, 3, 5, 4, generator=generator)
    chain = tree_scan.bfs(torch.stack([torch.arange(14), torch.arange(1, 15)], 1).expand(2, -1, -1))
    out, used = ssm(x, chain)
    assert used is chain
    raster = randomise(Tree_SSM(4, scan="raster"), torch.Generator().manual_seed(0))
    raster.load_state_dict(ssm.state_dict())
    torch.testing.assert_close(out, raster(x)[0])


def test_trees_of_the_root_and_scan_variants(generator):
    x = torch.randn(1, 4, 6, 8, generator=generator)
    _, last = randomise(Tree_SSM(8, root="last"), generator)(x)
    assert last.order[0, 0] == 23 and last.parent[0, 23] == -1
    _, raster = randomise(Tree_SSM(8, scan="raster", root="first"), generator)(x)
    assert torch.equal(raster.order[0], torch.arange(24)) and torch.equal(raster.parent[0], torch.arange(24) - 1)


def _trees_by_block(model, image):
    trees = {}
    hooks = [m.register_forward_hook(lambda mod, a, out, n=n: trees.__setitem__(n, out[1]))
             for n, m in model.named_modules() if isinstance(m, Tree_SSM)]
    with torch.no_grad():
        model(image)
    for h in hooks:
        h.remove()
    return trees


def test_shared_tree_is_built_by_the_first_block_of_each_stage(generator):
    torch.manual_seed(0)
    image = torch.randn(1, 3, 48, 64, generator=generator)
    shared = GrootV(channels=8, depths=[3, 2, 1, 1], share_tree=True).eval()
    separate = GrootV(channels=8, depths=[3, 2, 1, 1]).eval()
    separate.load_state_dict(shared.state_dict())
    trees, own = _trees_by_block(shared, image), _trees_by_block(separate, image)
    for level, depth in enumerate([3, 2, 1, 1]):
        first = f"levels.{level}.blocks.0.TreeSSM"
        # The first block builds the same tree either way; the others reuse it as is.
        assert torch.equal(trees[first].order, own[first].order)
        for j in range(1, depth):
            assert trees[f"levels.{level}.blocks.{j}.TreeSSM"] is trees[first]
    assert not torch.equal(own["levels.0.blocks.1.TreeSSM"].order, own["levels.0.blocks.0.TreeSSM"].order)


@pytest.mark.parametrize("argument,value", [("metric", "cos"), ("root", 0), ("scan", "hilbert"), ("dt_init", "x"),
                                            ("d_model", 0), ("dt_rank", 0), ("d_conv", 4), ("d_conv", 2.0)])
def test_bad_arguments(argument, value):
    with pytest.raises(ValueError, match=argument):
        Tree_SSM(**{"d_model": 4, argument: value})


@pytest.mark.parametrize("d_conv", [0, 1, 5])
def test_odd_or_no_conv_keeps_the_map_size(d_conv):
    out, _ = Tree_SSM(4, d_conv=d_conv)(torch.randn(1, 5, 6, 4))
    assert out.shape == (1, 5, 6, 4)


def test_bad_input_shape():
    with pytest.raises(ValueError, match="x"):
        Tree_SSM(4)(torch.randn(2, 4, 16))
    with pytest.raises(ValueError, match=r"C = d_model = 4; got shape \(2, 3, 3, 6\)"):
        Tree_SSM(4)(torch.randn(2, 3, 3, 6))
