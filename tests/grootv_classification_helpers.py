"""Shared pieces of the classification-pipeline tests: a tiny dataset and a tiny GrootV."""

from __future__ import annotations

import os

from grootv.demo_data import make_demo_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(ROOT, "GrootV", "classification", "config")

# A GrootV small enough for 16x16 images and a few seconds per run; the augmentation
# recipe stays as in the release (RandAugment, Mixup/CutMix, random erasing, drop-path)
# so that the runs exercise every random stream.
TINY_GROOTV = [
    "MODEL.TYPE", "grootv",
    "MODEL.GROOTV.CHANNELS", "8",
    "MODEL.GROOTV.DEPTHS", "[1, 1, 1, 1]",
    "MODEL.DROP_PATH_RATE", "0.1",
    "DATA.IMG_SIZE", "16",
    "DATA.BATCH_SIZE", "4",
    "DATA.NUM_WORKERS", "0",
    "TRAIN.EPOCHS", "2",
    "TRAIN.WARMUP_EPOCHS", "1",
    "TRAIN.EMA.ENABLE", "True",
    "TRAIN.EMA.DECAY", "0.9",
]

# Keys every metrics.jsonl line must have.
METRIC_KEYS = {"epoch", "train_loss", "lr", "val_acc1", "val_acc5", "val_loss", "ema_val_acc1"}
# Keys that measure time, which legitimately differ between two runs.
TIMING_KEYS = {"epoch_time", "images_per_second"}


def tiny_dataset(root, classes: int = 3, train: int = 8, val: int = 4, size: int = 16) -> str:
    return str(make_demo_dataset(root, seed=0, train_per_class=train, val_per_class=val, img_size=size,
                                 num_classes=classes))


def run_args(data: str, output: str, *extra_opts: str, flags: tuple[str, ...] = ()) -> list[str]:
    return ["--data-path", data, "--output", output, "--no-progress", *flags, "--opts", *TINY_GROOTV, *extra_opts]
