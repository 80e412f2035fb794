"""The heavy-path plans of the GPU scans (tree_scan.heavy_paths), against a plan walked
vertex by vertex (brute_force.heavy_path_plan)."""

import brute_force as bf
import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import tree_scan
from tree_scan import heavy_paths
from tree_scan.heavy_paths import ENTRY, HEAD, KIND, PADDING, PATH_VERTEX


def rows_of_children(tree: torch.Tensor, parent: list[int]) -> list[int]:
    """The tree row joining every vertex to its parent (0 at roots)."""
    row_of = [0] * len(parent)
    for r, (u, v) in enumerate(tree.tolist()):
        if u >= 0:
            row_of[u if parent[u] == v else v] = r
    return row_of


def expected_layout(parent: list[int], roots_first=(), row_of=None) -> tuple[list[int], torch.Tensor, torch.Tensor]:
    """(order, elements (4, 2V), rounds (R + 1,)) as heavy_paths lays them out."""
    order, elements, starts = bf.heavy_path_plan(parent, list(roots_first), row_of)
    size = len(parent)
    slot_of = {}
    for kind, v in elements:
        if kind == "vertex":
            slot_of[v] = len(slot_of)
    table = torch.tensor([[0, -1, -1, PADDING]] * (2 * size)).T.contiguous()
    for k, (kind, v) in enumerate(elements):
        if kind == "vertex":
            head = parent[v] < 0 or order.index(v) != order.index(parent[v]) + 1
            table[:, k] = torch.tensor([v, slot_of[v], slot_of.get(parent[v], -1), HEAD if head else PATH_VERTEX])
        else:
            table[:, k] = torch.tensor([v, -1, slot_of[v], ENTRY])
    return order, table, torch.tensor(starts)


def deep_tree(num_vertices: int, generator) -> torch.Tensor:
    """Every vertex hangs off one of the three before it: hundreds of levels, light paths."""
    edges = [[v, v - 1 - int(torch.randint(0, min(v, 3), (1,), generator=generator))] for v in range(1, num_vertices)]
    return torch.tensor(edges).view(-1, 2)


