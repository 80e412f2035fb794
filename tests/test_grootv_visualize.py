"""scripts/visualize_affinity.py: the affinity maps it draws, and a run end to end."""

import importlib.util
import os

import numpy as np
import pytest
import torch
from PIL import Image

import tree_scan
from grootv.models import GrootV, Tree_SSM
from grootv.models.tree_ssm import raster_chain

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "scripts", "visualize_affinity.py")


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("visualize_affinity", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_affinity_is_the_path_product(script, generator):
    # On a chain, S(i, j) is the product of the child-side weights between i and j.
    decay = torch.rand(3, 10, generator=generator, dtype=torch.float64)
    chain = tree_scan.bfs(raster_chain(1, 2, 5))
    got = script.affinity(decay, chain, 4, tree_scan.tree_scan)
    want = torch.stack([torch.prod(decay[:, min(j, 4) + 1:max(j, 4) + 1], dim=1) for j in range(10)], 1).mean(0)
    torch.testing.assert_close(got, want)
    assert got[4] == 1


@pytest.mark.parametrize("root", ["first", "last"])
def test_single_root_models_are_drawn_with_their_own_causal_scan(script, generator, root):
    """With one root, pixel i's output gathers only the pixels below it in the tree: on the
    raster chain rooted at the first pixel those after i, rooted at the last those before."""
    ssm = Tree_SSM(4, root=root, scan="raster")
    decay = torch.rand(8, 10, generator=generator, dtype=torch.float64) * 0.5 + 0.25
    chain = ssm.order(raster_chain(1, 2, 5), 10)
    maps = script.affinity_maps(ssm, decay, chain, (2, 5), pixel=4)
    for values in maps.values():
        reached = values > 0
        assert reached[4] and values[4] == pytest.approx(1)
        assert list(reached) == [j >= 4 if root == "first" else j <= 4 for j in range(10)]
        # The product of the child-side weights on the path up from j to i = 4.
        want = [torch.prod(decay[:, 5:j + 1] if root == "first" else decay[:, j:4], dim=1).mean()
                if reached[j] else 0.0 for j in range(10)]
        np.testing.assert_allclose(values, want, rtol=1e-12)


def test_capture_block_records_the_blocks_own_scan(script):
    model = GrootV(channels=8, depths=[1, 2, 1, 1], share_tree=True).eval()
    decay, tree, grid = script.capture_block(model, torch.randn(1, 3, 64, 48), level=1, block=1)
    assert grid == (8, 6) and decay.shape == (32, 48) and tree.order.shape == (1, 48)
    assert ((decay > 0) & (decay < 1)).all()
    assert "scan_along" not in vars(model.levels[1].blocks[1].TreeSSM)  # restored
    with pytest.raises(ValueError, match="--block"):
        script.capture_block(model, torch.randn(1, 3, 64, 48), level=1, block=2)


def test_end_to_end_writes_both_pngs(script, tmp_path):
    image = (np.indices((90, 120)).sum(0) % 40 < 20)[..., None] * np.array([200, 60, 20], dtype=np.uint8)
    path = tmp_path / "stripes.png"
    Image.fromarray(image.astype(np.uint8)).save(path)
    out = tmp_path / "figures" / "example"
    written = script.main(["--image", str(path), "--img-size", "64", "--pixel", "10", "50", "--out", str(out),
                           "--level", "1"])
    assert written == [f"{out}_affinity.png", f"{out}_tree.png"]
    for png in written:
        assert Image.open(png).size[0] > 200


def test_bad_arguments(script, tmp_path):
    with pytest.raises(FileNotFoundError, match="--image"):
        script.main(["--image", str(tmp_path / "none.jpg")])
    Image.new("RGB", (40, 40)).save(tmp_path / "black.png")
    with pytest.raises(ValueError, match="--pixel"):
        script.main(["--image", str(tmp_path / "black.png"), "--img-size", "32", "--pixel", "40", "0",
                     "--out", str(tmp_path / "x")])


def test_checkpoints_of_this_project_build_the_model_they_describe(script, tmp_path):
    """Custom widths, depths, a variant, a class count and an image size, as training records
    them (yaml config text), and a bare state_dict of another shape."""
    from grootv.classification.config import get_config

    config = get_config(None, ["MODEL.GROOTV.CHANNELS", "8", "MODEL.GROOTV.DEPTHS", "[1, 1, 2, 1]",
                               "MODEL.GROOTV.SHARE_TREE", "True", "DATA.IMG_SIZE", "48"])
    trained = GrootV(channels=8, depths=[1, 1, 2, 1], num_classes=3, share_tree=True)
    torch.save({"model": trained.state_dict(), "epoch": 4, "config": config.dump(), "classes": ["a", "b", "c"]},
               tmp_path / "ckpt_epoch_4.pth")
    image = tmp_path / "image.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 60, 3), dtype=np.uint8)).save(image)
    args = script.parse_args(["--image", str(image), "--checkpoint", str(tmp_path / "ckpt_epoch_4.pth")])
    model, name, view = script.build_model(args, torch.load(tmp_path / "ckpt_epoch_4.pth", weights_only=True))
    assert [len(level.blocks) for level in model.levels] == [1, 1, 2, 1] and model.num_classes == 3
    assert model.levels[2].share_tree and view["size"] == 48 and "8 channels" in name
    for key, value in trained.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    written = script.main(["--image", str(image), "--checkpoint", str(tmp_path / "ckpt_epoch_4.pth"),
                           "--level", "2", "--block", "1", "--out", str(tmp_path / "fig")])
    assert all(os.path.isfile(path) for path in written)

    bare = GrootV(channels=16, depths=[1, 2, 1, 1], num_classes=7, mlp_ratio=2.0, cls_scale=1.25, layer_scale=1e-3)
    torch.save(bare.state_dict(), tmp_path / "bare.pth")
    args = script.parse_args(["--image", str(image), "--checkpoint", str(tmp_path / "bare.pth")])
    model, _, view = script.build_model(args, torch.load(tmp_path / "bare.pth", weights_only=True))
    assert view["size"] == 224 and model.num_classes == 7
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in bare.state_dict().items()}
