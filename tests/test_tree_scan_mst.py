"""Minimum spanning trees: kernels and reference against Kruskal's algorithm."""

import math

import brute_force as bf
import pytest
import torch
from conftest import DEVICES

import tree_scan
from tree_scan import reference


def random_graph(num_vertices, extra_edges, generator, tied):
    """A connected graph: a random spanning tree plus random extra edges (self-loops and repeats included)."""
    edges = bf.random_tree(num_vertices, generator)
    if num_vertices > 1:
        extra = torch.randint(0, num_vertices, (extra_edges, 2), generator=generator)
        edges = torch.cat([edges, extra])
        edges = edges[torch.randperm(len(edges), generator=generator)]
    weights = torch.rand(len(edges), generator=generator, dtype=torch.float64)
    if tied:
        weights = (weights * 3).floor()  # three distinct values: ties everywhere
    return edges, weights


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("num_vertices", [1, 2, 3, 17, 64])
@pytest.mark.parametrize("tied", [False, True])
def test_mst_matches_kruskal_on_random_graphs(device, num_vertices, tied, generator):
    graphs = [random_graph(num_vertices, 2 * num_vertices, generator, tied) for _ in range(3)]
    edge_index = torch.stack([g[0] for g in graphs])
    edge_weight = torch.stack([g[1] for g in graphs])
    for dtype in (torch.float64, torch.float32, torch.bfloat16):
        weights = edge_weight.to(dtype)
        expected = bf.mst_batch(edge_index, weights.double(), num_vertices)  # rounding can make new ties
        got = tree_scan.minimum_spanning_tree(edge_index.to(device), weights.to(device), num_vertices)
        assert got.dtype == torch.long and got.shape == (3, num_vertices - 1, 2)
        assert torch.equal(got.cpu(), expected)
        assert torch.equal(reference.minimum_spanning_tree(edge_index, weights, num_vertices), expected)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("height,width", [(1, 1), (1, 5), (2, 2), (7, 5), (16, 16)])
@pytest.mark.parametrize("metric", tree_scan.METRICS)
def test_grid_mst_matches_kruskal(device, height, width, metric, generator):
    guide = torch.randn(2, 6, height, width, generator=generator, dtype=torch.float64)
    guide[1] = guide[1].round()  # integer features: many tied weights
    tree = tree_scan.grid_mst(guide.to(device), metric)
    weights = tree_scan.grid_edge_weights(guide, metric)
    edges = tree_scan.grid_edges(height, width).expand(2, -1, -1)
    assert torch.equal(tree.cpu(), bf.mst_batch(edges, weights, height * width))


def test_grid_weights_opcheck(generator):
    guide = torch.randn(2, 3, 4, 5, generator=generator)
    for metric in tree_scan.METRICS:
        torch.library.opcheck(torch.ops.tree_scan.grid_edge_weights, (guide, metric))


def test_grid_edges_are_vertical_then_horizontal_in_raster_order():
    # 2 x 3 grid: vertices 0 1 2 / 3 4 5
    expected = [[0, 3], [1, 4], [2, 5], [0, 1], [1, 2], [3, 4], [4, 5]]
    assert tree_scan.grid_edges(2, 3).tolist() == expected


@pytest.mark.parametrize("weights", [tree_scan.grid_edge_weights, reference.grid_edge_weights])
def test_grid_edge_weights_follow_the_metric_definitions(weights, generator):
    guide = torch.randn(1, 4, 2, 2, generator=generator, dtype=torch.float64)
    a, b = guide[0, :, 0, 0], guide[0, :, 1, 0]  # the first (vertical) edge
    cosine = torch.dot(a, b) / (a.norm() * b.norm())
    assert torch.allclose(weights(guide, "cosine")[0, 0], torch.exp(-cosine))
    assert torch.allclose(weights(guide, "euclidean")[0, 0], ((a - b) ** 2).sum())
    assert torch.allclose(weights(guide, "manhattan")[0, 0], (a - b).abs().sum())
    c = guide[0, :, 1, 1]  # the last (horizontal) edge joins (1, 0) and (1, 1)
    assert torch.allclose(weights(guide, "manhattan")[0, -1], (b - c).abs().sum())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("metric", tree_scan.METRICS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 1, 6), (2, 5, 7, 1), (3, 19, 9, 11)])
