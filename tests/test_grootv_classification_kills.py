"""Killed runs: after a kill at any point of an epoch's writes, --auto-resume leaves the files
an uninterrupted run leaves, the best copies match metrics.jsonl, and no temporary file stays.

The validation accuracies are scripted (the model is tiny and barely learns in 3 epochs),
so that both the model and its EMA improve in epoch 1 and neither in epoch 2: epoch 1
then writes ckpt_epoch_1, ckpt_epoch_best, ckpt_epoch_ema_best and prunes ckpt_epoch_0,
and the kill can come before or in any of those steps.
"""

import os

import pytest
import torch
import yaml
from grootv_classification_helpers import TIMING_KEYS, run_args, tiny_dataset

from grootv import atomic
from grootv.classification import checkpoint as ckpt
from grootv.classification import main as pipeline
from grootv.classification.metrics import read_metrics

pytestmark = pytest.mark.usefixtures("one_thread")

# Top-1 of the model and of its EMA per epoch.
ACCURACY = {"val": [20.0, 40.0, 30.0], "val ema": [10.0, 30.0, 20.0]}
OPTS = ("TRAIN.EPOCHS", "3", "SAVE_CKPT_NUM", "1")


class Killed(BaseException):
    """A kill: nothing after it runs (a BaseException, so no `except Exception` stops it)."""


def scripted_evaluate(model, loader, precision, runtime, progress, desc):
    kind, epoch = desc.rsplit(" ", 1)
    return {"acc1": ACCURACY[kind][int(epoch)], "acc5": 100.0, "loss": 1.0, "images": len(loader.dataset)}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_dataset(tmp_path_factory.mktemp("data"), classes=3, train=8, val=4)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data):
    output = str(tmp_path_factory.mktemp("uninterrupted"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipeline, "evaluate", scripted_evaluate)
        pipeline.run(run_args(data, output, *OPTS))
    assert sorted(os.listdir(output)) == ["ckpt_epoch_2.pth", "ckpt_epoch_best.pth", "ckpt_epoch_ema_best.pth",
                                          "config.yaml", "log.txt", "metrics.jsonl"]
    return output


def kill_in_epoch(patch, killed_epoch: int | None, started: list | None = None) -> None:
    """Kills the run as epoch ``killed_epoch`` (None: any) starts; ``started`` records the epochs begun."""
    train_one_epoch = pipeline.train_one_epoch

    def training(**kwargs):
        if started is not None:
            started.append(kwargs["epoch"])
        if killed_epoch is None or kwargs["epoch"] == killed_epoch:
            raise Killed
        return train_one_epoch(**kwargs)

    patch.setattr(pipeline, "train_one_epoch", training)


def kill_before_saving(patch, name: str) -> None:
    save = atomic.torch_save

    def saving(state, path):
        if state["epoch"] == 1 and os.path.basename(path) == name:
            raise Killed
        save(state, path)

    patch.setattr(atomic, "torch_save", saving)


def kill_while_saving(patch, name: str) -> None:
    """Killed half-way through writing ``name``: a SIGKILL leaves the temporary file behind
    (no cleanup runs), which is emulated by making the cleanup's os.remove do nothing."""
    save = atomic.torch_save

    def torn(obj, f):
        f.write(b"half a checkpoint")
        raise Killed

    def saving(state, path):
        if state["epoch"] == 1 and os.path.basename(path) == name:
            patch.setattr(torch, "save", torn)
            patch.setattr(os, "remove", lambda path: None)
        save(state, path)

    patch.setattr(atomic, "torch_save", saving)


def kill_before_pruning(patch) -> None:
    prune = ckpt.prune_checkpoints

    def pruning(output, keep):
        if os.path.isfile(ckpt.checkpoint_path(output, 1)):
            raise Killed
        prune(output, keep)

    patch.setattr(ckpt, "prune_checkpoints", pruning)


KILLS = {
    "before ckpt_epoch_1": lambda patch: kill_before_saving(patch, "ckpt_epoch_1.pth"),
    "after ckpt_epoch_1, before the best copy": lambda patch: kill_before_saving(patch, "ckpt_epoch_best.pth"),
    "after the best copy, before the EMA one": lambda patch: kill_before_saving(patch, "ckpt_epoch_ema_best.pth"),
    "before pruning ckpt_epoch_0": kill_before_pruning,
    "while writing ckpt_epoch_1": lambda patch: kill_while_saving(patch, "ckpt_epoch_1.pth"),
    "while writing the best copy": lambda patch: kill_while_saving(patch, "ckpt_epoch_best.pth"),
}


def assert_best_copies_match_metrics(output: str) -> None:
    records = read_metrics(output)
    for tag, key in (("best", "val_acc1"), ("ema_best", "ema_val_acc1")):
        scores = [record[key] for record in records]
        best_epoch = scores.index(max(scores))
        state = torch.load(ckpt.checkpoint_path(output, tag), weights_only=True)
        assert state["epoch"] == records[best_epoch]["epoch"], tag
        assert state["max_accuracy" if tag == "best" else "max_accuracy_ema"] == max(scores), tag


def assert_same(a, b, where: str) -> None:
    if isinstance(a, torch.Tensor):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=where)
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for index, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{index}]")
    else:
        assert a == b, where


