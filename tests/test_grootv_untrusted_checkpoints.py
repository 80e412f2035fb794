"""Checkpoints are data: every GrootV loader the docs name refuses a file whose unpickling would
run code, with a message naming the file and the trust switch, and still reads the release's
files (tensors, plain values and a yacs config) without that switch.

(The detection/segmentation loaders: tests/test_grootv_mm_untrusted.py.)
"""

import importlib.util
import os
import re

import numpy as np
import pytest
import torch
from grootv_classification_helpers import ROOT, TINY_GROOTV, run_args, tiny_dataset
from checkpoint_files import write_hostile_checkpoint, write_release_checkpoint
from PIL import Image
from yacs.config import CfgNode

import grootv
from grootv.checkpoint import UnreadableCheckpointError
from grootv.classification import main as pipeline
from grootv.classification.config import get_config
from grootv.classification.errors import CheckpointError
from grootv.models import GrootV

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(channels=8, depths=[1, 1, 1, 1], num_classes=3)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_dataset(tmp_path_factory.mktemp("data"), classes=3, train=4, val=2)


@pytest.fixture
def hostile(tmp_path, code_ran_marker):
    """A training checkpoint of the tiny model, plus an object that creates ``code_ran_marker``."""
    state = GrootV(**TINY).state_dict()
    return write_hostile_checkpoint(tmp_path / "hostile.pth", code_ran_marker, {"model": state, "epoch": 0, "optimizer": {}})


def release_checkpoint(path, model: torch.nn.Module) -> dict:
    return write_release_checkpoint(path, model, get_config(None, TINY_GROOTV))  # frozen, nested CfgNodes


@pytest.mark.parametrize("legacy", [False, True])
def test_the_hostile_file_does_run_code_when_trusted(tmp_path, legacy):
    """The bait works: plain unpickling creates the code_ran_marker (so the tests below test something)."""
    code_ran_marker = tmp_path / "ran"
    path = write_hostile_checkpoint(tmp_path / "x.pth", code_ran_marker, {"epoch": 0}, legacy=legacy)
    torch.load(path, weights_only=False)
    assert code_ran_marker.is_dir()


@pytest.mark.parametrize("legacy", [False, True])
def test_load_checkpoint_refuses(tmp_path, code_ran_marker, legacy):
    path = write_hostile_checkpoint(tmp_path / "h.pth", code_ran_marker, {"model": GrootV(**TINY).state_dict()},
                                    legacy=legacy)
    with pytest.raises(UnreadableCheckpointError, match=r"h\.pth.*posix.mkdir.*trusted=True"):
        grootv.load_checkpoint(GrootV(**TINY), path)


@pytest.mark.parametrize("flags", [
    ("--resume", "{path}"),
    ("--eval", "--resume", "{path}"),
    ("--pretrained", "{path}"),
    ("--throughput", "--throughput-iters", "1", "--resume", "{path}"),
], ids=["resume", "eval", "pretrained", "throughput"])
def test_classification_refuses(data, hostile, tmp_path, flags):
    flags = tuple(flag.format(path=hostile) for flag in flags)
    with pytest.raises(CheckpointError, match=rf"{re.escape(hostile)}.*posix.mkdir.*add --trust-checkpoint"):
        pipeline.run(run_args(data, str(tmp_path / "out"), "TRAIN.EPOCHS", "1", flags=flags))


@pytest.mark.parametrize("name, mode", [
    ("ckpt_epoch_3.pth", ()), ("ckpt_epoch_best.pth", ()), ("ckpt_epoch_ema_best.pth", ()),
    ("ckpt_epoch_3.pth", ("--eval",)),
])
def test_classification_auto_resume_refuses(data, hostile, tmp_path, name, mode):
    output = tmp_path / "out"
    output.mkdir()
    os.replace(hostile, output / name)
    with pytest.raises(CheckpointError, match=rf"{re.escape(str(output / name))}.*add --trust-checkpoint"):
        pipeline.run(run_args(data, str(output), "TRAIN.EPOCHS", "5", flags=("--auto-resume", *mode)))


def test_release_checkpoints_load_without_trust(data, tmp_path):
    torch.manual_seed(0)
    model = GrootV(**TINY)
    path = tmp_path / "release.pth"
    saved = release_checkpoint(path, model)
    loaded = GrootV(**TINY)
    assert grootv.load_checkpoint(loaded, path).source == "model"
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    checkpoint = grootv.checkpoint.read_checkpoint(path)
    assert isinstance(checkpoint["config"], CfgNode) and checkpoint["config"] == saved["config"]
    assert checkpoint["config"].is_frozen() and isinstance(checkpoint["config"].MODEL.GROOTV, CfgNode)
    assert checkpoint["epoch"] == 299 and checkpoint["ema_decay"] == 0.9999

    result = pipeline.run(run_args(data, str(tmp_path / "eval"), flags=("--eval", "--resume", str(path))))
    assert result["weights"] == "model" and result["val_images"] == 6


# scripts/visualize_affinity.py


@pytest.fixture(scope="module")
def visualize():
    spec = importlib.util.spec_from_file_location("visualize_affinity", os.path.join(ROOT, "scripts",
                                                                                     "visualize_affinity.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "image.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(path)
    return str(path)


def test_visualize_refuses(visualize, hostile, image, tmp_path):
    with pytest.raises(UnreadableCheckpointError, match=rf"{re.escape(hostile)}.*add --trusted"):
        visualize.main(["--image", image, "--checkpoint", hostile, "--img-size", "32",
                        "--out", str(tmp_path / "fig")])


def test_visualize_draws_a_release_checkpoint_without_trust(visualize, image, tmp_path):
    release_checkpoint(tmp_path / "release.pth", GrootV(**TINY))
    written = visualize.main(["--image", image, "--checkpoint", str(tmp_path / "release.pth"), "--img-size", "32",
                              "--out", str(tmp_path / "fig")])
    assert all(os.path.isfile(path) for path in written)
