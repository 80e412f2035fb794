"""The GPU tree scans (Triton, tree_scan.triton_scan) against the reference and the CPU kernels.

Without a GPU they run on CPU tensors in Triton's interpreter (conftest.py sets
TRITON_INTERPRET=1): the kernels a GPU compiles, executed step by step. With a GPU the same
tests run them on it.
"""


import brute_force as bf
import pytest
import torch
from conftest import requires_cuda, run_in_python_without
from test_tree_scan_heavy_paths import trees_of
from torch._subclasses.fake_tensor import FakeTensorMode

import tree_scan
from tree_scan import heavy_paths, reference, triton_plan, triton_scan

pytestmark = pytest.mark.skipif(not triton_scan.AVAILABLE, reason="Triton is not installed")

# The kernels run on CUDA tensors on a GPU, on CPU tensors in the interpreter.
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
needs_kernels = pytest.mark.skipif(DEVICE == "cpu" and not triton_scan.INTERPRETING,
                                   reason="no GPU, and Triton's interpreter was not switched on")
KINDS = {
    "all_roots": (triton_scan.tree_scan, reference.scan_all_roots, reference.scan_all_roots_backward, True),
    "causal": (triton_scan.tree_scan_causal, reference.scan_causal, reference.scan_causal_backward, False),
}
TOLERANCE = {torch.float64: 1e-12, torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 2e-3}


def relative_error(got, want):
    got, want = got.double().cpu(), want.double().cpu()
    return float((got - want).norm() / want.norm().clamp(min=1e-30))


def inputs(tree, channels, generator, dtype=torch.float32):
    batch, length = tree.shape[0], tree.shape[1] + 1
    x = torch.randn(batch, channels, length, generator=generator, dtype=torch.float64)
    weight = torch.rand(batch, channels, length, generator=generator, dtype=torch.float64)
    return x.to(DEVICE, dtype), weight.to(DEVICE, dtype), tree.to(DEVICE)


def check_against_reference(kind, x, weight, order, generator, tolerance):
    scan, scan_reference, backward_reference, all_roots = KINDS[kind]
    got = scan(x, weight, order)
    assert got.dtype == x.dtype and got.shape == x.shape and got.device == x.device
    wide = (x.double().cpu(), weight.double().cpu(), order.order.cpu(), order.parent.cpu())
    assert relative_error(got, scan_reference(*wide)) < tolerance
    grad_out = torch.randn(x.shape, generator=generator, dtype=torch.float64)
    layout = triton_scan.layout_of(order)
    got_grads = torch.ops.tree_scan.heavy_path_scan_backward(grad_out.to(x.device, x.dtype), x, weight,
                                                              layout.elements, layout.rounds, all_roots)
    for g, w in zip(got_grads, backward_reference(grad_out.to(x.dtype).double(), *wide)):
        assert relative_error(g, w) < tolerance


@needs_kernels
@pytest.mark.parametrize("shape", ["random", "deep", "star", "grid"])
def test_the_plan_in_triton_equals_the_plan_in_tensor_operations(shape, generator):
    """triton_plan is what a GPU runs to plan a tree; heavy_paths' tensor operations are its
    twin (itself checked against a plan walked vertex by vertex)."""
    for size in (1, 2, 35, 200):
        tree = torch.stack([trees_of(shape, size, generator) for _ in range(3)]).to(DEVICE)
        preferred = torch.zeros(3, size, dtype=torch.bool, device=DEVICE)
        preferred[:, int(torch.randint(0, size, (1,), generator=generator))] = True
        got = triton_plan.plan(tree.int(), size, preferred)  # int32 rows, as a user may pass
        want = heavy_paths._plan_with_tensor_ops(tree, size, preferred)
        for g, w in zip((got[0], got[1], *got[2]), (want[0], want[1], *want[2])):
            assert torch.equal(g.cpu().long(), w.cpu().long())
    forest = torch.tensor([[[0, 2], [4, 2], [1, 3], [-1, -1], [6, 5], [-1, -1]]], device=DEVICE).expand(2, -1, -1)
    preferred = torch.tensor([[0, 0, 0, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0]], dtype=torch.bool, device=DEVICE)
    got, want = triton_plan.plan(forest, 7, preferred), heavy_paths._plan_with_tensor_ops(forest, 7, preferred)
    for g, w in zip((got[0], got[1], *got[2]), (want[0], want[1], *want[2])):
        assert torch.equal(g.cpu().long(), w.cpu().long())


