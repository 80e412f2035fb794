"""Operator registration: schemas, and the fall-back to the reference when no kernel is compiled."""


import pytest
import torch
from conftest import run_in_python_without

import tree_scan
from tree_scan import _library


@pytest.mark.skipif(tree_scan.BACKEND == "reference", reason="the extension is not built")
def test_python_schemas_equal_the_compiled_ones():
    for name, schema in _library.SCHEMAS.items():
        compiled = str(getattr(torch.ops.tree_scan, name).default._schema)
        assert compiled == f"tree_scan::{schema}"


def test_without_the_extension_the_reference_serves_every_operator():
    run_in_python_without(
        ("tree_scan._C",),
        """
        import warnings
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import tree_scan
        assert tree_scan.BACKEND == "reference", tree_scan.BACKEND
        assert sum("could not be loaded" in str(w.message) for w in caught) == 1

        import torch
        sys.path.insert(0, "tests")
        import brute_force as bf
        torch.manual_seed(0)
        guide = torch.randn(2, 3, 4, 5, dtype=torch.float64)
        tree = tree_scan.grid_mst(guide)
        edges = tree_scan.grid_edges(4, 5).expand(2, -1, -1)
        assert torch.equal(tree, bf.mst_batch(edges, tree_scan.grid_edge_weights(guide), 20))
        order = tree_scan.bfs(tree)
        assert torch.equal(order.order, bf.bfs_batch(tree, 20)[0])
        x = torch.randn(2, 3, 20, dtype=torch.float64, requires_grad=True)
        w = torch.rand(2, 3, 20, dtype=torch.float64, requires_grad=True)
        for scan, causal in ((tree_scan.tree_scan, False), (tree_scan.tree_scan_causal, True)):
            want = bf.scan_by_definition(x.detach(), w.detach(), order.parent, causal)
            assert torch.allclose(scan(x, w, order), want)
            assert torch.autograd.gradcheck(lambda a, b: scan(a, b, order), (x, w))
        print("ok")
        """,
    )


def test_every_public_function_runs_on_meta_tensors():
    """Shapes without values: no index check may read them (it would need .item())."""
    guide = torch.empty(2, 4, 5, 6, device="meta")
    tree = tree_scan.grid_mst(guide)
    edges = tree_scan.grid_edges(5, 6, device="meta").expand(2, -1, -1)
    assert tree_scan.minimum_spanning_tree(edges, torch.empty(2, 49, device="meta"), 30, validate=True).shape == (2, 29, 2)
    x = torch.empty(2, 3, 30, device="meta")
    for order in (tree, tree_scan.bfs(tree, validate=True), tree_scan.prepare(tree), tree_scan.chain(2, 30, "meta")):
        assert tree_scan.tree_scan(x, x, order).shape == tree_scan.tree_scan_causal(x, x, order).shape == (2, 3, 30)


def test_torch_export_of_code_that_builds_and_scans_trees(generator):
    class Block(torch.nn.Module):
        def forward(self, guide, x, weight):
            order = tree_scan.bfs(tree_scan.grid_mst(guide))
            return tree_scan.tree_scan(x, weight, order) + tree_scan.tree_scan_causal(x, weight, order)

    guide = torch.randn(2, 4, 5, 6, generator=generator)
    x, weight = torch.randn(2, 3, 30, generator=generator), torch.rand(2, 3, 30, generator=generator)
    exported = torch.export.export(Block(), (guide, x, weight))
    assert torch.allclose(exported.module()(guide, x, weight), Block()(guide, x, weight))
    guide2 = torch.randn(2, 4, 5, 6, generator=generator)  # another tree: built inside the program
    assert torch.allclose(exported.module()(guide2, x, weight), Block()(guide2, x, weight))
