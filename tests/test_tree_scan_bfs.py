"""Breadth-first order: kernels and reference against a deque."""

import brute_force as bf
import pytest
import torch
from conftest import DEVICES

import tree_scan
from tree_scan import reference


def random_trees(batch, num_vertices, generator):
    return torch.stack([bf.random_tree(num_vertices, generator) for _ in range(batch)])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("num_vertices", [1, 2, 3, 10, 101])
def test_bfs_matches_a_fifo_queue(device, num_vertices, generator):
    tree = random_trees(3, num_vertices, generator)
    root = int(torch.randint(0, num_vertices, (1,), generator=generator))
    expected_order, expected_parent = bf.bfs_batch(tree, num_vertices, root)
    for index_dtype in (torch.int64, torch.int32):
        got = tree_scan.bfs(tree.to(device, index_dtype), root=root)
        assert torch.equal(got.order.cpu(), expected_order)
        assert torch.equal(got.parent.cpu(), expected_parent)
    ref_order, ref_parent = reference.bfs(tree, num_vertices, root)
    assert torch.equal(ref_order, expected_order) and torch.equal(ref_parent, expected_parent)


@pytest.mark.parametrize("device", DEVICES)
def test_bfs_of_a_forest_roots_each_tree_at_its_smallest_vertex(device):
    # Trees {0, 4}, {1, 3, 5} and the lone vertex 2, rooted at 3.
    tree = torch.tensor([[[3, 5], [4, 0], [1, 3], [-1, -1], [-1, -1]]])
    got = tree_scan.bfs(tree.to(device), num_vertices=6, root=3)
    assert got.order.cpu().tolist() == [[3, 5, 1, 0, 4, 2]]
    assert got.parent.cpu().tolist() == [[-1, 3, -1, -1, 0, 3]]
    ref_order, ref_parent = reference.bfs(tree, 6, 3)
    assert torch.equal(ref_order, got.order.cpu()) and torch.equal(ref_parent, got.parent.cpu())


@pytest.mark.parametrize("device", DEVICES)
def test_bfs_of_grid_trees_matches_a_fifo_queue(device, generator):
    guide = torch.randn(4, 3, 9, 13, generator=generator)
    tree = tree_scan.grid_mst(guide.to(device))
    order = tree_scan.bfs(tree)
    expected_order, expected_parent = bf.bfs_batch(tree.cpu(), 9 * 13)
    assert torch.equal(order.order.cpu(), expected_order)
    assert torch.equal(order.parent.cpu(), expected_parent)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "rows",
    [
        [[0, 1], [1, 0], [1, 2]],  # a repeated edge
        [[0, 1], [2, 2], [1, 2]],  # a self-loop
        [[0, 1], [1, 2], [2, 0]],  # a cycle
        [[0, 1], [1, 2], [0, 2], [-1, -1]],  # a cycle beside padding
    ],
)
def test_bfs_rejects_edge_lists_that_are_not_forests(device, rows):
    tree = torch.tensor([rows], device=device)
    if device == "cpu":
        with pytest.raises(ValueError, match=r"tree\[0\] is not a tree \(nor a forest\)"):
            tree_scan.bfs(tree, num_vertices=3)
    with pytest.raises(ValueError, match=r"tree\[0\] is not a tree \(nor a forest\)"):
        reference.bfs(tree, 3, 0)