@needs_kernels
@pytest.mark.parametrize("tree, message", [([[0, 1], [1, 2], [2, 0]], "cycle"), ([[0, 1], [1, 4], [-1, -1]], "range")])
def test_the_plan_in_triton_refuses_what_is_not_a_forest(tree, message):
    if DEVICE == "cuda":
        pytest.skip("on a GPU this is a device-side assertion, which ends the process")
    with pytest.raises(RuntimeError, match=message):
        triton_plan.plan(torch.tensor([tree]), 4, torch.zeros(1, 4, dtype=torch.bool))


@needs_kernels
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", list(TOLERANCE), ids=str)
@pytest.mark.parametrize("length", [1, 2, 3, 21, 300])
def test_random_trees_match_the_reference(kind, dtype, length, generator):
    if dtype in (torch.float16, torch.bfloat16) and length in (2, 21):
        pytest.skip("half types: the smallest and largest trees suffice")
    tree = torch.stack([bf.random_tree(length, generator) for _ in range(2)])
    x, weight, tree = inputs(tree, 5, generator, dtype)
    check_against_reference(kind, x, weight, tree_scan.prepare(tree), generator, TOLERANCE[dtype])


@needs_kernels
@pytest.mark.parametrize("shape", ["deep", "star", "grid"])
@pytest.mark.parametrize("kind", KINDS)
def test_deep_trees_stars_and_grid_trees(shape, kind, generator):
    tree = torch.stack([trees_of(shape, 400, generator) for _ in range(2)])
    x, weight, tree = inputs(tree, 3, generator, torch.float64)
    for root in (0, 123):
        order = tree_scan.prepare(tree, root=root)
        check_against_reference(kind, x, weight, order, generator, 1e-12)


@needs_kernels
@pytest.mark.parametrize("kind", KINDS)
def test_long_chain_is_the_linear_recurrence(kind, generator):
    length = 3000
    x, weight, _ = inputs(torch.zeros(1, length - 1, 2, dtype=torch.long), 2, generator, torch.float64)
    got = KINDS[kind][0](x, weight, tree_scan.chain(1, length, DEVICE))
    h = torch.zeros(2, length, dtype=torch.float64)  # leaf to root: h_i = x_i + w_{i+1} h_{i+1}
    x, weight = x[0].cpu(), weight[0].cpu()
    h[:, -1] = x[:, -1]
    for i in reversed(range(length - 1)):
        h[:, i] = x[:, i] + weight[:, i + 1] * h[:, i + 1]
    if kind == "all_roots":  # root to leaf: out_i = (1 - w_i^2) h_i + w_i out_{i-1}
        for i in range(1, length):
            h[:, i] = (1 - weight[:, i] ** 2) * h[:, i] + weight[:, i] * h[:, i - 1]
    assert relative_error(got[0], h) < 1e-12


@needs_kernels
def test_forests_with_padding_rows(generator):
    tree = torch.tensor([[[0, 2], [4, 2], [1, 3], [-1, -1], [6, 5], [-1, -1], [-1, -1]]])
    x, weight, tree = inputs(tree, 4, generator, torch.float64)
    for root in (0, 3, 5, 7):
        for kind in KINDS:
            check_against_reference(kind, x, weight, tree_scan.prepare(tree, root=root), generator, 1e-12)


@needs_kernels
@pytest.mark.parametrize("kind", KINDS)
def test_small_tiles_cross_chunk_and_channel_block_edges(kind, generator):
    """Four elements per chunk and two channels per program: every carry between chunks,
    every partial chunk and a partial channel block, in both directions."""
    tree = torch.stack([trees_of("random", 57, generator), trees_of("deep", 57, generator)])
    x, weight, tree = inputs(tree, 5, generator, torch.float64)
    with triton_scan.tiles(2, 4):
        check_against_reference(kind, x, weight, tree_scan.prepare(tree), generator, 1e-12)


@needs_kernels
@pytest.mark.parametrize("kind", KINDS)
def test_the_cpu_kernels_agree(kind, generator):
    tree = torch.stack([trees_of("grid", 35, generator) for _ in range(3)])
    x, weight, tree = inputs(tree, 7, generator)
    public = getattr(tree_scan, "tree_scan" if kind == "all_roots" else "tree_scan_causal")
    want = public(x.cpu(), weight.cpu(), tree.cpu())
    assert relative_error(KINDS[kind][0](x, weight, tree), want) < 1e-5


@needs_kernels
@pytest.mark.parametrize("kind", KINDS)
def test_any_memory_layout_gives_the_same_result(kind, generator):
    tree = torch.stack([bf.random_tree(30, generator) for _ in range(2)])
    x, weight, tree = inputs(tree, 6, generator)
    scan = KINDS[kind][0]
    order = tree_scan.prepare(tree)
    want = scan(x, weight, order)
    channels_last_x = x.transpose(1, 2).contiguous().transpose(1, 2)  # (B, L, C) in memory
    channels_last_w = weight.transpose(1, 2).contiguous().transpose(1, 2)
    out = scan(channels_last_x, channels_last_w, order)
    assert torch.equal(out, want) and out.stride() == channels_last_x.stride()
    wide = torch.randn(2, 12, 30, generator=generator).to(DEVICE)
    wide[:, ::2] = x
    assert torch.equal(scan(wide[:, ::2], weight, order), want)  # strided channels
    shared = weight[:1].expand(2, -1, -1)  # one weight tensor for the batch, stride 0
    assert torch.equal(scan(x, shared, order), scan(x, shared.contiguous(), order))