def trees_of(kind: str, num_vertices: int, generator) -> torch.Tensor:
    if kind == "random":
        return bf.random_tree(num_vertices, generator)
    if kind == "deep":
        return deep_tree(num_vertices, generator)
    if kind == "star":  # one vertex of high degree
        centre = int(torch.randint(0, num_vertices, (1,), generator=generator))
        return torch.tensor([[centre, v] for v in range(num_vertices) if v != centre]).view(-1, 2)
    height = max(h for h in range(1, 16) if num_vertices % h == 0 and h * h <= num_vertices)
    return tree_scan.grid_mst(torch.randn(1, 4, height, num_vertices // height, generator=generator))[0]


@pytest.mark.parametrize("kind", ["random", "deep", "star", "grid"])
@pytest.mark.parametrize("num_vertices", [1, 2, 3, 12, 35, 200])
def test_plan_equals_the_plan_walked_vertex_by_vertex(kind, num_vertices, generator):
    tree = torch.stack([trees_of(kind, num_vertices, generator) for _ in range(3)])
    root = int(torch.randint(0, num_vertices, (1,), generator=generator))
    order, parent, layout = heavy_paths.root_forest(tree, num_vertices, root)
    want_order, want_parent = bf.bfs_batch(tree, num_vertices, root)
    assert torch.equal(parent, want_parent)  # rooted as tree_scan.bfs roots it
    for b in range(3):
        parents = want_parent[b].tolist()
        order_b, elements, rounds = expected_layout(parents, [root], rows_of_children(tree[b], parents))
        assert order[b].tolist() == order_b
        assert torch.equal(layout.elements[b].long(), elements)
        assert torch.equal(layout.rounds[b].long(), rounds)
    assert layout.elements.dtype == layout.rounds.dtype == torch.int32
    assert layout.rounds.shape == (3, num_vertices.bit_length() + 1)


def test_forests_root_their_other_trees_at_the_smallest_vertex(generator):
    tree = torch.tensor([[[0, 2], [4, 2], [1, 3], [-1, -1], [6, 5], [-1, -1]]])
    for root in range(7):
        order, parent, layout = heavy_paths.root_forest(tree, 7, root)
        assert torch.equal(parent, bf.bfs_batch(tree, 7, root)[1])
        parents = parent[0].tolist()
        order_b, elements, rounds = expected_layout(parents, [root], rows_of_children(tree[0], parents))
        assert order[0].tolist() == order_b and torch.equal(layout.elements[0].long(), elements)
    lonely = torch.full((2, 4, 2), -1)  # no edges at all: five trees of one vertex
    order, parent, layout = heavy_paths.root_forest(lonely, 5, 3)
    assert order.tolist() == [[3, 0, 1, 2, 4]] * 2 and (parent == -1).all()


@pytest.mark.parametrize("num_vertices", [1, 9, 150])
def test_plan_from_parents(num_vertices, generator):
    """From a parent array (the roots given, siblings in the order of their numbers)."""
    tree = torch.stack([trees_of("random", num_vertices, generator) for _ in range(2)])
    parent = bf.bfs_batch(tree, num_vertices, 0)[1]
    layout = heavy_paths.layout_from_parent(parent)
    for b in range(2):
        _, elements, rounds = expected_layout(parent[b].tolist())
        assert torch.equal(layout.elements[b].long(), elements) and torch.equal(layout.rounds[b].long(), rounds)


def test_light_depth_stays_below_log2_of_the_size(generator):
    # The plan's room for rounds is what the kernels loop over: it must hold every path.
    for kind in ("deep", "grid", "random"):
        tree = torch.stack([trees_of(kind, 200, generator) for _ in range(4)])
        _, _, layout = heavy_paths.root_forest(tree, 200, 0)
        assert (layout.rounds[:, -1] == 200 + (layout.elements[:, KIND] == ENTRY).sum(1)).all()


def test_chain_is_one_path_shared_by_the_batch():
    order = tree_scan.chain(3, 7)
    tree = torch.stack([torch.arange(6), torch.arange(1, 7)], 1).expand(3, -1, -1)
    want = heavy_paths.root_forest(tree, 7, 0)
    assert torch.equal(order.order, want[0]) and torch.equal(order.parent, want[1])
    assert torch.equal(order.layout.elements[:, :, :7], want[2].elements[:, :, :7])
    assert torch.equal(order.layout.rounds[:, :2], want[2].rounds[:, :2])
    assert order.layout.elements.stride(0) == 0  # one plan for the batch
    assert tree_scan.chain(5, 7).layout.elements.data_ptr() == order.layout.elements.data_ptr()  # made once


def test_chains_made_while_tracing_are_not_kept():
    length = 1237  # a length no other test asks for: not in the cache yet
    with FakeTensorMode():
        tree_scan.chain(2, length)
    real = tree_scan.chain(2, length)
    assert type(real.order) is torch.Tensor and type(real.layout.elements) is torch.Tensor
    assert torch.equal(real.parent[0], torch.arange(length) - 1)


def test_prepare_roots_like_bfs(generator):
    tree = torch.stack([trees_of("random", 40, generator) for _ in range(2)])
    for root in (0, 17, 39):
        prepared, breadth_first = tree_scan.prepare(tree, root=root), tree_scan.bfs(tree, root=root)
        assert torch.equal(prepared.parent, breadth_first.parent)


def test_planning_reads_no_tensor_values_on_the_host():
    """No .item(), no data-dependent branch: the plan (and so every default call on a GPU)
    never waits for the device. Under fake tensors any such read would raise."""
    with FakeTensorMode():
        tree = torch.zeros(2, 99, 2, dtype=torch.long)
        order, parent, layout = heavy_paths.root_forest(tree, 100, 5)
        again = heavy_paths.layout_from_parent(parent)
    assert layout.elements.shape == again.elements.shape == (2, 4, 200)
    assert order.shape == parent.shape == (2, 100) and layout.rounds.shape == (2, 8)


@pytest.mark.parametrize(
    "tree, message",
    [
        ([[0, 1], [1, 2], [2, 0]], "cycle"),
        ([[0, 1], [1, 1], [-1, -1]], "cycle"),
        ([[0, 1], [0, 1], [-1, -1]], "cycle"),
        ([[0, 1], [1, 4], [-1, -1]], "out of range"),
    ],
)
def test_trees_that_are_not_forests_are_refused(tree, message):
    with pytest.raises(RuntimeError, match=message):
        heavy_paths.root_forest(torch.tensor([tree]), 4, 0)


def test_parents_with_a_cycle_are_refused():
    with pytest.raises(RuntimeError, match="forest"):
        heavy_paths.layout_from_parent(torch.tensor([[-1, 2, 3, 1]]))
