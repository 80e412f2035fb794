"""Two CPU processes under torchrun (gloo): a DDP training epoch and an exact sharded validation,
with unreadable validation images skipped on both processes and counted over both."""

import os
import subprocess
import sys

import pytest
from grootv_classification_helpers import (
    METRIC_KEYS,
    ROOT,
    run_args,
    tiny_dataset,
)

from grootv.classification import main as pipeline
from grootv.classification.images import CheckedImageFolder
from grootv.classification.metrics import read_metrics


@pytest.mark.usefixtures("one_thread")
def test_two_process_gloo_training(tmp_path):
    # 3 classes x 5 validation images: 15 images do not split evenly over 2 processes.
    data = tiny_dataset(tmp_path / "data", classes=3, train=8, val=5)
    # Two zero-byte files, one in each process's shard (validation image i goes to process i % 2).
    val = os.path.join(data, "val")
    first, second = sorted(os.listdir(val))[:2]
    bad = [os.path.join(val, first, "zz_bad.png"), os.path.join(val, second, "!bad.png")]
    for path in bad:
        open(path, "wb").close()
    paths = [path for path, _ in CheckedImageFolder(val).samples]
    assert {paths.index(path) % 2 for path in bad} == {0, 1}
    output = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "grootv.classification.main",
        *run_args(data, str(output), "TRAIN.EPOCHS", "1", "TRAIN.WARMUP_EPOCHS", "0",
                  flags=("--device", "cpu", "--on-bad-image", "skip")),
    ]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "2 process(es) x 4 images" in done.stdout  # logged once, by rank 0

    (record,) = read_metrics(str(output))
    assert METRIC_KEYS <= set(record) and record["world_size"] == 2
    assert record["skipped_images"] == 2  # found one each, counted over both processes
    assert (output / "ckpt_epoch_0.pth").is_file()

    # The two shards together are the whole validation set, each image counted once:
    # one process evaluating the saved weights finds the same numbers.
    result = pipeline.run(run_args(data, str(tmp_path / "eval"),
                                   flags=("--eval", "--resume", str(output / "ckpt_epoch_0.pth"),
                                          "--on-bad-image", "skip")))
    assert result["val_images"] == 15 and result["skipped_images"] == 2
    assert result["val_acc1"] == pytest.approx(record["val_acc1"])
    assert result["val_acc5"] == pytest.approx(record["val_acc5"])
    assert result["val_loss"] == pytest.approx(record["val_loss"], rel=1e-5)
    assert result["ema_val_acc1"] == pytest.approx(record["ema_val_acc1"])
