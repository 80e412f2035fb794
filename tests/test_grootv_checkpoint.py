"""Checkpoints: strict round trips, the release's file layouts, and loud failures."""

import pytest
import timm
import torch

import grootv
from grootv import CheckpointMismatchError, load_checkpoint
from grootv.models import GrootV

TINY = dict(channels=8, depths=[1, 2, 1, 1], num_classes=5)


class ConfigLike:
    """Stands for the yacs config the release pickles into its training checkpoints."""


def outputs(model, image):
    with torch.no_grad():
        return model.eval()(image)


@pytest.fixture
def trained():
    torch.manual_seed(0)
    model = GrootV(**TINY)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


def test_state_dict_round_trip_is_strict_and_exact(trained, tmp_path):
    path = tmp_path / "model.pth"
    torch.save(trained.state_dict(), path)
    fresh = GrootV(**TINY)
    result = load_checkpoint(fresh, path)
    assert result.source == "state_dict" and not (result.missing or result.unexpected or result.mismatched)
    image = torch.randn(1, 3, 40, 48)
    assert torch.equal(outputs(fresh, image), outputs(trained, image))
    # And torch's own strict loading accepts it as well.
    GrootV(**TINY).load_state_dict(torch.load(path), strict=True)


def test_release_layouts_model_model_ema_and_ddp_prefix(trained, tmp_path):
    image = torch.randn(1, 3, 32, 32)
    ema = GrootV(**TINY)
    plain_sd = trained.state_dict()
    ema_sd = {f"module.{k}": v for k, v in ema.state_dict().items()}  # saved from inside DDP
    checkpoint = {"model": plain_sd, "model_ema": ema_sd, "epoch": 299, "max_accuracy": 83.4}

    model = GrootV(**TINY)
    assert load_checkpoint(model, checkpoint).source == "model"
    assert torch.equal(outputs(model, image), outputs(trained, image))
    assert load_checkpoint(model, checkpoint, use_ema=True).source == "model_ema"
    assert torch.equal(outputs(model, image), outputs(ema, image))
    assert load_checkpoint(model, {"model_ema": ema_sd}).source == "model_ema"

    with pytest.raises(ValueError, match="use_ema=False"):
        load_checkpoint(model, {"model_ema": ema_sd}, use_ema=False)
    with pytest.raises(ValueError, match="use_ema=True"):
        load_checkpoint(model, plain_sd, use_ema=True)


def test_pickled_config_needs_trusted(trained, tmp_path):
    path = tmp_path / "ckpt_epoch_299.pth"
    torch.save({"model": trained.state_dict(), "config": ConfigLike()}, path)
    with pytest.raises(ValueError, match="trusted=True"):
        load_checkpoint(GrootV(**TINY), path)
    assert load_checkpoint(GrootV(**TINY), path, trusted=True).source == "model"


def test_missing_unexpected_and_mismatched_keys_are_all_listed(trained):
    state_dict = trained.state_dict()
    del state_dict["levels.1.blocks.1.TreeSSM.Ds"]
    state_dict["levels.0.blocks.0.TreeSSM.x_proj.weight"] = torch.zeros(3)
    state_dict["head.weight"] = torch.zeros(1000, 96)
    with pytest.raises(CheckpointMismatchError) as error:
        load_checkpoint(GrootV(**TINY), {"model": state_dict})
    message = str(error.value)
    assert "missing keys (1)" in message and "levels.1.blocks.1.TreeSSM.Ds" in message
    assert "unexpected keys (1)" in message and "levels.0.blocks.0.TreeSSM.x_proj.weight" in message
    assert "shape mismatches (1)" in message and "head.weight: checkpoint (1000, 96), model (5, 96)" in message
    assert "'model'" in message


def test_non_strict_loads_what_fits_and_warns(trained):
    state_dict = trained.state_dict()
    state_dict["head.weight"] = torch.zeros(1000, 96)
    state_dict["head.bias"] = torch.zeros(1000)
    model = GrootV(**TINY)
    with pytest.warns(UserWarning, match="shape mismatches"):
        result = load_checkpoint(model, state_dict, strict=False)
    assert result.mismatched == ["head.weight", "head.bias"]
    assert torch.equal(model.patch_embed.conv1.weight, trained.patch_embed.conv1.weight)
    assert model.head.weight.abs().sum() > 0  # kept its initialisation


def test_a_different_architecture_fails_loudly():
    with pytest.raises(CheckpointMismatchError, match="missing keys"):
        load_checkpoint(GrootV(channels=8, depths=[1, 2, 2, 1]), GrootV(**TINY).state_dict())


