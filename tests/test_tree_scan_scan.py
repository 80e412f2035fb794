"""Tree scans: reference against the path-product definition, kernels against the reference."""

import brute_force as bf
import pytest
import torch
from conftest import DEVICES

import tree_scan
import tree_scan_lan
from tree_scan import reference

SCANS = {
    "all_roots": (tree_scan.tree_scan, reference.scan_all_roots, reference.scan_all_roots_backward),
    "causal": (tree_scan.tree_scan_causal, reference.scan_causal, reference.scan_causal_backward),
}
# Relative error bounds (||got - want|| / ||want||) by input dtype.
TOLERANCE = {torch.float64: 1e-12, torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 2e-3}


def problem(batch, channels, length, generator, dtype=torch.float32, device="cpu"):
    """Random trees, features and weights in (0, 1) (a decay, as in the models)."""
    tree = torch.stack([bf.random_tree(length, generator) for _ in range(batch)])
    x = torch.randn(batch, channels, length, generator=generator, dtype=torch.float64)
    weight = torch.rand(batch, channels, length, generator=generator, dtype=torch.float64)
    return x.to(device, dtype), weight.to(device, dtype), tree.to(device)


def relative_error(got, want):
    got, want = got.double().cpu(), want.double().cpu()
    return float((got - want).norm() / want.norm().clamp(min=1e-30))


@pytest.mark.parametrize("length", [1, 2, 3, 8, 21])
@pytest.mark.parametrize("kind", SCANS)
def test_reference_matches_path_product_definition(length, kind, generator):
    x, weight, tree = problem(2, 3, length, generator, torch.float64)
    order = reference.bfs(tree, length, 0)
    got = SCANS[kind][1](x, weight, *order)
    want = bf.scan_by_definition(x, weight, order[1], causal=kind == "causal")
    assert relative_error(got, want) < 1e-12


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", SCANS)
@pytest.mark.parametrize("dtype", list(TOLERANCE))
@pytest.mark.parametrize("shape", [(1, 1, 1), (2, 5, 2), (3, 17, 50), (2, 40, 257)])
def test_kernel_matches_reference(device, kind, dtype, shape, generator):
    x, weight, tree = problem(*shape, generator, dtype, device)
    scan, scan_reference, _ = SCANS[kind]
    order = tree_scan.bfs(tree)
    got = scan(x, weight, order)
    assert got.dtype == dtype and got.shape == x.shape and got.device.type == device
    # Ground truth in float64 from the same (rounded) inputs.
    want = scan_reference(x.double(), weight.double(), order.order, order.parent)
    assert relative_error(got, want) < TOLERANCE[dtype]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", SCANS)
def test_backward_kernel_matches_reference(device, kind, generator):
    x, weight, tree = problem(3, 19, 97, generator, torch.float32, device)
    grad_out = torch.randn(x.shape, generator=generator).to(device)
    order = tree_scan.bfs(tree)
    op = getattr(torch.ops.tree_scan, f"scan_{kind}_backward")
    got = op(grad_out, x, weight, order.order, order.parent)
    want = SCANS[kind][2](grad_out.double(), x.double(), weight.double(), order.order, order.parent)
    for g, w in zip(got, want):
        assert relative_error(g, w) < 1e-5


@pytest.mark.parametrize("kind", SCANS)
def test_reference_backward_matches_autograd(kind, generator):
    x, weight, tree = problem(2, 4, 15, generator, torch.float64)
    order = reference.bfs(tree, 15, 0)
    grad_out = torch.randn(x.shape, generator=generator, dtype=torch.float64)
    x.requires_grad_(), weight.requires_grad_()
    want = torch.autograd.grad(SCANS[kind][1](x, weight, *order), (x, weight), grad_out)
    got = SCANS[kind][2](grad_out, x.detach(), weight.detach(), *order)
    for g, w in zip(got, want):
        assert relative_error(g, w) < 1e-12


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", SCANS)
@pytest.mark.parametrize("length", [1, 2, 9])
def test_gradcheck(device, kind, length, generator):
    x, weight, tree = problem(2, 3, length, generator, torch.float64, device)
    order = tree_scan.bfs(tree)
    scan = SCANS[kind][0]
    x.requires_grad_(), weight.requires_grad_()
    assert torch.autograd.gradcheck(lambda a, w: scan(a, w, order), (x, weight))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", SCANS)
