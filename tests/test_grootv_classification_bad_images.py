"""Unreadable images in an ImageFolder dataset: a message naming the file, then stop or skip."""

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from grootv_classification_helpers import ROOT, run_args, tiny_dataset
from PIL import Image
from torch.utils.data import DataLoader

from grootv.classification import main as pipeline
from grootv.classification.errors import DataError
from grootv.classification.images import LEFT_OUT, CheckedImageFolder, UnreadableImageError
from grootv.classification.metrics import read_metrics

pytestmark = pytest.mark.usefixtures("one_thread")


def _encoded(fmt: str) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt)
    return buffer.getvalue()


# The kinds of broken file met in large datasets.
BAD_FILES = {
    "zero_bytes.png": b"",
    "garbage.jpg": bytes(np.random.default_rng(1).integers(0, 256, 300, dtype=np.uint8)),
    "truncated.jpg": _encoded("JPEG")[:400],
    "truncated.png": _encoded("PNG")[:400],
}


def add_bad_files(data: str, split: str, names=BAD_FILES) -> list[str]:
    folder = os.path.join(data, split, sorted(os.listdir(os.path.join(data, split)))[0])
    paths = []
    for name in names:
        path = os.path.join(folder, name)
        with open(path, "wb") as f:
            f.write(BAD_FILES[name])
        paths.append(path)
    return paths


@pytest.fixture
def data(tmp_path):
    return tiny_dataset(tmp_path / "data", classes=3, train=8, val=4)


@pytest.mark.parametrize("name, workers", [(name, 0) for name in BAD_FILES] + [("truncated.jpg", 1)])
def test_stop_names_the_file_in_one_line(data, name, workers):
    (path,) = add_bad_files(data, "train", [name])
    folder = CheckedImageFolder(os.path.join(data, "train"))
    index = [p for p, _ in folder.samples].index(path)
    loader = DataLoader(torch.utils.data.Subset(folder, [index]), num_workers=workers,
                        collate_fn=lambda batch: batch)
    with pytest.raises(UnreadableImageError) as error:
        next(iter(loader))
    message = str(error.value)
    assert message.startswith(f"cannot read the image {path}: ") and "--on-bad-image skip" in message
    assert "Traceback" not in message and "\n" not in message  # also when raised in a worker process
    assert isinstance(error.value, DataError)


def test_skip_replaces_training_images_and_leaves_out_evaluation_images(data, caplog):
    bad = add_bad_files(data, "train")
    train = CheckedImageFolder(os.path.join(data, "train"), on_bad_image="skip", for_training=True,
                               transform=lambda image: np.asarray(image))
    paths = [p for p, _ in train.samples]
    for path in bad:
        index = paths.index(path)
        image, label = train[index]
        substitute = next(i for i in range(index + 1, len(paths)) if paths[i] not in bad)
        np.testing.assert_array_equal(image, np.asarray(Image.open(paths[substitute]).convert("RGB")))
        assert label == train.samples[substitute][1]
    assert int(train.unreadable.sum()) == len(bad)
    assert all(any(path in message for message in caplog.messages) for path in bad)

    bad_val = add_bad_files(data, "val", ["garbage.jpg"])
    val = CheckedImageFolder(os.path.join(data, "val"), on_bad_image="skip", transform=lambda image: image)
    assert val[[p for p, _ in val.samples].index(bad_val[0])][1] == LEFT_OUT
    with pytest.raises(IndexError):
        val[len(val)]  # iteration ends (no wrapping around)


def test_training_run_stops_with_one_line_naming_the_file(data, tmp_path):
    (path,) = add_bad_files(data, "train", ["truncated.jpg"])
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-m", "grootv.classification.main", *run_args(data, str(tmp_path / "out"), "TRAIN.EPOCHS",
                                                                       "1", "DATA.NUM_WORKERS", "1")],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=300,
    )
    assert done.returncode == 2, done.stderr
    assert f"error (data): cannot read the image {path}: OSError" in done.stderr
    assert "Traceback" not in done.stderr


def test_training_run_skips_counts_and_evaluates_without_them(data, tmp_path):
    bad = add_bad_files(data, "train") + add_bad_files(data, "val", ["zero_bytes.png", "truncated.png"])
    output = str(tmp_path / "out")
    summary = pipeline.run(run_args(data, output, "DATA.NUM_WORKERS", "1", flags=("--on-bad-image", "skip")))
    assert summary["last_epoch"]["epoch"] == 1
    assert [record["skipped_images"] for record in read_metrics(output)] == [len(bad)] * 2
    log = open(os.path.join(output, "log.txt")).read()
    assert all(f"cannot read the image {path}" in log for path in bad)
    assert f"{len(bad)} unreadable image file(s) skipped so far" in log

    result = pipeline.run(run_args(data, str(tmp_path / "eval"), "DATA.ON_BAD_IMAGE", "skip",
                                   flags=("--eval", "--resume", os.path.join(output, "ckpt_epoch_1.pth"))))
    assert result["val_images"] == 12 and result["skipped_images"] == 2
    assert json.load(open(tmp_path / "eval" / "eval.json"))["skipped_images"] == 2
