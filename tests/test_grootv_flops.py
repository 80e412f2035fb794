"""count_flops: fvcore's count of the layers plus the tree scan's own multiply-adds."""

import pytest
import timm
import torch

import grootv
from grootv.models import GrootV


def test_grootv_tiny_counts_the_papers_4_8_gflops():
    model = timm.create_model("grootv_tiny")
    flops = grootv.count_flops(model, img_size=224)
    # 4,786,072,640 today; the paper's table rounds to 4.8 G: stay within that rounding.
    assert 4.75e9 <= flops < 4.85e9
    assert model.training  # the mode is restored


def test_scan_work_is_counted_per_element():
    # "all" and "first" differ only in the scan (4 vs 1 multiply-adds per element).
    depths = [1, 2, 1, 1]
    elements = sum(depth * (2 * 8 * 2**i) * (16 // 2**i) * (24 // 2**i) for i, depth in enumerate(depths))
    all_roots = grootv.count_flops(GrootV(channels=8, depths=depths, root="all"), img_size=(64, 96))
    one_root = grootv.count_flops(GrootV(channels=8, depths=depths, root="first"), img_size=(64, 96))
    assert all_roots - one_root == (4 - 1) * elements
    assert grootv.flops.SCAN_FLOPS_PER_ELEMENT == {"tree_scan::scan_all_roots": 4, "tree_scan::scan_causal": 1}


def test_variants_and_shared_trees_are_counted():
    shared = grootv.count_flops(GrootV(channels=8, depths=[1, 2, 1, 1], share_tree=True), img_size=64)
    assert shared == grootv.count_flops(GrootV(channels=8, depths=[1, 2, 1, 1]), img_size=64)
    assert grootv.count_flops(GrootV(channels=8, depths=[1, 1, 1, 1], scan="raster"), img_size=64) > 0


@pytest.mark.parametrize("size", [0, (224,), "224", True])
def test_bad_image_size(size):
    with pytest.raises(ValueError, match="img_size"):
        grootv.count_flops(GrootV(channels=8, depths=[1, 1, 1, 1]), img_size=size)


def test_bad_model():
    with pytest.raises(TypeError, match="model"):
        grootv.count_flops(torch.zeros(1))


def test_bad_in_chans():
    with pytest.raises(ValueError, match="in_chans"):
        grootv.count_flops(GrootV(channels=8, depths=[1, 1, 1, 1]), img_size=32, in_chans=0)
