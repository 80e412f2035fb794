"""Training, evaluating and resuming with the classification pipeline (tiny GrootV, 16px images)."""

import json
import os
import shutil
import subprocess
import sys
from fractions import Fraction

import pytest
import torch
from grootv_classification_helpers import (
    METRIC_KEYS,
    ROOT,
    TIMING_KEYS,
    TINY_GROOTV,
    run_args,
    tiny_dataset,
)
from yacs.config import CfgNode

from grootv import atomic
from grootv.classification import checkpoint as ckpt
from grootv.classification import main as pipeline
from grootv.classification.config import get_config
from grootv.classification.data import build_datasets
from grootv.classification.errors import CheckpointError, ConfigError, DataError
from grootv.classification.metrics import append_metrics, keep_epochs_before, read_metrics
from grootv.classification.schedule import build_scheduler, scaled_learning_rates
from grootv.models import GrootV

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_dataset(tmp_path_factory.mktemp("data"), classes=3, train=8, val=4)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data):
    """One finished 2-epoch run, shared by the tests that only read it."""
    output = str(tmp_path_factory.mktemp("run"))
    summary = pipeline.run(run_args(data, output, "SAVE_CKPT_NUM", "2",
                                    flags=("--dataset", "tinyset", "--tag", "first-run")))
    return output, summary


def test_training_writes_metrics_and_atomic_checkpoints(trained):
    output, summary = trained
    records = read_metrics(output)
    assert [r["epoch"] for r in records] == [0, 1]
    for record in records:
        assert METRIC_KEYS <= set(record)
        assert record["world_size"] == 1
        assert 0 <= record["val_acc1"] <= record["val_acc5"] <= 100
        assert record["ema_val_acc1"] is not None and record["train_loss"] > 0
    assert summary["last_epoch"]["epoch"] == 1
    names = set(os.listdir(output))
    assert {"ckpt_epoch_0.pth", "ckpt_epoch_1.pth", "ckpt_epoch_best.pth", "config.yaml", "log.txt"} <= names
    assert not [n for n in names if n.endswith(".tmp")]
    state = torch.load(os.path.join(output, "ckpt_epoch_1.pth"), weights_only=True)
    assert state["epoch"] == 1 and {"model", "model_ema", "optimizer", "lr_scheduler", "scaler"} <= set(state)
    saved = CfgNode.load_cfg(state["config"])
    assert saved.MODEL.NUM_CLASSES == 3  # followed the dataset
    assert saved.MODEL.GROOTV.CHANNELS == 8
    assert state["classes"] == sorted(os.listdir(os.path.join(saved.DATA.DATA_PATH, "train")))
    log = open(os.path.join(output, "log.txt")).read()
    assert "data 'tinyset' in" in log and "training run 'first-run'" in log  # --dataset and --tag


def test_eval_with_resume_reproduces_the_last_validation(trained, data, tmp_path):
    output, _ = trained
    last = read_metrics(output)[-1]
    result = pipeline.run(run_args(data, str(tmp_path), flags=("--eval", "--resume", f"{output}/ckpt_epoch_1.pth")))
    assert result["weights"] == "model"
    assert result["val_acc1"] == pytest.approx(last["val_acc1"])
    assert result["val_loss"] == pytest.approx(last["val_loss"], rel=1e-5)
    assert result["ema_val_acc1"] == pytest.approx(last["ema_val_acc1"])
    assert result["val_images"] == 12
    assert json.load(open(tmp_path / "eval.json"))["val_acc1"] == result["val_acc1"]


def test_eval_runs_at_the_image_size_the_checkpoint_was_trained_at(trained, data, tmp_path):
    """Trained at 16px: --eval without DATA.IMG_SIZE evaluates at 16px (not the default 224)
    and reproduces the last validation; a different size set explicitly is an error."""
    output, _ = trained
    last = read_metrics(output)[-1]
    opts = list(TINY_GROOTV)
    del opts[opts.index("DATA.IMG_SIZE"):opts.index("DATA.IMG_SIZE") + 2]
    checkpoint = f"{output}/ckpt_epoch_1.pth"
    args = ["--data-path", data, "--output", str(tmp_path), "--no-progress", "--eval", "--resume", checkpoint]
    result = pipeline.run(args + ["--opts", *opts])
    assert result["val_loss"] == pytest.approx(last["val_loss"], rel=1e-5)
    assert f"evaluating at 16px, the image size {checkpoint} was trained at" in open(tmp_path / "log.txt").read()
    with pytest.raises(ConfigError, match=r"trained at 16px, but DATA.IMG_SIZE is set to 32"):
        pipeline.run(args + ["--opts", *opts, "DATA.IMG_SIZE", "32"])


