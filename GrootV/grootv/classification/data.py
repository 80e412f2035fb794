"""Datasets, transforms, samplers and Mixup/CutMix for ImageFolder-shaped data.

The dataset folder holds ``train/<class>/<image>`` and ``val/<class>/<image>`` (ImageNet
after the usual val-preparation script, or any other collection of class folders).
Class indices come from the sorted class-folder names of ``train/``; ``val/`` must use
the same names (a subset is fine). Training records that list in its checkpoints, and
evaluation maps ``val/``'s folders by the checkpoint's list (or by ``train/``'s names when
the checkpoint has none), never by ``val/``'s own: with a subset of the classes those
would number the classes differently from the model's outputs. An image file that cannot
be decoded stops the run with its name, or is skipped with a warning (DATA.ON_BAD_IMAGE,
see images.py).
"""

from __future__ import annotations

import logging
import os

import torch
from timm.data import Mixup, create_transform
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler
from torchvision import transforms
from torchvision.datasets.folder import find_classes
from yacs.config import CfgNode

from .augment import with_zero_bit_posterize
from .config import mixing_enabled
from .errors import ConfigError, DataError
from .images import CheckedImageFolder

logger = logging.getLogger(__name__.rsplit(".", 1)[0])

# NUM_CLASSES at this value follows the dataset; any other value is taken as meant.
_DEFAULT_NUM_CLASSES = 1000

_EVAL_INTERPOLATION = {
    "bicubic": transforms.InterpolationMode.BICUBIC,
    "bilinear": transforms.InterpolationMode.BILINEAR,
    "nearest": transforms.InterpolationMode.NEAREST,
    "lanczos": transforms.InterpolationMode.LANCZOS,
    "hamming": transforms.InterpolationMode.HAMMING,
    "box": transforms.InterpolationMode.BOX,
    # 'random' varies the training images only; evaluation must be deterministic.
    "random": transforms.InterpolationMode.BICUBIC,
}


def build_transform(config: CfgNode, is_train: bool):
    """The release's transforms: timm's ImageNet training pipeline, resize + centre crop for eval."""
    size = config.DATA.IMG_SIZE
    if is_train:
        try:
            transform = create_transform(
                input_size=size,
                is_training=True,
                color_jitter=config.AUG.COLOR_JITTER if config.AUG.COLOR_JITTER > 0 else None,
                auto_augment=None if config.AUG.AUTO_AUGMENT.lower() == "none" else config.AUG.AUTO_AUGMENT,
                re_prob=config.AUG.REPROB,
                re_mode=config.AUG.REMODE,
                re_count=config.AUG.RECOUNT,
                interpolation=config.DATA.INTERPOLATION,
                mean=tuple(config.AUG.MEAN),
                std=tuple(config.AUG.STD),
            )
        except (AssertionError, ValueError, KeyError, IndexError) as error:
            raise ConfigError(
                f"AUG.AUTO_AUGMENT {config.AUG.AUTO_AUGMENT!r} is not a timm augmentation policy "
                f"(e.g. 'rand-m9-mstd0.5-inc1', 'original', or 'none'): {error}"
            ) from None
        with_zero_bit_posterize(transform)
        if size <= 32:
            # CIFAR-sized images (the release's rule): random-resized crops of 32 pixels
            # destroy the content, so pad-and-crop instead, after bringing the image to size.
            transform.transforms[0:1] = [
                transforms.Resize(size, interpolation=_EVAL_INTERPOLATION[config.DATA.INTERPOLATION]),
                transforms.CenterCrop(size),
                transforms.RandomCrop(size, padding=4),
            ]
        return transform

    interpolation = _EVAL_INTERPOLATION[config.DATA.INTERPOLATION]
    if config.TEST.CROP:
        # The release resizes the short side to IMG_SIZE itself (crop ratio 1.0, not timm's 0.875).
        resize = [transforms.Resize(size, interpolation=interpolation), transforms.CenterCrop(size)]
    elif config.AUG.RANDOM_RESIZED_CROP:
        resize = [transforms.RandomResizedCrop((size, size), interpolation=interpolation)]
    else:
        resize = [transforms.Resize((size, size), interpolation=interpolation)]
    return transforms.Compose(
        resize + [transforms.ToTensor(), transforms.Normalize(tuple(config.AUG.MEAN), tuple(config.AUG.STD))]
    )


class _FixedClassesFolder(CheckedImageFolder):
    """An image folder whose class list is given (the model's), not read from disk."""

    def __init__(self, root, classes: list[str], classes_from: str, **kwargs):
        self._given_classes = classes
        self._classes_from = classes_from
        super().__init__(root, allow_empty=True, **kwargs)

    def find_classes(self, directory):
        found = {entry.name for entry in os.scandir(directory) if entry.is_dir()}
        unknown = sorted(found - set(self._given_classes))
        if unknown:
            shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
            raise DataError(
                f"{directory} has {len(unknown)} class folder(s) that {self._classes_from} does not have: {shown}; "
                "val/ must use the class-folder names the model was trained on (a subset is fine)"
            )
        return list(self._given_classes), {name: i for i, name in enumerate(self._given_classes)}


def _split_folder(data_path: str, split: str) -> str:
    folder = os.path.join(data_path, split)
    if not os.path.isdir(folder):
        raise DataError(
            f"no {split}/ folder in the dataset folder {data_path} (--data-path / DATA.DATA_PATH); "
            f"expected {folder}/<class name>/<image files>"
        )
    return folder


