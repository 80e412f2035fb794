"""Initialising the mmdet/mmseg backbone from classification checkpoints, and loud failures."""

import os
import re

import pytest
import torch

pytest.importorskip("mmengine")
pytest.importorskip("grootv.mm")

from grootv_classification_helpers import run_args, tiny_dataset  # noqa: E402
from grootv_mm_helpers import DETECTION_CONFIGS, TINY_BACKBONE, TINY_WIDTHS  # noqa: E402

from grootv import CheckpointMismatchError  # noqa: E402
from grootv.classification import main as classification  # noqa: E402
from grootv.mm import GrootVBackbone, load_pretrained  # noqa: E402
from grootv.models import GrootV  # noqa: E402

TINY = dict(channels=8, depths=[1, 1, 1, 1])  # the classification helpers' TINY_GROOTV


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def classification_checkpoint(tmp_path_factory):
    """A checkpoint written by `python -m grootv.classification.main` (1 epoch, with EMA)."""
    data = tiny_dataset(tmp_path_factory.mktemp("data"), classes=3, train=4, val=2)
    output = str(tmp_path_factory.mktemp("run"))
    torch.set_num_threads(1)
    classification.run(run_args(data, output, "TRAIN.EPOCHS", "1", "TRAIN.EMA.DECAY", "0.5"))
    path = os.path.join(output, "ckpt_epoch_0.pth")
    checkpoint = torch.load(path, weights_only=True)
    assert {"model", "model_ema"} <= set(checkpoint)
    return path, checkpoint


def _assert_backbone_holds(backbone, state_dict):
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, state_dict[key]), key


def test_init_cfg_loads_the_model_or_ema_weights_of_a_classification_checkpoint(classification_checkpoint):
    path, checkpoint = classification_checkpoint
    backbone = GrootVBackbone(**TINY, init_cfg=dict(type="Pretrained", checkpoint=path))
    backbone.init_weights()
    _assert_backbone_holds(backbone, checkpoint["model"])

    ema = GrootVBackbone(**TINY, init_cfg=dict(type="Pretrained", checkpoint=path, use_ema=True))
    ema.init_weights()
    _assert_backbone_holds(ema, checkpoint["model_ema"])
    assert any(not torch.equal(a, b) for a, b in zip(backbone.state_dict().values(), ema.state_dict().values()))


def test_report_lists_only_the_classifier_as_unused(classification_checkpoint):
    path, _ = classification_checkpoint
    result = load_pretrained(GrootVBackbone(**TINY), path)
    assert result.source == "model" and not result.missing
    assert result.unexpected and all(k.startswith(("conv_head.", "head.")) for k in result.unexpected)


def test_detector_init_weights_loads_the_backbone(classification_checkpoint):
    """Through the real config: the runner's model.init_weights() reaches the backbone."""
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    path, checkpoint = classification_checkpoint
    cfg = Config.fromfile(DETECTION_CONFIGS[0])
    cfg.model.backbone.update({**TINY_BACKBONE, "init_cfg": dict(type="Pretrained", checkpoint=path)})
    cfg.model.neck.in_channels = TINY_WIDTHS
    init_default_scope("mmdet")
    detector = MODELS.build(cfg.model)
    detector.init_weights()
    _assert_backbone_holds(detector.backbone, checkpoint["model"])


def test_bare_and_detector_state_dicts(tmp_path):
    source = GrootV(num_classes=0, **TINY)
    bare = tmp_path / "bare.pth"
    torch.save(source.state_dict(), bare)
    backbone = GrootVBackbone(**TINY)
    assert load_pretrained(backbone, bare).source == "state_dict"
    _assert_backbone_holds(backbone, source.state_dict())

    # An mmengine checkpoint of a detector: its `backbone.` part is taken.
    detector = {"state_dict": {**{f"backbone.{k}": v for k, v in source.state_dict().items()},
                               "neck.conv.weight": torch.zeros(2)}, "meta": {}}
    result = load_pretrained(GrootVBackbone(**TINY), detector)
    assert result.source == "state_dict" and not result.missing
    assert result.unexpected and all(k.startswith("conv_head.") for k in result.unexpected)


def test_another_model_size_fails_with_the_shapes(tmp_path):
    path = tmp_path / "wider.pth"
    torch.save({"model": GrootV(channels=16, depths=[1, 1, 1, 1], num_classes=3).state_dict()}, path)
    backbone = GrootVBackbone(**TINY, init_cfg=dict(type="Pretrained", checkpoint=str(path)))
    with pytest.raises(CheckpointMismatchError, match=r"(?s)shape mismatch.*checkpoint \(8,.*channels and depths"):
        backbone.init_weights()


def test_a_checkpoint_of_something_else_fails(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(10, 64)}, path)
    with pytest.raises(CheckpointMismatchError, match="none of GrootVBackbone's"):
        load_pretrained(GrootVBackbone(**TINY), path)


def test_missing_keys_are_reported_or_fatal_with_strict():
    # Layer scales the checkpoint does not have (the release trains without them).
    source = GrootV(num_classes=0, **TINY).state_dict()
    result = load_pretrained(GrootVBackbone(layer_scale=1.0, **TINY), source)
    assert result.missing and all(re.search(r"gamma[12]$", k) for k in result.missing)
    with pytest.raises(CheckpointMismatchError, match="strict"):
        load_pretrained(GrootVBackbone(layer_scale=1.0, **TINY), source, strict=True)


class ConfigLike:
    """Stands for the yacs config the release pickles into its training checkpoints."""


def test_unreadable_files_name_the_file(tmp_path):
    backbone = GrootVBackbone(**TINY)
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        load_pretrained(backbone, tmp_path / "nowhere.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable PyTorch checkpoint"):
        load_pretrained(backbone, garbage)
    with pytest.raises(ValueError, match="use_ema"):
        load_pretrained(backbone, {"model": GrootV(num_classes=0, **TINY).state_dict()}, use_ema=True)

    release_like = tmp_path / "release.pth"
    torch.save({"model": GrootV(num_classes=0, **TINY).state_dict(), "config": ConfigLike()}, release_like)
    with pytest.raises(ValueError, match="trusted=True"):
        load_pretrained(backbone, release_like)
    assert load_pretrained(backbone, release_like, trusted=True).source == "model"


def test_damaged_files_are_one_error_naming_the_file(tmp_path):
    backbone = GrootVBackbone(**TINY)
    full = tmp_path / "full.pth"
    torch.save({"model": GrootV(num_classes=0, **TINY).state_dict()}, full)
    (tmp_path / "hello.pth").write_bytes(b"hello world")  # a raw KeyError from torch.load before
    (tmp_path / "truncated.pth").write_bytes(full.read_bytes()[:1000])  # a raw RuntimeError before
    for name in ("hello.pth", "truncated.pth"):
        with pytest.raises(ValueError, match=f"{name}.* is not a readable PyTorch checkpoint"):
            load_pretrained(backbone, tmp_path / name)