def test_logs_name_the_dataset_folder_and_a_finished_run_trains_nothing(trained, data, tmp_path):
    output = str(tmp_path / "run")
    shutil.copytree(trained[0], output)
    os.remove(os.path.join(output, "log.txt"))
    summary = pipeline.run(run_args(data, output, "SAVE_CKPT_NUM", "2", flags=("--auto-resume",)))
    assert summary["last_epoch"] is None
    log = open(os.path.join(output, "log.txt")).read()
    assert f"data {os.path.basename(data)!r} in {data}" in log  # without --dataset: the folder's name
    assert "training run" not in log and "epochs 2..1" not in log
    assert f"nothing to train: the run in {output} finished all 2 epochs" in log


class Interrupted(Exception):
    pass


def crash_in_epoch_1(monkeypatch):
    """Makes the pipeline's training raise Interrupted when epoch 1 begins (a killed run)."""
    train_one_epoch = pipeline.train_one_epoch

    def crashing(**kwargs):
        if kwargs["epoch"] == 1:
            raise Interrupted
        return train_one_epoch(**kwargs)

    monkeypatch.setattr(pipeline, "train_one_epoch", crashing)


def test_auto_resume_matches_an_uninterrupted_run(trained, data, tmp_path, monkeypatch):
    """Epoch 1 after a crash and --auto-resume equals epoch 1 of the straight run: same
    augmentations, Mixup, drop-path, optimizer, schedule and EMA state."""
    straight, _ = trained
    output = str(tmp_path)
    crash_in_epoch_1(monkeypatch)
    with pytest.raises(Interrupted):
        pipeline.run(run_args(data, output, "SAVE_CKPT_NUM", "2"))
    assert [r["epoch"] for r in read_metrics(output)] == [0]
    assert ckpt.latest_checkpoint(output).endswith("ckpt_epoch_0.pth")

    with pytest.raises(ConfigError, match="already holds checkpoints .* pass --auto-resume"):
        pipeline.run(run_args(data, output, "SAVE_CKPT_NUM", "2"))

    monkeypatch.undo()  # the real training again
    pipeline.run(run_args(data, output, "SAVE_CKPT_NUM", "2", flags=("--auto-resume",)))
    resumed, uninterrupted = read_metrics(output), read_metrics(straight)
    assert [r["epoch"] for r in resumed] == [0, 1]
    for key in set(uninterrupted[1]) - TIMING_KEYS:
        assert resumed[1][key] == pytest.approx(uninterrupted[1][key], rel=1e-5, abs=1e-7), key
    a = torch.load(os.path.join(output, "ckpt_epoch_1.pth"), weights_only=True)
    b = torch.load(os.path.join(straight, "ckpt_epoch_1.pth"), weights_only=True)
    for key in b["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], msg=key)
        torch.testing.assert_close(a["model_ema"][key], b["model_ema"][key], msg=key)

    # A finished run resumed again has nothing left to do and keeps its metrics.
    summary = pipeline.run(run_args(data, output, "SAVE_CKPT_NUM", "2", flags=("--auto-resume",)))
    assert summary["last_epoch"] is None and len(read_metrics(output)) == 2

    # Extended to 3 epochs, it follows the 3-epoch schedule (not the saved 2-epoch one).
    pipeline.run(run_args(data, output, "TRAIN.EPOCHS", "3", flags=("--auto-resume",)))
    config = get_config(None, TINY_GROOTV + ["TRAIN.EPOCHS", "3"])
    rates = scaled_learning_rates(config, 1)
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=rates.base)
    scheduler = build_scheduler(config, optimizer, rates, updates_per_epoch=6)
    scheduler.step_update(17)
    assert read_metrics(output)[2]["lr"] == pytest.approx(optimizer.param_groups[0]["lr"])


