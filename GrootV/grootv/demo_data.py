"""The embedded demo dataset: small synthetic images in the ImageFolder layout.

Eight classes of 32x32 RGB pictures (stripes in three orientations, a checkerboard, a
disk, a square, a ring and a cross), each drawn with random colours, position, size,
period, phase, a soft illumination gradient and pixel noise. Telling them apart needs
both texture and shape, so a small GrootV has something to learn, yet a few epochs on a
CPU reach an accuracy far above chance (12.5%).

Everything is a pure function of the seed: image ``i`` of class ``c`` in split ``s`` is
drawn from its own random stream keyed by ``(seed, s, c, i)``, so the files are the same
on every machine and whatever the order of generation. Nothing is downloaded.

    python -m grootv.demo_data --out outputs/demo_data

writes ``OUT/train/<class>/*.png`` and ``OUT/val/<class>/*.png`` plus ``OUT/demo_data.json``
(the parameters), which is written last: a folder with other parameters is regenerated
from scratch. Only a folder that holds a ``demo_data.json`` (one this module made) or
nothing at all is ever replaced; any other is refused, so that a mistyped ``--out``
cannot delete someone's files.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = (
    "stripes_horizontal",
    "stripes_vertical",
    "stripes_diagonal",
    "checkerboard",
    "disk",
    "square",
    "ring",
    "cross",
)
SPLITS = {"train": 0, "val": 1}
MANIFEST = "demo_data.json"
# Bump when the drawing code changes, so that caches made by an older version are redone.
VERSION = 1


def _colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A background and a foreground colour that differ clearly in brightness."""
    while True:
        bg, fg = rng.uniform(0.0, 1.0, size=(2, 3))
        if abs(bg.mean() - fg.mean()) > 0.25:
            return bg, fg


