"""The main job: train a small GrootV on the embedded demo dataset, evaluate it, print its accuracy.

    python -m grootv.classification.demo            # a few minutes on a 2-core CPU
    python -m grootv.classification.demo --fresh    # forget the previous run and train again

1. Generates the demo dataset (``grootv.demo_data``: 8 classes of 32x32 synthetic images,
   1200 for training and 400 for validation) into ``outputs/demo_data`` unless it is there.
2. Trains GrootV with ``GrootV/classification/config/grootv_demo.yaml`` into
   ``outputs/demo`` (``--auto-resume``: an interrupted run continues, a finished one is
   not trained again).
3. Evaluates the last checkpoint (``--eval --resume``) and prints the top-1 accuracy.

Any other argument goes to ``grootv.classification.main``, e.g. ``--opts TRAIN.EPOCHS 5``.
``--data-path DIR`` trains on your own ImageFolder dataset instead (see docs/classification.md
for ImageNet, where the full configs grootv_{t,s,b}_1k_224.yaml are the ones to use).
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time
from pathlib import Path

import torch

from grootv.demo_data import check_replaceable, make_demo_dataset

from . import main as pipeline
from .checkpoint import latest_checkpoint
from .errors import CheckpointError, ConfigError, PipelineError
from .metrics import FILENAME, read_metrics

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "classification" / "config" / "grootv_demo.yaml"
# What a run leaves in its output folder (all that --fresh deletes).
_RUN_FILES = ("ckpt_epoch_*.pth", FILENAME, "log.txt", "config.yaml", "eval.json")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m grootv.classification.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data-path", help="an ImageFolder dataset to use instead of the demo dataset")
    parser.add_argument("--data-root", default="outputs/demo_data",
                        help="where the demo dataset is kept (default: %(default)s)")
    parser.add_argument("--output", default="outputs/demo", help="run folder (default: %(default)s)")
    parser.add_argument("--cfg", default=str(DEMO_CONFIG), help="config (default: grootv_demo.yaml)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the demo dataset and of the training (default 0)")
    parser.add_argument("--fresh", action="store_true", help="delete the previous run in --output first")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads for torch (default 1; 0 keeps torch's default). The demo's tensors are "
                        "so small that more threads mostly wait for each other, and on a busy machine threads "
                        "spinning for each other made training 10x slower in our measurements")
    return parser


def _clear_run(output: str) -> None:
    for pattern in _RUN_FILES:
        for path in glob.glob(os.path.join(output, pattern)):
            os.remove(path)


def run_demo(argv: list[str] | None = None) -> dict:
    """Runs the three steps; returns the final evaluation (``val_acc1``, ...) plus
    ``num_classes``, ``epochs`` and ``seconds``."""
    args, rest = _parser().parse_known_args(argv)
    start = time.perf_counter()
    if args.threads < 0:
        raise ConfigError(f"--threads must be >= 0, got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    if not os.path.isfile(args.cfg):
        raise ConfigError(
            f"the demo config {args.cfg} is missing; the demo runs from a source checkout "
            "(pip install -e .) or with --cfg FILE"
        )
    if args.data_path:
        data_path = args.data_path
    else:
        try:
            check_replaceable(args.data_root, "--data-root")
        except ValueError as error:
            raise ConfigError(str(error)) from None
        print(f"demo dataset: {args.data_root} (generated once, then reused)", flush=True)
        data_path = str(make_demo_dataset(args.data_root, seed=args.seed))
    if args.fresh:
        _clear_run(args.output)
    common = ["--cfg", args.cfg, "--data-path", data_path, "--output", args.output, "--seed", str(args.seed)]
    try:
        pipeline.run(common + ["--auto-resume"] + rest)
    except CheckpointError as error:
        hint = f"(the run in {args.output} was made with other settings: add --fresh)"
        raise CheckpointError(f"{error}\n{hint}") from None

    checkpoint = latest_checkpoint(args.output)
    if checkpoint is None:
        raise PipelineError(f"training wrote no checkpoint into {args.output}")
    evaluation = pipeline.run(common + ["--eval", "--resume", checkpoint] + rest)
    history = read_metrics(args.output)
    val_folder = os.path.join(data_path, "val")
    evaluation.update(
        num_classes=sum(entry.is_dir() for entry in os.scandir(val_folder)),
        epochs=len(history),
        seconds=time.perf_counter() - start,
    )
    return evaluation


def main(argv: list[str] | None = None) -> None:
    try:
        result = run_demo(argv)
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    chance = 100.0 / result["num_classes"]
    ema = f", EMA weights {result['ema_val_acc1']:.1f}%" if "ema_val_acc1" in result else ""
    print(
        f"\nGrootV demo: top-1 accuracy {result['val_acc1']:.1f}% on {result['val_images']} validation images "
        f"of {result['num_classes']} classes (chance {chance:.1f}%){ema}, after {result['epochs']} epochs; "
        f"{result['seconds']:.0f} s in this call. Checkpoint: {result['checkpoint']}"
    )


if __name__ == "__main__":
    main()
