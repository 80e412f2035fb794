"""Bad input gets a clear error that names the argument: never a crash, a hang or garbage."""

import pytest
import torch

import tree_scan
import tree_scan_lan

EDGES = torch.tensor([[[0, 1], [1, 2]]])
WEIGHTS = torch.tensor([[0.5, 0.25]])
TREE = torch.tensor([[[0, 1], [1, 2]]])
X = torch.randn(1, 4, 3)
W = torch.rand(1, 4, 3)
# Out-of-range vertices are reported by the Python check (GPU, reference) or by the
# compiled CPU kernel, which names the row too; both name the argument and the range.
OUT_OF_RANGE = r"{}.* outside \[0, (num_vertices = )?{}\)"


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: tree_scan.minimum_spanning_tree(EDGES.tolist(), WEIGHTS, 3), TypeError, "`edge_index` must be a torch.Tensor"),
        (lambda: tree_scan.minimum_spanning_tree(EDGES.float(), WEIGHTS, 3), TypeError, "`edge_index` must have dtype int32, int64"),
        (lambda: tree_scan.minimum_spanning_tree(EDGES[0], WEIGHTS, 3), ValueError, r"`edge_index` must be \(B, E, 2\); got shape \(2, 2\)"),
        (lambda: tree_scan.minimum_spanning_tree(EDGES.repeat(1, 1, 2), WEIGHTS, 3), ValueError, "`edge_index` must be"),
        (lambda: tree_scan.minimum_spanning_tree(EDGES, WEIGHTS[:, :1], 3), ValueError, r"`edge_weight` must be \(B, E\) = \(1, 2\)"),
        (lambda: tree_scan.minimum_spanning_tree(EDGES, WEIGHTS.long(), 3), TypeError, "`edge_weight` must have dtype"),
        (lambda: tree_scan.minimum_spanning_tree(EDGES, WEIGHTS, 0), ValueError, "`num_vertices` must be >= 1, got 0"),
        (lambda: tree_scan.minimum_spanning_tree(EDGES, WEIGHTS, 3.0), TypeError, "`num_vertices` must be an int"),
        (lambda: tree_scan.minimum_spanning_tree(EDGES, WEIGHTS, 2), ValueError, OUT_OF_RANGE.format("edge_index", 2)),
        (lambda: tree_scan.minimum_spanning_tree(-EDGES, WEIGHTS, 3), ValueError, OUT_OF_RANGE.format("edge_index", 3)),
        (lambda: tree_scan.bfs(TREE[0]), ValueError, r"`tree` must be \(B, V-1, 2\)"),
        (lambda: tree_scan.bfs(TREE, root=3), ValueError, r"`root` must be in \[0, 3\), got 3"),
        (lambda: tree_scan.bfs(TREE, root=1.0), TypeError, "`root` must be an int"),
        (lambda: tree_scan.bfs(TREE, num_vertices=2), ValueError, OUT_OF_RANGE.format("tree", 2)),
        (lambda: tree_scan.bfs(torch.tensor([[[0, -1], [1, 2]]])), ValueError, OUT_OF_RANGE.format("tree", 3)),
        (lambda: tree_scan.tree_scan(X[0], W, TREE), ValueError, r"`x` must be \(B, C, L\)"),
        (lambda: tree_scan.tree_scan(X.long(), W, TREE), TypeError, "`x` must have dtype"),
        (lambda: tree_scan.tree_scan(X, W[:, :2], TREE), ValueError, r"`edge_weight` must have the shape of `x` \(1, 4, 3\)"),
        (lambda: tree_scan.tree_scan(X, W.double(), TREE), TypeError, "`edge_weight` must have the dtype of `x`"),
        (lambda: tree_scan.tree_scan(X, W, TREE[:, :1]), ValueError, r"`tree` must be \(B, L-1, 2\) = \(1, 2, 2\)"),
        (lambda: tree_scan.tree_scan(X, W, TREE.tolist()), TypeError, "`tree` must be a"),
        (lambda: tree_scan.tree_scan(X, W, tree_scan.TreeOrder(torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, 2, dtype=torch.long))),
         ValueError, r"`tree.order` must be \(B, L\) = \(1, 3\)"),
        (lambda: tree_scan.tree_scan_causal(X, W, TREE, root=5), ValueError, "`root` must be in"),
        (lambda: tree_scan.tree_scan_causal(X, W, tree_scan.bfs(TREE), root=2), ValueError,
         r"`root` \(2\) cannot be applied to a TreeOrder"),
        (lambda: tree_scan_lan.language_tree(X, torch.tensor([2.5])), TypeError, "`prompt_lengths` must hold integers"),
        (lambda: tree_scan_lan.language_tree(X, [2.5]), TypeError, "`prompt_lengths` must hold ints"),
        (lambda: tree_scan_lan.language_tree(X, torch.tensor([[2]])), ValueError, r"`prompt_lengths` must be an int or \(B,\)"),
        (lambda: tree_scan.grid_mst(X), ValueError, r"`guide` must be \(B, C, H, W\)"),
        (lambda: tree_scan.grid_mst(X.unsqueeze(0), metric="chebyshev"), ValueError, "`metric` must be one of"),
        (lambda: tree_scan_lan.candidate_edges(5, [1, 2, 3], device="cpu").shape and tree_scan_lan.language_tree(X, [1, 2]),
         ValueError, r"`prompt_lengths` must give one length per row \(1\); got 2"),
        (lambda: tree_scan_lan.language_tree(X, "3"), TypeError, "`prompt_lengths` must be an int"),
        (lambda: tree_scan.grid_edges(-1, 3), ValueError, "`height` must be >= 1, got -1"),
        (lambda: tree_scan.grid_edges(2, 2.0), TypeError, "`width` must be an int"),
        (lambda: tree_scan.grid_mst(torch.randn(1, 2, 0, 3)), ValueError, r"`guide` must have H, W >= 1"),
        (lambda: tree_scan.tree_scan(X[..., :0], W[..., :0], TREE[:, :0]), ValueError, r"`x` must have at least one vertex"),
        (lambda: tree_scan_lan.chain_tree(2, 0), ValueError, "`seq_len` must be >= 1, got 0"),
        (lambda: tree_scan_lan.candidate_edge_weights(torch.randn(3, 4)), ValueError, r"`features` must be \(B, C, L\)"),
    ],
)
def test_public_functions_name_the_bad_argument(call, error, message):
    with pytest.raises(error, match=message):
        call()