def training_settings(config_yaml: str) -> dict:
    """A checkpoint's config without what only says how this command was started."""
    config = yaml.safe_load(config_yaml)
    del config["OUTPUT"], config["TRAIN"]["AUTO_RESUME"]
    return config


def assert_same_files(output: str, reference: str, compare_config: bool = True) -> None:
    assert sorted(os.listdir(output)) == sorted(os.listdir(reference))
    ours, theirs = read_metrics(output), read_metrics(reference)
    assert [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in ours] == [
        {k: v for k, v in r.items() if k not in TIMING_KEYS} for r in theirs]
    for name in os.listdir(reference):
        if name.endswith(".pth"):
            a = torch.load(os.path.join(output, name), weights_only=True)
            b = torch.load(os.path.join(reference, name), weights_only=True)
            for state in (a, b):
                state["config"] = training_settings(state["config"]) if compare_config else None
            assert_same(a, b, name)


@pytest.mark.parametrize("kill", list(KILLS))
def test_a_killed_run_resumes_to_the_files_of_an_uninterrupted_one(uninterrupted, data, tmp_path, monkeypatch,
                                                                     kill):
    monkeypatch.setattr(pipeline, "evaluate", scripted_evaluate)
    output = str(tmp_path / "run")
    with monkeypatch.context() as patch:
        KILLS[kill](patch)
        with pytest.raises(Killed):
            pipeline.run(run_args(data, output, *OPTS))

    # The resumed run, killed in turn as its first epoch starts: what it found was tidied.
    started = []
    with monkeypatch.context() as patch:
        kill_in_epoch(patch, killed_epoch=None, started=started)
        with pytest.raises(Killed):
            pipeline.run(run_args(data, output, *OPTS, flags=("--auto-resume",)))
    assert len(started) == 1
    assert not [name for name in os.listdir(output) if name.endswith(".tmp")]
    assert_best_copies_match_metrics(output)

    pipeline.run(run_args(data, output, *OPTS, flags=("--auto-resume",)))
    assert_best_copies_match_metrics(output)
    assert_same_files(output, uninterrupted)


def test_resume_picks_a_best_copy_newer_than_the_last_checkpoint(uninterrupted, data, tmp_path, monkeypatch):
    """SAVE_FREQ 3: epoch 1 improves and writes only its best copies; a kill in epoch 2
    resumes from them (epoch 2), not from scratch."""
    monkeypatch.setattr(pipeline, "evaluate", scripted_evaluate)
    output = str(tmp_path / "run")
    with monkeypatch.context() as patch:
        kill_in_epoch(patch, killed_epoch=2)
        with pytest.raises(Killed):
            pipeline.run(run_args(data, output, *OPTS, "SAVE_FREQ", "3"))
    assert ckpt.numbered_checkpoints(output) == []
    assert ckpt.resume_checkpoint(output) == ckpt.checkpoint_path(output, "best")

    started = []
    with monkeypatch.context() as patch:
        kill_in_epoch(patch, killed_epoch=-1, started=started)
        pipeline.run(run_args(data, output, *OPTS, "SAVE_FREQ", "3", flags=("--auto-resume",)))
    assert started == [2]
    assert_best_copies_match_metrics(output)
    # The same files and weights; only the recorded config differs (SAVE_FREQ).
    assert_same_files(output, uninterrupted, compare_config=False)


def test_leftover_temporary_files_are_removed_and_nothing_else(tmp_path):
    written = ("ckpt_epoch_*.pth", "metrics.jsonl")
    names = [".ckpt_epoch_3.pth.k2j4_x9a.tmp", ".metrics.jsonl.abcdefgh.tmp", ".notes.txt.abcdefgh.tmp",
             "ckpt_epoch_3.pth", ".ckpt_epoch_3.pth", "ckpt_epoch_3.pth.tmp"]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    removed = atomic.remove_leftovers(tmp_path, written)
    assert sorted(os.path.basename(path) for path in removed) == sorted(names[:2])
    assert sorted(os.listdir(tmp_path)) == sorted(names[2:])
    assert atomic.remove_leftovers(tmp_path / "missing", written) == []