@needs_kernels
@pytest.mark.parametrize("kind", KINDS)
def test_autograd_and_gradcheck(kind, generator):
    tree = bf.random_tree(5, generator).unsqueeze(0)
    x, weight, tree = inputs(tree, 1, generator, torch.float64)  # each input element costs two scans
    order = tree_scan.prepare(tree)
    x.requires_grad_(), weight.requires_grad_()
    assert torch.autograd.gradcheck(lambda a, w: KINDS[kind][0](a, w, order), (x, weight))
    with pytest.raises(RuntimeError, match="first derivatives only"):
        out = KINDS[kind][0](x, weight, order)
        (grad_x,) = torch.autograd.grad(out.sum(), x, create_graph=True)
        grad_x.sum().backward()


@needs_kernels
def test_opcheck_and_torch_compile(generator):
    tree = torch.stack([bf.random_tree(7, generator) for _ in range(2)])
    x, weight, tree = inputs(tree, 2, generator)
    layout = heavy_paths.root_forest(tree, 7, 0)[2]
    for all_roots in (True, False):
        torch.library.opcheck(torch.ops.tree_scan.heavy_path_scan.default,
                              (x.requires_grad_(), weight.requires_grad_(), layout.elements, layout.rounds, all_roots))
        torch.library.opcheck(torch.ops.tree_scan.heavy_path_scan_backward.default,
                              (torch.randn_like(x), x.detach(), weight.detach(), layout.elements, layout.rounds,
                               all_roots))

    def block(x, weight, tree):
        order = tree_scan.TreeOrder(*heavy_paths.root_forest(tree, 7, 0))
        return triton_scan.tree_scan(x, weight, order) + triton_scan.tree_scan_causal(x, weight, order)

    compiled = torch.compile(block, fullgraph=True, backend="aot_eager")
    got, want = compiled(x, weight, tree), block(x, weight, tree)
    assert torch.allclose(got, want)
    for g, w in zip(torch.autograd.grad(got.sum(), (x, weight)), torch.autograd.grad(want.sum(), (x, weight))):
        assert torch.allclose(g, w)


def test_the_gpu_path_reads_no_tensor_values_on_the_host():
    """Root, plan and scan (forward and backward) of a GPU call, on fake tensors: any
    synchronising read (.item(), bool(tensor), .tolist()) would raise here."""
    with FakeTensorMode():
        tree = torch.zeros(2, 63, 2, dtype=torch.long)
        x = torch.empty(2, 8, 64, requires_grad=True)
        order = tree_scan.TreeOrder(*heavy_paths.root_forest(tree, 64, 0))
        out = torch.ops.tree_scan.heavy_path_scan(x, x, order.layout.elements, order.layout.rounds, True)
        out.sum().backward()
    assert out.shape == (2, 8, 64) and x.grad.shape == (2, 8, 64)


@requires_cuda
def test_default_gpu_calls_do_not_synchronise(generator):
    guide = torch.randn(2, 8, 12, 14, generator=generator).cuda()
    x = torch.randn(2, 8, 168, generator=generator).cuda().requires_grad_()
    weight = torch.rand(2, 8, 168, generator=generator).cuda().requires_grad_()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        tree = tree_scan.grid_mst(guide)
        for order in (tree, tree_scan.prepare(tree), tree_scan.bfs(tree), tree_scan.chain(2, 168, "cuda")):
            out = tree_scan.tree_scan(x, weight, order) + tree_scan.tree_scan_causal(x, weight, order)
            torch.autograd.grad(out.sum(), (x, weight))
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_without_triton_the_cpu_path_works_and_gpu_calls_say_what_to_install():
    run_in_python_without(
        ("triton",),
        """
        import torch, tree_scan
        from tree_scan import triton_scan
        assert not triton_scan.AVAILABLE
        tree = tree_scan.grid_mst(torch.randn(1, 3, 4, 5))
        x = torch.randn(1, 2, 20)
        assert tree_scan.tree_scan(x, x.exp(), tree).shape == (1, 2, 20)
        try:
            triton_scan.tree_scan(x, x.exp(), tree)
        except RuntimeError as error:
            assert "pip install triton" in str(error), error
            print("ok")
        """,
    )
