"""Detection/segmentation: every way a checkpoint reaches mmengine (``grootv.mm.test CONFIG CKPT``,
``load_from``, ``--resume``, ``init_cfg=dict(type='Pretrained')`` of the backbone and of other
modules) refuses a file whose unpickling runs code, names it and the trust switch; mmengine's
own checkpoints still load, and --trust-checkpoint loads files that pickle other objects."""

import os
import re
from fractions import Fraction

import pytest
import torch

pytest.importorskip("mmengine")
pytest.importorskip("grootv.mm")

from grootv_mm_helpers import SEGMENTATION_CONFIGS, make_ade, shrink_segmentor  # noqa: E402
from checkpoint_files import write_hostile_checkpoint, write_release_checkpoint  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.runner.checkpoint import CheckpointLoader, _load_checkpoint  # noqa: E402

from grootv.checkpoint import UnreadableCheckpointError  # noqa: E402
from grootv.classification.config import get_config  # noqa: E402
from grootv.mm import GrootVBackbone, load_pretrained  # noqa: E402
from grootv.mm import safe_loading  # noqa: E402
from grootv.mm import test as test_entry  # noqa: E402
from grootv.mm import train as train_entry  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

SWITCHES = ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")


@pytest.fixture
def hostile(tmp_path, code_ran_marker):
    """Shaped like an mmengine checkpoint, plus an object that creates ``code_ran_marker``."""
    return write_hostile_checkpoint(tmp_path / "hostile.pth", code_ran_marker, {"state_dict": {}, "meta": {"iter": 1}})


@pytest.fixture
def config(tmp_path, monkeypatch):
    """The real UperNet config with a tiny GrootV; 1 training iteration."""
    monkeypatch.setenv("GROOTVL_ADE_ROOT", make_ade(str(tmp_path / "ade")))
    cfg = Config.fromfile(SEGMENTATION_CONFIGS[1])
    shrink_segmentor(cfg, str(tmp_path / "work"))
    cfg.train_cfg.update(max_iters=1, val_interval=100)
    cfg.default_hooks.checkpoint.interval = 1
    return cfg


def dump(cfg, tmp_path) -> str:
    path = str(tmp_path / "tiny_upernet.py")
    cfg.dump(path)
    return path


def refusal(path) -> str:
    return rf"{re.escape(str(path))}.*posix.mkdir.*--trust-checkpoint"


def test_every_mmengine_loader_is_guarded():
    assert all(getattr(loader, "guarded_by_grootv", False) for loader in CheckpointLoader._schemes.values())


def test_test_refuses(config, tmp_path, hostile):
    with pytest.raises(UnreadableCheckpointError, match=refusal(hostile)):
        test_entry.main([dump(config, tmp_path), hostile, "--work-dir", str(tmp_path / "test")])


@pytest.mark.parametrize("how", ["load_from", "resume CKPT", "resume (latest in the work dir)"])
def test_train_refuses(config, tmp_path, hostile, how):
    work = tmp_path / "work"
    if how == "load_from":
        argv = ["--cfg-options", f"load_from={hostile}"]
    elif how == "resume CKPT":
        argv = ["--resume", hostile]
    else:
        work.mkdir()
        (work / "last_checkpoint").write_text(hostile)
        argv = ["--resume"]
    with pytest.raises(UnreadableCheckpointError, match=refusal(hostile)):
        train_entry.main([dump(config, tmp_path), *argv])


def test_pretrained_init_cfg_refuses(config, tmp_path, hostile):
    # The GrootV backbone reads it itself (trusted=True in the init_cfg is its switch) ...
    config.model.backbone.init_cfg = dict(type="Pretrained", checkpoint=hostile)
    with pytest.raises(UnreadableCheckpointError, match=rf"{re.escape(hostile)}.*posix.mkdir.*trusted=True"):
        train_entry.main([dump(config, tmp_path)])
    # ... any other module through mmengine's PretrainedInit.
    config.model.backbone.init_cfg = None
    config.model.decode_head.init_cfg = dict(type="Pretrained", checkpoint=hostile)
    with pytest.raises(UnreadableCheckpointError, match=refusal(hostile)):
        train_entry.main([dump(config, tmp_path)])


def test_own_checkpoints_load_and_the_trust_switch_is_scoped(config, tmp_path, monkeypatch):
    monkeypatch.delenv(SWITCHES[0], raising=False)
    monkeypatch.setenv(SWITCHES[1], "1")  # the user's own setting: restored afterwards
    path = dump(config, tmp_path)
    train_entry.main([path])
    checkpoint = str(tmp_path / "work" / "iter_1.pth")
    metrics = test_entry.main([path, checkpoint, "--work-dir", str(tmp_path / "test")])
    assert "mIoU" in metrics
    assert os.environ.get(SWITCHES[1]) == "1" and SWITCHES[0] not in os.environ

    # A file with an object mmengine does not write: refused, then read with the switch.
    other = tmp_path / "other.pth"
    state = torch.load(checkpoint, weights_only=False)
    state["meta"]["note"] = Fraction(1, 3)
    torch.save(state, other)
    with pytest.raises(UnreadableCheckpointError, match=r"other\.pth.*fractions.Fraction.*--trust-checkpoint"):
        test_entry.main([path, str(other), "--work-dir", str(tmp_path / "test")])
    assert "mIoU" in test_entry.main([path, str(other), "--work-dir", str(tmp_path / "test"), "--trust-checkpoint"])
    with safe_loading.trusted_checkpoints():
        assert _load_checkpoint(str(other))["meta"]["note"] == Fraction(1, 3)
    with pytest.raises(UnreadableCheckpointError):
        _load_checkpoint(str(other))


def test_a_statistic_is_the_only_getattr_a_checkpoint_may_pickle():
    from mmengine.logging import HistoryBuffer

    assert safe_loading._history_buffer_statistic(HistoryBuffer, "mean") is HistoryBuffer.mean
    for owner, name in ((HistoryBuffer, "__init__"), (HistoryBuffer, "_set_default_statistics"), (os, "system"),
                        (HistoryBuffer, "no_such_method")):
        with pytest.raises(Exception, match="not a HistoryBuffer statistic"):
            safe_loading._history_buffer_statistic(owner, name)


def test_release_checkpoints_initialise_the_backbone_without_trust(tmp_path):
    from grootv.models import GrootV

    torch.manual_seed(0)
    classifier = GrootV(channels=8, depths=[1, 1, 1, 1])
    path = tmp_path / "grootv_t_1k_224.pth"
    write_release_checkpoint(path, classifier, get_config(None))
    backbone = GrootVBackbone(channels=8, depths=[1, 1, 1, 1])
    result = load_pretrained(backbone, path)
    assert result.source == "model" and not result.missing
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, classifier.state_dict()[key]), key