def test_timm_model_and_accumulation(data, tmp_path):
    summary = pipeline.run(
        run_args(data, str(tmp_path), "MODEL.TYPE", "resnet10t", "TRAIN.EPOCHS", "1", "TRAIN.WARMUP_EPOCHS", "0",
                 "AUG.MIXUP", "0.0", "AUG.CUTMIX", "0.0", "AUG.AUTO_AUGMENT", "none", "TRAIN.OPTIMIZER.NAME", "sgd",
                 flags=("--accumulation-steps", "2"))
    )
    assert summary["last_epoch"]["epoch"] == 0
    state = torch.load(tmp_path / "ckpt_epoch_0.pth", weights_only=True)
    assert state["model"]["fc.weight"].shape == (3, 512)
    assert state["lr_scheduler"]["t_initial"] == 3  # 6 batches of 4 / 2 accumulation steps


def test_throughput_without_a_dataset(tmp_path):
    result = pipeline.run(
        ["--throughput", "--throughput-iters", "2", "--output", str(tmp_path), "--batch-size", "2",
         "--opts", "MODEL.TYPE", "grootv", "MODEL.GROOTV.CHANNELS", "8", "MODEL.GROOTV.DEPTHS", "[1, 1]",
         "DATA.IMG_SIZE", "16"]
    )
    assert result["throughput"] > 0 and result["batch_size"] == 2


def test_pretrained_with_another_head(trained, data, tmp_path):
    output, _ = trained
    summary = pipeline.run(
        run_args(tiny_dataset(tmp_path / "two", classes=2, train=4, val=2), str(tmp_path / "run"),
                 "TRAIN.EPOCHS", "1", "TRAIN.WARMUP_EPOCHS", "0", flags=("--pretrained", f"{output}/ckpt_epoch_1.pth"))
    )
    assert summary["last_epoch"]["epoch"] == 0


def test_checkpoint_problems_are_named(trained, data, tmp_path):
    output, _ = trained
    with pytest.raises(CheckpointError, match="missing.pth does not exist"):
        pipeline.run(run_args(data, str(tmp_path), flags=("--eval", "--resume", str(tmp_path / "missing.pth"))))
    with pytest.raises(ConfigError, match="--eval needs weights"):
        pipeline.run(run_args(data, str(tmp_path), flags=("--eval",)))
    # Weights of another architecture: every mismatch is listed.
    with pytest.raises(CheckpointError, match=r"(?s)missing keys.*levels\.4.*shape mismatches.*conv_head"):
        pipeline.run(run_args(data, str(tmp_path), "MODEL.GROOTV.DEPTHS", "[1, 1, 1, 1, 1]",
                              flags=("--eval", "--resume", f"{output}/ckpt_epoch_1.pth")))
    # The release's training checkpoints pickle their yacs config: read without trust.
    # Any other pickled object is refused unless trusted.
    state = torch.load(os.path.join(output, "ckpt_epoch_1.pth"), weights_only=True)
    release_style = tmp_path / "release.pth"
    torch.save({"model": state["model"], "config": CfgNode({"OUTPUT": "x"}), "epoch": 299}, release_style)
    result = pipeline.run(run_args(data, str(tmp_path), flags=("--eval", "--resume", str(release_style))))
    assert "ema_val_acc1" not in result
    for legacy_format in (False, True):
        other = tmp_path / f"other_{legacy_format}.pth"
        torch.save({"model": state["model"], "config": Fraction(1, 3)}, other,
                   _use_new_zipfile_serialization=not legacy_format)
        with pytest.raises(CheckpointError, match=f"{other.name}.*fractions.Fraction.*--trust-checkpoint"):
            pipeline.run(run_args(data, str(tmp_path), flags=("--eval", "--resume", str(other))))
        result = pipeline.run(run_args(data, str(tmp_path), flags=("--eval", "--resume", str(other),
                                                                   "--trust-checkpoint")))
        assert result["val_images"] == 12
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        pipeline.run(run_args(data, str(tmp_path), flags=("--eval", "--resume", str(tmp_path / "garbage.pth"))))


