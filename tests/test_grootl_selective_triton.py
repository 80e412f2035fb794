"""GrootL's fused selective tree scan on the GPU (Triton, tree_scan_lan.triton_selective)
against its unfused twin (tree_scan_lan.selective_reference).

Without a GPU the kernels run on CPU tensors in Triton's interpreter (conftest.py sets
TRITON_INTERPRET=1); with one, the same tests run them on it.
"""

import brute_force as bf
import pytest
import torch

import tree_scan_lan
from tree_scan import triton_scan
from tree_scan_lan import selective_reference, triton_selective

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
pytestmark = pytest.mark.skipif(not triton_scan.AVAILABLE or (DEVICE == "cpu" and not triton_scan.INTERPRETING),
                                reason="needs a GPU, or Triton's interpreter")
TOLERANCE = {torch.float64: 1e-12, torch.float32: 2e-5, torch.bfloat16: 2e-2}


def relative_error(got, want):
    got, want = got.double().cpu(), want.double().cpu()
    return float((got - want).norm() / want.norm().clamp(min=1e-30))


def inputs(batch, length, channels, state, generator, dtype):
    """As GrootL's mixer calls the operator: delta and A, D in the accumulation dtype."""
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    x = torch.randn(batch, length, channels, generator=generator, dtype=torch.float64).to(dtype)
    delta = (torch.rand(batch, length, channels, generator=generator, dtype=torch.float64) * 0.5).to(acc)
    A = -torch.rand(channels, state, generator=generator, dtype=torch.float64).to(acc) * 2
    B = torch.randn(batch, length, state, generator=generator, dtype=torch.float64).to(dtype)
    C = torch.randn(batch, length, state, generator=generator, dtype=torch.float64).to(dtype)
    D = torch.randn(channels, generator=generator, dtype=torch.float64).to(acc)
    return [t.to(DEVICE) for t in (x, delta, A, B, C, D)]


def language_trees(batch, length, generator):
    """Language trees of random features, every row with its own prompt length."""
    features = torch.randn(batch, 8, length, generator=generator)
    lengths = torch.randint(0, length + 1, (batch,), generator=generator)
    return tree_scan_lan.prepare(tree_scan_lan.language_tree(features, lengths).to(DEVICE))


def check(tensors, tree, generator, dtype, with_final=True):
    x, delta, A, B, C, D = tensors
    order, parent = (tree.order, tree.parent) if tree is not None else (None, None)
    plan = triton_selective.plan_of(order, parent, list(tree.layout) if tree is not None and tree.layout else None)
    got = triton_selective.forward(x, delta, A, B, C, D, plan, 0.3)
    wide = [t.double().cpu() for t in tensors]
    cpu_tree = (order.cpu(), parent.cpu()) if tree is not None else (None, None)
    want = selective_reference.selective_tree_scan(*wide, *cpu_tree, 0.3)
    assert got[0].dtype == x.dtype and got[0].shape == x.shape and got[1].shape == (x.shape[0], x.shape[2], A.shape[1])
    for g, w in zip(got, want):
        assert relative_error(g, w) < TOLERANCE[dtype]
    grad_y = torch.randn(x.shape, generator=generator, dtype=torch.float64)
    grad_final = torch.randn(got[1].shape, generator=generator, dtype=torch.float64) if with_final else None
    got = triton_selective.backward(grad_y.to(DEVICE, x.dtype), grad_final.to(DEVICE, A.dtype) if with_final else None,
                                    x, delta, A, B, C, D, plan, 0.3)
    want = selective_reference.selective_tree_scan_backward(grad_y.to(x.dtype).double(), grad_final, *wide, *cpu_tree,
                                                            0.3)
    for g, w, t in zip(got, want, tensors):
        assert g.dtype == t.dtype and g.shape == t.shape
        assert relative_error(g, w) < TOLERANCE[dtype]


@pytest.mark.parametrize("dtype", list(TOLERANCE), ids=str)
@pytest.mark.parametrize("shape", [(1, 1, 3, 16), (2, 2, 5, 4), (3, 17, 6, 16), (2, 40, 7, 3)], ids=str)
def test_fused_kernels_match_the_unfused_twin(shape, dtype, generator):
    if dtype == torch.bfloat16 and shape[1] < 17:
        pytest.skip("bfloat16: the longer sequences suffice")
    tensors = inputs(*shape, generator, dtype)
    check(tensors, None, generator, dtype)  # no tree: the second tree is the chain itself
    check(tensors, language_trees(shape[0], shape[1], generator), generator, dtype, with_final=shape[1] > 2)


def test_random_trees_several_channel_blocks_per_program_and_left_padding(generator, monkeypatch):
    """One program walks every channel block of its row in turn, its scratch reused; rows
    start with pads (zero inputs) as left-padded GrootL batches do."""
    monkeypatch.setattr(triton_selective, "_programs_override", 1)
    tensors = inputs(2, 33, 7, 16, generator, torch.float64)
    tensors[0][:, :5] = 0  # pads
    tree = tree_scan_lan.prepare(torch.stack([bf.random_tree(33, generator) for _ in range(2)]).to(DEVICE))
    check(tensors, tree, generator, torch.float64)


@pytest.mark.skipif(DEVICE != "cuda", reason="the CUDA registration")
def test_the_operator_runs_the_kernels_on_cuda(generator):
    tensors = inputs(2, 20, 6, 16, generator, torch.float32)
    tree = language_trees(2, 20, generator)
    got = tree_scan_lan.selective_tree_scan(*tensors, tree, 0.3)
    want = triton_selective.forward(*tensors, list(tree.layout), 0.3)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    torch.library.opcheck(torch.ops.tree_scan_lan.selective_tree_scan.default,
                          (*tensors, tree.order, tree.parent, 0.3, list(tree.layout)))