def test_grid_edge_weight_kernel_matches_reference_in_any_layout(device, metric, dtype, shape, generator):
    guide = torch.randn(shape, generator=generator, dtype=torch.float64).to(device, dtype)
    want = reference.grid_edge_weights(guide, metric)
    channels_last = guide.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    strided = torch.cat([guide, guide], dim=1)[:, ::2]
    for layout in (guide, channels_last, strided):
        got = tree_scan.grid_edge_weights(layout, metric)
        assert got.dtype == want.dtype and got.shape == want.shape
        assert torch.allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype, huge", [(torch.float32, 1e30), (torch.bfloat16, 1e30), (torch.float64, 1e200)])
def test_cosine_weights_of_huge_guides_are_those_of_the_unscaled_guide(device, dtype, huge, generator):
    """Cosine does not depend on each vector's scale. Pixels above ~1e19 (float32) used to
    overflow the kernels' sums into NaN weights and an arbitrary tree."""
    base = torch.randn(2, 24, 5, 6, generator=generator, dtype=torch.float64)
    scale = torch.ones(2, 1, 5, 6, dtype=torch.float64)
    scale[torch.rand(2, 1, 5, 6, generator=generator) < 0.5] = huge
    guide = (base * scale).to(dtype)
    want = reference.grid_edge_weights(guide.double() / scale, "cosine").float()
    channels_last = guide.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    wide = torch.zeros(2, 48, 5, 6, dtype=dtype)
    wide[:, ::2] = guide
    for layout in (guide, channels_last, wide[:, ::2]):
        got = tree_scan.grid_edge_weights(layout.to(device), "cosine")
        assert torch.allclose(got.float().cpu(), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_disconnected_graph_gives_padded_forest(device):
    # Two components {0, 1, 2} and {3, 4}, and the isolated vertex 5.
    edge_index = torch.tensor([[[0, 1], [1, 2], [0, 2], [3, 4]]])
    edge_weight = torch.tensor([[1.0, 2.0, 0.5, 1.0]])
    tree = tree_scan.minimum_spanning_tree(edge_index.to(device), edge_weight.to(device), 6)
    assert tree.cpu().tolist() == [[[0, 1], [0, 2], [3, 4], [-1, -1], [-1, -1]]]
    assert torch.equal(reference.minimum_spanning_tree(edge_index, edge_weight, 6), tree.cpu())


@pytest.mark.parametrize("device", DEVICES)
def test_nan_weights_come_after_infinity(device):
    edge_index = torch.tensor([[[0, 1], [0, 1], [1, 2], [1, 2], [0, 2]]])
    edge_weight = torch.tensor([[math.nan, math.inf, -0.0, 0.0, math.nan]])
    expected = bf.mst_batch(edge_index, edge_weight.double(), 3)
    assert expected.tolist() == [[[0, 1], [1, 2]]] and expected.shape == (1, 2, 2)
    got = tree_scan.minimum_spanning_tree(edge_index.to(device), edge_weight.to(device), 3)
    assert got.cpu().tolist() == [[[0, 1], [1, 2]]]
    # the kept edges are the +inf one (row 1) and -0.0 (row 2, tied with +0.0, lower index)
    assert torch.equal(reference.minimum_spanning_tree(edge_index, edge_weight, 3), got.cpu())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("weight_dtype", [torch.float16, torch.bfloat16])
def test_int32_indices_shared_edge_list_and_half_weights(device, weight_dtype, generator):
    edges, _ = random_graph(20, 30, generator, tied=False)
    weights = torch.rand(4, len(edges), generator=generator).to(weight_dtype)
    edge_index = edges.to(torch.int32).expand(4, -1, -1)  # batch stride 0: no copies
    got = tree_scan.minimum_spanning_tree(edge_index.to(device), weights.to(device), 20)
    assert torch.equal(got.cpu(), bf.mst_batch(edge_index.long(), weights.double(), 20))