def test_any_memory_layout_gives_the_same_result(device, kind, generator):
    # 40 channels: one whole tile of 32 float32 channels and a partial one, each
    # path of the CPU kernels' loads and stores.
    x, weight, tree = problem(2, 40, 30, generator, torch.float32, device)
    scan = SCANS[kind][0]
    order = tree_scan.bfs(tree)
    want = scan(x, weight, order)
    channels_last_x = x.transpose(1, 2).contiguous().transpose(1, 2)  # (B, L, C) in memory
    channels_last_w = weight.transpose(1, 2).contiguous().transpose(1, 2)
    assert torch.equal(scan(channels_last_x, weight, order), want)
    assert torch.equal(scan(channels_last_x, channels_last_w, order), want)
    backward = getattr(torch.ops.tree_scan, f"scan_{kind}_backward")
    grad_out = torch.randn(x.shape, generator=generator).to(device)
    channels_last_grad = grad_out.transpose(1, 2).contiguous().transpose(1, 2)
    for got, expected in zip(backward(channels_last_grad, channels_last_x, channels_last_w, order.order, order.parent),
                             backward(grad_out, x, weight, order.order, order.parent)):
        assert torch.equal(got, expected)
    wide = torch.randn(2, 80, 30, generator=generator).to(device)
    wide[:, ::2] = x
    assert torch.equal(scan(wide[:, ::2], weight, order), want)  # strided channels
    shared = weight[:1].expand(2, -1, -1)  # one weight tensor for the batch, stride 0
    assert torch.equal(scan(x, shared, order), scan(x, shared.contiguous(), order))
    out = scan(channels_last_x, weight, order)
    assert out.stride() == channels_last_x.stride()  # output follows the input's layout


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", SCANS)
def test_same_inputs_give_bit_identical_outputs(device, kind, generator):
    x, weight, tree = problem(4, 37, 200, generator, torch.float32, device)
    x.requires_grad_(), weight.requires_grad_()
    scan = SCANS[kind][0]
    results = []
    for _ in range(2):
        out = scan(x, weight, tree)
        grads = torch.autograd.grad(out, (x, weight), torch.ones_like(out))
        results.append((out, *grads))
    for first, second in zip(*results):
        assert torch.equal(first, second)


@pytest.mark.parametrize("device", DEVICES)
def test_forest_components_are_scanned_separately(device, generator):
    # vertices {0, 2, 4} form one tree, {1, 3} another; (-1, -1) pads the forest
    tree = torch.tensor([[[0, 2], [4, 2], [1, 3], [-1, -1]]], device=device)
    x, weight, _ = problem(1, 3, 5, generator, torch.float64, device)
    order = tree_scan.bfs(tree)
    for kind in SCANS:
        scan = SCANS[kind][0]
        got = scan(x, weight, order)
        first = scan(x[..., [0, 2, 4]], weight[..., [0, 2, 4]], torch.tensor([[[0, 1], [2, 1]]], device=device))
        second = scan(x[..., [1, 3]], weight[..., [1, 3]], torch.tensor([[[0, 1]]], device=device))
        assert torch.allclose(got[..., [0, 2, 4]], first) and torch.allclose(got[..., [1, 3]], second)


@pytest.mark.parametrize("device", DEVICES)
def test_causal_scan_on_a_chain_is_the_linear_recurrence(device, generator):
    x, weight, _ = problem(2, 4, 12, generator, torch.float64, device)
    chain = torch.stack([torch.arange(11), torch.arange(1, 12)], -1).expand(2, -1, -1).to(device)
    got = tree_scan.tree_scan_causal(x, weight, chain)
    h = torch.zeros_like(x[..., 0])
    for i in reversed(range(12)):  # rooted at 0: h_i = x_i + w_{i+1} h_{i+1}
        h = x[..., i] + (weight[..., i + 1] * h if i < 11 else 0)
        assert torch.allclose(got[..., i], h)