def test_eval_numbers_a_val_subset_by_the_trained_classes(trained, data, tmp_path):
    """val/ with only the last class, and no train/: its images keep the label the model was
    trained with (2 of 3), not 0 of 1 as val/'s own folder list would give."""
    output, _ = trained
    state = torch.load(os.path.join(output, "ckpt_epoch_1.pth"), weights_only=True)
    last = state["classes"][-1]
    subset = tmp_path / "subset"
    shutil.copytree(os.path.join(data, "val", last), subset / "val" / last)
    result = pipeline.run(run_args(str(subset), str(tmp_path / "eval"),
                                   flags=("--eval", "--resume", f"{output}/ckpt_epoch_1.pth")))
    assert result["val_images"] == 4

    model = GrootV(channels=8, depths=[1, 1, 1, 1], num_classes=3).eval()
    model.load_state_dict(state["model"])
    config = get_config(None, TINY_GROOTV + ["DATA.DATA_PATH", str(subset)])
    _, val, classes = build_datasets(config, need_train=False, trained_classes=state["classes"])
    assert classes == state["classes"] and {label for _, label in val.samples} == {2}
    with torch.no_grad():
        predictions = model(torch.stack([image for image, _ in val])).argmax(1)
    assert result["val_acc1"] == pytest.approx(100 * (predictions == 2).float().mean().item())

    # A class the model never saw is an error naming it.
    (subset / "val" / "zebra").mkdir()
    shutil.copy(next((subset / "val" / last).iterdir()), subset / "val" / "zebra" / "0.png")
    with pytest.raises(DataError, match="the checkpoint's class list does not have: zebra"):
        pipeline.run(run_args(str(subset), str(tmp_path / "eval"),
                              flags=("--eval", "--resume", f"{output}/ckpt_epoch_1.pth")))


def test_resuming_an_older_checkpoint_drops_the_later_ones(trained, data, tmp_path, monkeypatch):
    """Resumed from epoch 0 of a run that reached epoch 1, killed in epoch 1: the abandoned
    ckpt_epoch_1 must not be what a later --auto-resume continues from."""
    output = str(tmp_path / "run")
    shutil.copytree(trained[0], output)
    crash_in_epoch_1(monkeypatch)
    with pytest.raises(Interrupted):
        pipeline.run(run_args(data, output, "SAVE_CKPT_NUM", "2",
                              flags=("--resume", os.path.join(output, "ckpt_epoch_0.pth"))))
    assert [epoch for epoch, _ in ckpt.numbered_checkpoints(output)] == [0]
    assert [r["epoch"] for r in read_metrics(output)] == [0]


def test_too_large_batch_is_named(data, tmp_path):
    with pytest.raises(DataError, match="not one full batch of DATA.BATCH_SIZE=64; lower --batch-size"):
        pipeline.run(run_args(data, str(tmp_path), flags=("--batch-size", "64")))


def test_save_is_atomic(tmp_path, monkeypatch):
    path = str(tmp_path / "ckpt_epoch_0.pth")
    atomic.torch_save({"epoch": 0}, path)

    def torn_save(obj, f):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(KeyboardInterrupt):
        atomic.torch_save({"epoch": 1}, path)
    assert os.listdir(tmp_path) == ["ckpt_epoch_0.pth"]
    assert torch.load(path, weights_only=True) == {"epoch": 0}


def test_text_files_are_written_atomically_and_synced(tmp_path, monkeypatch):
    """metrics.jsonl trimming (and config.yaml, eval.json) go through the one atomic writer."""
    for epoch in range(3):
        append_metrics(str(tmp_path), {"epoch": epoch})
    synced = []
    fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or fsync(fd))
    keep_epochs_before(str(tmp_path), 2)
    assert synced and read_metrics(str(tmp_path)) == [{"epoch": 0}, {"epoch": 1}]

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        keep_epochs_before(str(tmp_path), 1)
    assert os.listdir(tmp_path) == ["metrics.jsonl"]  # no temporary file left behind
    assert len(read_metrics(str(tmp_path))) == 2
    with pytest.raises(ValueError, match="`mode`"):
        with atomic.atomic_open(tmp_path / "x", "a"):
            pass


def test_metrics_of_unfinished_epochs_are_dropped(tmp_path):
    for epoch in range(3):
        append_metrics(str(tmp_path), {"epoch": epoch, "train_loss": float("nan") if epoch == 2 else 1.0})
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 3, "train_lo')  # torn by a kill
    records = read_metrics(str(tmp_path))
    assert [r["epoch"] for r in records] == [0, 1, 2] and records[2]["train_loss"] is None
    keep_epochs_before(str(tmp_path), 1)
    assert read_metrics(str(tmp_path)) == [{"epoch": 0, "train_loss": 1.0}]


def test_command_line_errors_are_one_line(tmp_path):
    """No traceback: the message names the problem and the process exits with status 2."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-m", "grootv.classification.main", "--data-path", str(tmp_path / "nowhere"),
         "--output", str(tmp_path / "out"), "--opts", "DATA.IMG_SIZE", "16"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=120,
    )
    assert done.returncode == 2
    assert f"error (data): the dataset folder {tmp_path / 'nowhere'}" in done.stderr
    assert "Traceback" not in done.stderr