@pytest.mark.parametrize("checkpoint,error,match", [
    ("no/such/file.pth", FileNotFoundError, "no/such/file.pth"),
    ([1, 2], TypeError, "checkpoint"),
    ({"model": {"a": 1}}, ValueError, "not a state_dict"),
    ({"model": "weights"}, TypeError, "'model'"),
])
def test_bad_checkpoints(checkpoint, error, match):
    with pytest.raises(error, match=match):
        load_checkpoint(GrootV(**TINY), checkpoint)


def test_bad_model_and_use_ema():
    with pytest.raises(TypeError, match="model"):
        load_checkpoint({"a": 1}, {})
    with pytest.raises(TypeError, match="use_ema"):
        load_checkpoint(GrootV(**TINY), {}, use_ema="yes")


def test_timm_pretrained_from_a_release_style_file(trained, tmp_path):
    path = tmp_path / "grootv_t_1k_224.pth"
    torch.save({"model": {f"module.{k}": v for k, v in trained.state_dict().items()}}, path)
    overlay = dict(file=str(path), num_classes=TINY["num_classes"])
    model = timm.create_model("grootv_tiny", pretrained=True, pretrained_cfg_overlay=overlay, **TINY)
    image = torch.randn(1, 3, 32, 32)
    assert torch.equal(outputs(model, image), outputs(trained, image))
    # Another number of classes: timm drops the head and keeps the backbone.
    other = timm.create_model("grootv_tiny", pretrained=True, pretrained_cfg_overlay=overlay,
                              **{**TINY, "num_classes": 3})
    assert torch.equal(other.patch_embed.conv1.weight, trained.patch_embed.conv1.weight)


def test_extract_state_dict_is_the_filter():
    sd = {"a": torch.zeros(1)}
    assert grootv.extract_state_dict({"model": {"module.a": sd["a"]}}) == sd
    assert grootv.models.checkpoint_filter_fn({"state_dict_ema": sd, "state_dict": {}}, None) == {}


def _garbage_files(folder, trained):
    """Files torch.load fails on in different ways (KeyError, RuntimeError, EOFError, ...)."""
    full = folder / "full.pth"
    torch.save({"model": trained.state_dict()}, full)
    legacy = folder / "legacy.pth"
    torch.save({"model": trained.state_dict()}, legacy, _use_new_zipfile_serialization=False)
    files = {
        "hello.pth": b"hello world",
        "empty.pth": b"",
        "truncated.pth": full.read_bytes()[:2000],
        "truncated_legacy.pth": legacy.read_bytes()[:300],
        "pickle_head.pth": b"\x80\x02}q\x00",
    }
    for name, content in files.items():
        (folder / name).write_bytes(content)
    torch.save([1, 2, 3], folder / "a_list.pth")
    return [folder / name for name in [*files, "a_list.pth"]]


def test_unreadable_files_raise_one_error_naming_the_file(trained, tmp_path):
    from grootv.checkpoint import UnreadableCheckpointError, read_checkpoint
    from grootv.classification import checkpoint as classification
    from grootv.classification.errors import CheckpointError

    for path in _garbage_files(tmp_path, trained):
        with pytest.raises(UnreadableCheckpointError, match=path.name) as error:
            load_checkpoint(GrootV(**TINY), path)
        assert isinstance(error.value, ValueError)
        with pytest.raises(UnreadableCheckpointError, match=path.name):
            read_checkpoint(path, trusted=True)
        with pytest.raises(CheckpointError, match=path.name):
            classification.read_checkpoint(str(path))
    torch.save({"model": trained.state_dict(), "config": ConfigLike()}, tmp_path / "release.pth")
    with pytest.raises(UnreadableCheckpointError,
                       match="release.pth.*ConfigLike.*if you trust the file, add --trust-checkpoint"):
        read_checkpoint(tmp_path / "release.pth", trust_hint="add --trust-checkpoint")


def test_select_state_dict_names_the_entry_it_used():
    sd = {"a": torch.zeros(1)}
    assert grootv.checkpoint.select_state_dict(sd) == ("state_dict", sd)
    assert grootv.checkpoint.select_state_dict({"model_ema": sd, "state_dict": sd}, use_ema=True) == ("model_ema", sd)
    assert grootv.checkpoint.select_state_dict({"state_dict_ema": sd, "meta": {}})[0] == "state_dict_ema"