@pytest.mark.parametrize("device", DEVICES)
def test_causal_root_choice_matches_a_relabelled_tree(device, generator):
    x, weight, tree = problem(2, 3, 16, generator, torch.float64, device)
    last = tree_scan.tree_scan_causal(x, weight, tree, root=15)
    flipped = tree_scan.tree_scan_causal(x.flip(-1), weight.flip(-1), 15 - tree, root=0)
    assert torch.allclose(last, flipped.flip(-1))


@pytest.mark.parametrize("kind", SCANS)
def test_opcheck(kind, generator):
    x, weight, tree = problem(2, 5, 11, generator, torch.float32)
    order = tree_scan.bfs(tree)
    x.requires_grad_(), weight.requires_grad_()
    op = getattr(torch.ops.tree_scan, f"scan_{kind}")
    torch.library.opcheck(op, (x, weight, order.order, order.parent))
    torch.library.opcheck(getattr(torch.ops.tree_scan, f"scan_{kind}_backward"),
                          (torch.randn(x.shape, generator=generator), x.detach(), weight.detach(),
                           order.order, order.parent))
    torch.library.opcheck(torch.ops.tree_scan.bfs, (tree, 11, 0))
    edges = tree_scan.grid_edges(3, 4).expand(2, -1, -1)
    torch.library.opcheck(torch.ops.tree_scan.minimum_spanning_tree, (edges, torch.rand(2, edges.shape[1]), 12))


def test_torch_compile_fullgraph(generator):
    guide = torch.randn(2, 8, 6, 7, generator=generator)
    x = torch.randn(2, 8, 42, generator=generator, requires_grad=True)
    weight = torch.rand(2, 8, 42, generator=generator, requires_grad=True)

    def block(guide, x, weight):
        order = tree_scan.bfs(tree_scan.grid_mst(guide))
        return tree_scan.tree_scan(x, weight, order) + tree_scan.tree_scan_causal(x, weight, order)

    compiled = torch.compile(block, fullgraph=True, backend="aot_eager")
    got = compiled(guide, x, weight)
    want = block(guide, x, weight)
    assert torch.allclose(got, want)
    grads = torch.autograd.grad(got.square().sum(), (x, weight))
    want_grads = torch.autograd.grad(want.square().sum(), (x, weight))
    for g, w in zip(grads, want_grads):
        assert torch.allclose(g, w, rtol=1e-5, atol=1e-6)


def test_empty_batches_give_empty_results():
    """B = 0 (and a graph without candidate edges) through the kernels, the reference twin
    (what runs when the extension is missing) and the language-tree helpers."""
    no_trees = torch.zeros(0, 3, 2, dtype=torch.long)
    for order, parent in (tree_scan.bfs(no_trees, 4)[:2], reference.bfs(no_trees, 4, 0)):
        assert order.shape == parent.shape == (0, 4)
    x = torch.zeros(0, 2, 4)
    assert tree_scan.tree_scan(x, x, no_trees).shape == tree_scan.tree_scan_causal(x, x, no_trees).shape == (0, 2, 4)
    guide = torch.randn(0, 3, 4, 5)
    assert tree_scan.grid_mst(guide).shape == (0, 19, 2)
    assert reference.grid_edge_weights(guide, "cosine").shape == tree_scan.grid_edge_weights(guide).shape == (0, 31)
    no_edges = torch.zeros(1, 0, 2, dtype=torch.long), torch.zeros(1, 0)
    for tree in (tree_scan.minimum_spanning_tree(*no_edges, 3), reference.minimum_spanning_tree(*no_edges, 3)):
        assert torch.equal(tree, torch.full((1, 2, 2), -1))
    assert tree_scan_lan.language_tree(torch.randn(0, 3, 5), []).shape == (0, 4, 2)
    assert tree_scan_lan.candidate_edge_weights(torch.randn(0, 3, 5)).shape == (0, 12)