def _image_folder(config: CfgNode, folder: str, for_training: bool, classes: list[str] | None,
                  classes_from: str = "") -> CheckedImageFolder:
    options = dict(transform=build_transform(config, is_train=for_training), for_training=for_training,
                   on_bad_image=config.DATA.ON_BAD_IMAGE)
    try:
        if classes is None:
            dataset = CheckedImageFolder(folder, **options)
        else:
            dataset = _FixedClassesFolder(folder, classes, classes_from, **options)
    except FileNotFoundError as error:
        raise DataError(
            f"{folder} is not in the ImageFolder layout (one subfolder of images per class): {error}"
        ) from None
    if len(dataset) == 0:
        raise DataError(f"{folder} holds no images (supported extensions: .jpg, .jpeg, .png, .bmp, .webp, ...)")
    return dataset


def build_datasets(
    config: CfgNode, need_train: bool, trained_classes: list[str] | None = None
) -> tuple[CheckedImageFolder | None, CheckedImageFolder, list[str]]:
    """``(train, val, class names)``; ``train`` is None when ``need_train`` is False (evaluation).

    The class names number the model's outputs: ``train/``'s folder names when training;
    for evaluation ``trained_classes`` (the checkpoint's list) when given, else ``train/``'s
    names if that folder exists, else (no record of the training classes) ``val/``'s own.
    """
    data_path = config.DATA.DATA_PATH
    if not data_path:
        raise DataError("no dataset folder given: pass --data-path DIR (or set DATA.DATA_PATH)")
    if not os.path.isdir(data_path):
        raise DataError(f"the dataset folder {data_path} (--data-path / DATA.DATA_PATH) does not exist")
    val_folder = _split_folder(data_path, "val")
    train_folder = os.path.join(data_path, "train")
    train = None
    if need_train:
        train = _image_folder(config, _split_folder(data_path, "train"), for_training=True, classes=None)
        classes, classes_from = train.classes, "train/"
    elif trained_classes is not None:
        classes, classes_from = trained_classes, "the checkpoint's class list"
    elif os.path.isdir(train_folder):
        try:
            classes, classes_from = find_classes(train_folder)[0], "train/"
        except FileNotFoundError as error:
            raise DataError(
                f"{train_folder} is not in the ImageFolder layout (one subfolder per class): {error}"
            ) from None
    else:
        logger.warning(
            "no train/ folder and no class list in the checkpoint: class indices follow val/'s own folders, "
            "which is right only if val/ has every class the model was trained on"
        )
        val = _image_folder(config, val_folder, for_training=False, classes=None)
        return None, val, val.classes
    val = _image_folder(config, val_folder, for_training=False, classes=classes, classes_from=classes_from)
    return train, val, classes


def resolve_num_classes(config: CfgNode, found: int) -> int:
    """MODEL.NUM_CLASSES follows the dataset unless it was set; a set value must cover the dataset."""
    wanted = config.MODEL.NUM_CLASSES
    if wanted == _DEFAULT_NUM_CLASSES:
        return found
    if wanted < found:
        raise ConfigError(
            f"MODEL.NUM_CLASSES is {wanted} but the dataset has {found} class folders; "
            f"leave it at {_DEFAULT_NUM_CLASSES} to follow the dataset"
        )
    return wanted


class ShardSampler(Sampler[int]):
    """Images rank, rank + world, rank + 2 world, ...: each image exactly once over all
    processes, with no padding, so the validation accuracy is exact for any world size."""

    def __init__(self, size: int, rank: int, world_size: int):
        self.indices = range(rank, size, world_size)

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def build_loaders(
    config: CfgNode, train: Dataset | None, val: Dataset, rank: int, world_size: int, device: torch.device
) -> tuple[DataLoader | None, DataLoader]:
    """Loaders for this process; ``set_epoch`` on the training sampler reshuffles per epoch."""
    # Pinned memory only speeds up copies to a GPU; on a CPU it would cost for nothing.
    pin_memory = config.DATA.PIN_MEMORY and device.type == "cuda"
    common = dict(batch_size=config.DATA.BATCH_SIZE, num_workers=config.DATA.NUM_WORKERS, pin_memory=pin_memory)
    train_loader = None
    if train is not None:
        # Shuffled from SEED and the epoch alone, so a resumed epoch sees the same order.
        # Workers are restarted every epoch so that their random streams restart from the
        # per-epoch seed too (persistent workers would carry them across epochs).
        sampler = DistributedSampler(train, num_replicas=world_size, rank=rank, shuffle=True, seed=config.SEED)
        train_loader = DataLoader(train, sampler=sampler, drop_last=True, **common)
        if len(train_loader) == 0:
            raise DataError(
                f"the training set has {len(train)} images, {len(sampler)} per process over {world_size} "
                f"process(es): not one full batch of DATA.BATCH_SIZE={config.DATA.BATCH_SIZE}; lower --batch-size"
            )
    val_loader = DataLoader(
        val,
        sampler=ShardSampler(len(val), rank, world_size),
        persistent_workers=config.DATA.NUM_WORKERS > 0,
        **common,
    )
    return train_loader, val_loader


def build_mixup(config: CfgNode, num_classes: int) -> Mixup | None:
    """timm's Mixup/CutMix (label smoothing folded into its soft targets), or None when off."""
    if not mixing_enabled(config):
        return None
    return Mixup(
        mixup_alpha=config.AUG.MIXUP,
        cutmix_alpha=config.AUG.CUTMIX,
        cutmix_minmax=config.AUG.CUTMIX_MINMAX,
        prob=config.AUG.MIXUP_PROB,
        switch_prob=config.AUG.MIXUP_SWITCH_PROB,
        mode=config.AUG.MIXUP_MODE,
        label_smoothing=config.MODEL.LABEL_SMOOTHING,
        num_classes=num_classes,
    )