def _mask(name: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """The foreground of one picture of class ``name`` as a float mask in [0, 1]."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    if name.startswith("stripes") or name == "checkerboard":
        period = rng.uniform(size / 8, size / 4)
        phase = rng.uniform(0, 2 * np.pi)
        wave = {
            "stripes_horizontal": lambda: np.sin(2 * np.pi * yy / period + phase),
            "stripes_vertical": lambda: np.sin(2 * np.pi * xx / period + phase),
            "stripes_diagonal": lambda: np.sin(2 * np.pi * (xx + rng.choice([-1, 1]) * yy) / (period * 1.4) + phase),
            "checkerboard": lambda: np.sin(2 * np.pi * xx / period + phase) * np.sin(2 * np.pi * yy / period),
        }[name]()
        return (wave > 0).astype(np.float64)
    cy, cx = rng.uniform(size * 0.3, size * 0.7, size=2)
    radius = rng.uniform(size * 0.18, size * 0.32)
    dy, dx = yy - cy, xx - cx
    if name == "disk":
        return (dy**2 + dx**2 <= radius**2).astype(np.float64)
    if name == "ring":
        dist = np.sqrt(dy**2 + dx**2)
        return (np.abs(dist - radius) <= max(1.5, radius * 0.25)).astype(np.float64)
    if name == "square":
        return ((np.abs(dy) <= radius * 0.85) & (np.abs(dx) <= radius * 0.85)).astype(np.float64)
    if name == "cross":
        arm = max(1.5, radius * 0.3)
        return (
            ((np.abs(dy) <= arm) & (np.abs(dx) <= radius)) | ((np.abs(dx) <= arm) & (np.abs(dy) <= radius))
        ).astype(np.float64)
    raise ValueError(f"unknown demo class {name!r}; expected one of {CLASSES}")


def render(seed: int, split: str, label: int, index: int, size: int = 32) -> np.ndarray:
    """Image ``index`` of class ``label`` in ``split`` as a (size, size, 3) uint8 array."""
    rng = np.random.default_rng([seed, SPLITS[split], label, index])
    bg, fg = _colours(rng)
    mask = _mask(CLASSES[label], size, rng)[..., None]
    image = mask * fg + (1 - mask) * bg
    yy, xx = np.mgrid[0:size, 0:size] / size
    direction = rng.normal(size=2)
    image = image + 0.25 * (direction[0] * (yy - 0.5) + direction[1] * (xx - 0.5))[..., None]
    image = image + rng.normal(0.0, 0.06, size=image.shape)
    return (np.clip(image, 0.0, 1.0) * 255).round().astype(np.uint8)


def _parameters(seed: int, train_per_class: int, val_per_class: int, img_size: int, num_classes: int) -> dict:
    return {
        "version": VERSION,
        "seed": seed,
        "train_per_class": train_per_class,
        "val_per_class": val_per_class,
        "img_size": img_size,
        "classes": list(CLASSES[:num_classes]),
    }


def _recorded_parameters(manifest: Path) -> dict | None:
    """The parameters in a demo_data.json, or None when it is missing or unreadable
    (a damaged one just means the folder is made again)."""
    try:
        return json.loads(manifest.read_text())
    except (OSError, ValueError):
        return None


def check_replaceable(root: str | os.PathLike, argument: str = "`root`") -> None:
    """Raises ValueError, naming ``argument``, unless ``root`` is absent, an empty folder, or
    a folder with a demo_data.json: the only ones :func:`make_demo_dataset` may replace."""
    root = Path(root)
    if not root.exists():
        return
    if not root.is_dir():
        raise ValueError(f"{argument} {str(root)!r} is a file, not a folder for the demo dataset")
    if not (root / MANIFEST).is_file() and any(root.iterdir()):
        raise ValueError(
            f"{argument} {str(root)!r} holds files but no {MANIFEST}, so it is not a demo dataset this module "
            f"made; it is left alone rather than replaced. Choose a new or empty folder"
        )


def make_demo_dataset(
    root: str | os.PathLike,
    seed: int = 0,
    train_per_class: int = 150,
    val_per_class: int = 50,
    img_size: int = 32,
    num_classes: int = len(CLASSES),
) -> Path:
    """Writes the demo dataset into ``root`` (if it is not there already) and returns ``root``.

    A complete folder made with the same parameters is reused as it is. The images are
    first written into a temporary sibling folder that is renamed into place at the end,
    so an interrupted run never leaves a half-written dataset behind. A ``root`` that is
    neither empty nor a demo dataset is refused (ValueError), never replaced.
    """
    for name, value, low in (
        ("train_per_class", train_per_class, 1),
        ("val_per_class", val_per_class, 1),
        ("img_size", img_size, 8),
        ("num_classes", num_classes, 2),
    ):
        if not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if num_classes > len(CLASSES):
        raise ValueError(f"num_classes must be at most {len(CLASSES)}, got {num_classes}")

    root = Path(root)
    wanted = _parameters(seed, train_per_class, val_per_class, img_size, num_classes)
    if _recorded_parameters(root / MANIFEST) == wanted:
        return root
    check_replaceable(root)

    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        for split, per_class in (("train", train_per_class), ("val", val_per_class)):
            for label, name in enumerate(CLASSES[:num_classes]):
                folder = staging / split / name
                folder.mkdir(parents=True)
                for index in range(per_class):
                    pixels = render(seed, split, label, index, img_size)
                    Image.fromarray(pixels).save(folder / f"{index:04d}.png")
        (staging / MANIFEST).write_text(json.dumps(wanted, indent=1) + "\n")
        if root.exists():
            shutil.rmtree(root)
        os.replace(staging, root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="outputs/demo_data", help="folder to write (default: outputs/demo_data)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-per-class", type=int, default=150)
    parser.add_argument("--val-per-class", type=int, default=50)
    parser.add_argument("--img-size", type=int, default=32)
    parser.add_argument("--num-classes", type=int, default=len(CLASSES))
    args = parser.parse_args(argv)
    try:
        check_replaceable(args.out, "--out")
        root = make_demo_dataset(
            args.out, args.seed, args.train_per_class, args.val_per_class, args.img_size, args.num_classes
        )
    except ValueError as error:
        parser.error(str(error))
    print(f"demo dataset ready in {root}")


if __name__ == "__main__":
    main()
