"""The embedded demo dataset and the demo command (the project's main job), shrunk to seconds."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from grootv.classification.demo import run_demo
from grootv.classification.errors import ConfigError
from grootv.classification.metrics import read_metrics
from grootv.demo_data import CLASSES, MANIFEST, make_demo_dataset, render
from grootv.demo_data import main as demo_data_main


def test_demo_images_are_a_pure_function_of_the_seed():
    a = render(0, "train", 3, 7)
    assert a.shape == (32, 32, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, render(0, "train", 3, 7))
    assert not np.array_equal(a, render(1, "train", 3, 7))
    assert not np.array_equal(a, render(0, "val", 3, 7))
    assert render(0, "val", 0, 0, size=20).shape == (20, 20, 3)


def test_demo_dataset_layout_and_reuse(tmp_path):
    root = make_demo_dataset(tmp_path / "d", seed=5, train_per_class=3, val_per_class=2, img_size=24, num_classes=4)
    assert sorted(os.listdir(root / "train")) == sorted(CLASSES[:4]) == sorted(os.listdir(root / "val"))
    assert len(os.listdir(root / "train" / CLASSES[0])) == 3 and len(os.listdir(root / "val" / CLASSES[0])) == 2
    image = Image.open(root / "val" / CLASSES[1] / "0001.png")
    assert image.size == (24, 24) and image.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(image), render(5, "val", 1, 1, size=24))
    manifest = json.loads((root / MANIFEST).read_text())
    assert manifest["seed"] == 5 and manifest["classes"] == list(CLASSES[:4])

    stamp = os.stat(root / MANIFEST).st_mtime_ns
    make_demo_dataset(root, seed=5, train_per_class=3, val_per_class=2, img_size=24, num_classes=4)
    assert os.stat(root / MANIFEST).st_mtime_ns == stamp  # reused, not rewritten
    make_demo_dataset(root, seed=5, train_per_class=2, val_per_class=2, img_size=24, num_classes=4)
    assert len(os.listdir(root / "train" / CLASSES[0])) == 2  # other parameters: regenerated
    assert sorted(os.listdir(tmp_path)) == ["d"]  # no staging folder left behind
    (root / MANIFEST).write_text('{"seed": 5, "cla')  # damaged, e.g. by a full disk
    make_demo_dataset(root, seed=5, train_per_class=2, val_per_class=2, img_size=24, num_classes=4)
    assert json.loads((root / MANIFEST).read_text())["train_per_class"] == 2  # made again

    with pytest.raises(ValueError, match="num_classes must be at most 8"):
        make_demo_dataset(tmp_path / "e", num_classes=9)
    with pytest.raises(ValueError, match="train_per_class must be an integer >= 1"):
        make_demo_dataset(tmp_path / "e", train_per_class=0)


@pytest.mark.usefixtures("one_thread")
def test_demo_trains_evaluates_and_reuses_its_run(tmp_path):
    shrink = ["--no-progress", "--opts", "TRAIN.EPOCHS", "1", "TRAIN.WARMUP_EPOCHS", "0",
              "MODEL.GROOTV.CHANNELS", "8", "MODEL.GROOTV.DEPTHS", "[1, 1, 1, 1]"]
    args = ["--data-root", str(tmp_path / "data"), "--output", str(tmp_path / "run")] + shrink
    first = run_demo(args)
    assert first["num_classes"] == 8 and first["epochs"] == 1 and first["val_images"] == 400
    assert first["checkpoint"].endswith("ckpt_epoch_0.pth")
    assert 0 <= first["val_acc1"] <= 100 and "ema_val_acc1" in first
    (record,) = read_metrics(str(tmp_path / "run"))
    assert first["val_acc1"] == pytest.approx(record["val_acc1"])

    again = run_demo(args)  # data and finished run reused: only the evaluation runs
    assert again["val_acc1"] == first["val_acc1"] and len(read_metrics(str(tmp_path / "run"))) == 1


def test_a_folder_it_did_not_make_is_never_replaced(tmp_path, capsys):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("years of work")
    with pytest.raises(ValueError, match=r"`root` .*mine.* holds files but no demo_data.json"):
        make_demo_dataset(foreign, train_per_class=1, val_per_class=1, num_classes=2)
    with pytest.raises(SystemExit):
        demo_data_main(["--out", str(foreign), "--train-per-class", "1", "--val-per-class", "1"])
    assert "--out" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="--data-root"):
        run_demo(["--data-root", str(foreign), "--output", str(tmp_path / "run")])
    assert os.listdir(foreign) == ["thesis.tex"] and sorted(os.listdir(tmp_path)) == ["mine"]

    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="`root` .* is a file"):
        make_demo_dataset(tmp_path / "file", train_per_class=1, val_per_class=1, num_classes=2)

    empty = tmp_path / "empty"
    empty.mkdir()
    make_demo_dataset(empty, train_per_class=1, val_per_class=1, num_classes=2)
    assert (empty / MANIFEST).is_file()