def order_and_parent(order, parent):
    return torch.tensor([order]), torch.tensor([parent])


@pytest.mark.parametrize(
    "order, parent, message",
    [
        ([0, 0, 1], [-1, 0, 1], "order.* is not a permutation"),
        ([0, 1, 3], [-1, 0, 1], "order.* is not a permutation"),
        ([0, 1, 2], [-1, 2, 0], "comes before its parent"),
        ([0, 1, 2], [-1, 0, 7], r"parent.* holds 7, outside \[-1, 3\)"),
    ],
)
@pytest.mark.parametrize("op", ["scan_all_roots", "scan_causal"])
def test_kernels_reject_orders_that_bfs_would_never_make(order, parent, message, op):
    if tree_scan.BACKEND == "reference":
        pytest.skip("the checks live in the compiled kernels")
    with pytest.raises(ValueError, match=message):
        getattr(torch.ops.tree_scan, op)(X, W, *order_and_parent(order, parent))


def test_sizes_from_tracers_are_accepted_as_ints():
    tree = tree_scan.grid_mst(torch.randn(1, 2, 3, 4))
    assert torch.equal(tree_scan.bfs(tree, torch.tensor(12)).order, tree_scan.bfs(tree, 12).order)
    with pytest.raises(TypeError, match="`num_vertices` must be an int, got Tensor"):
        tree_scan.bfs(tree, torch.tensor(12.0))


def test_kernels_reject_bad_indices_even_without_the_python_checks():
    if tree_scan.BACKEND == "reference":
        pytest.skip("the checks live in the compiled kernels")
    with pytest.raises(ValueError, match="outside"):
        torch.ops.tree_scan.minimum_spanning_tree(EDGES, WEIGHTS, 2)
    with pytest.raises(ValueError, match="outside"):
        torch.ops.tree_scan.bfs(TREE, 2, 0)
    with pytest.raises(ValueError, match="outside"):
        tree_scan.bfs(TREE, 2, validate=False)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")  # torch.func's own
@pytest.mark.parametrize("scan", [tree_scan.tree_scan, tree_scan.tree_scan_causal])
def test_unsupported_derivatives_are_refused_not_zero(scan):
    """Only first-order reverse mode has formulas; the rest must fail loudly, not give zeros."""
    x = torch.randn(1, 2, 3, dtype=torch.float64, requires_grad=True)
    w = torch.rand(1, 2, 3, dtype=torch.float64, requires_grad=True)
    grad_x, grad_w = torch.autograd.grad(scan(x, w, TREE).square().sum(), (x, w), create_graph=True)
    with pytest.raises(RuntimeError, match="first derivatives only"):
        torch.autograd.grad(grad_w.sum(), w)
    with pytest.raises(NotImplementedError, match="`x` carries a forward-mode tangent"):
        torch.func.jvp(lambda x: scan(x, w.detach(), TREE), (x.detach(),), (torch.ones_like(x),))
