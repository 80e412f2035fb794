"""Shared pieces of the detection/segmentation tests: tiny COCO and ADE20K datasets made
on the spot, and the shrinking of the real configs to a model that trains in seconds."""

from __future__ import annotations

import json
import os

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "configs")
DETECTION_CONFIGS = sorted(os.path.join(CONFIGS, "coco", f) for f in os.listdir(os.path.join(CONFIGS, "coco")))
SEGMENTATION_CONFIGS = sorted(os.path.join(CONFIGS, "ade20k", f) for f in os.listdir(os.path.join(CONFIGS, "ade20k")))

# Tiny GrootV: widths 8/16/32/64.
TINY_BACKBONE = dict(channels=8, depths=[1, 1, 1, 1], drop_path_rate=0.1, init_cfg=None)
TINY_WIDTHS = [8, 16, 32, 64]



def _noise_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    return rng.integers(0, 60, (height, width, 3), dtype=np.uint8)


def make_coco(root: str, seed: int = 0, train: int = 2, val: int = 2, size: tuple[int, int] = (72, 96)) -> str:
    """COCO 2017 layout under ``root``: bright rectangles (polygon masks) and discs (RLE
    masks) on dark noise. Returns ``root``."""
    from mmdet.datasets import CocoDataset
    from pycocotools import mask as mask_utils

    # All 80 classes (the models predict any of them; the dataset matches them by name),
    # numbered 1..80; the objects are persons (1) and cars (3).
    categories = [dict(id=i + 1, name=name) for i, name in enumerate(CocoDataset.METAINFO["classes"])]
    rng = np.random.default_rng(seed)
    height, width = size
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    for split, count in (("train2017", train), ("val2017", val)):
        os.makedirs(os.path.join(root, split), exist_ok=True)
        images, annotations = [], []
        for index in range(count):
            image_id = index + 1
            pixels = _noise_image(rng, height, width)
            # A rectangle, annotated as a polygon.
            x0, y0 = int(rng.integers(2, width // 2 - 4)), int(rng.integers(2, height // 2 - 4))
            w, h = int(rng.integers(16, width // 2)), int(rng.integers(16, height // 2))
            pixels[y0:y0 + h, x0:x0 + w] = (230, 40, 40)
            annotations.append(dict(
                id=len(annotations) + 1, image_id=image_id, category_id=1, iscrowd=0, area=float(w * h),
                bbox=[x0, y0, w, h], segmentation=[[x0, y0, x0 + w, y0, x0 + w, y0 + h, x0, y0 + h]]))
            # A disc, annotated as a run-length-encoded mask.
            cy, cx, r = height * 3 // 4, width * 3 // 4, min(height, width) // 6
            yy, xx = np.mgrid[:height, :width]
            disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            pixels[disc] = (40, 40, 230)
            rle = mask_utils.encode(np.asfortranarray(disc.astype(np.uint8)))
            ys, xs = np.nonzero(disc)
            annotations.append(dict(
                id=len(annotations) + 1, image_id=image_id, category_id=3, iscrowd=0, area=float(disc.sum()),
                bbox=[int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)],
                segmentation=dict(size=[height, width], counts=rle["counts"].decode())))
            name = f"{image_id:012d}.jpg"
            Image.fromarray(pixels).save(os.path.join(root, split, name), quality=95)
            images.append(dict(id=image_id, file_name=name, height=height, width=width))
        with open(os.path.join(root, "annotations", f"instances_{split}.json"), "w") as f:
            json.dump(dict(images=images, annotations=annotations, categories=categories), f)
    return root


def make_ade(root: str, seed: int = 0, train: int = 2, val: int = 2, size: tuple[int, int] = (64, 80)) -> str:
    """ADEChallengeData2016 layout under ``root``: label maps of a few classes (0 is
    "other", ignored by the metric) and images coloured by label. Returns ``root``."""
    rng = np.random.default_rng(seed)
    height, width = size
    palette = rng.integers(0, 256, (151, 3), dtype=np.uint8)
    for split, count in (("training", train), ("validation", val)):
        for kind in ("images", "annotations"):
            os.makedirs(os.path.join(root, kind, split), exist_ok=True)
        for index in range(count):
            labels = np.zeros((height, width), dtype=np.uint8)
            labels[: height // 2, :] = 1 + index  # wall/building/sky...
            labels[height // 2:, : width // 2] = 4
            labels[height // 2:, width // 2:] = 13
            labels[:4, :4] = 0
            pixels = palette[labels] // 2 + rng.integers(0, 100, (height, width, 3), dtype=np.uint8)
            name = f"ADE_{split}_{index:08d}"
            Image.fromarray(pixels.astype(np.uint8)).save(os.path.join(root, "images", split, name + ".jpg"))
            Image.fromarray(labels).save(os.path.join(root, "annotations", split, name + ".png"))
    return root


def _resize_scales(pipeline: list, scale) -> None:
    """Every resize of a pipeline (also those inside RandomChoice/TestTimeAug) to ``scale``,
    every fixed-size crop to 32x32."""
    for step in pipeline:
        if isinstance(step, list):
            _resize_scales(step, scale)
            continue
        if step["type"] in ("Resize", "RandomResize") and "scale" in step:
            step["scale"] = scale
        if "scales" in step:
            step["scales"] = [scale]
        if step["type"] == "RandomCrop" and step.get("crop_type", "absolute") == "absolute":
            step["crop_size"] = (32, 32)
        if "transforms" in step:
            _resize_scales(step["transforms"], scale)


def _small_loaders(cfg, scale, train_batch: int) -> None:
    for name in ("train_dataloader", "val_dataloader", "test_dataloader"):
        loader = cfg[name]
        loader.num_workers = 0
        loader.persistent_workers = False
        _resize_scales(loader.dataset.pipeline, scale)
    cfg.train_dataloader.batch_size = train_batch


def shrink_detector(cfg, work_dir: str) -> None:
    """The real Mask R-CNN config, with a tiny backbone and heads, small images, no workers."""
    model = cfg.model
    model.backbone.update(TINY_BACKBONE)
    model.neck.update(in_channels=TINY_WIDTHS, out_channels=16)
    model.rpn_head.update(in_channels=16, feat_channels=16)
    roi = model.roi_head
    roi.bbox_roi_extractor.out_channels = 16
    roi.bbox_head.update(in_channels=16, fc_out_channels=32)
    roi.mask_roi_extractor.out_channels = 16
    roi.mask_head.update(in_channels=16, conv_out_channels=16)
    model.train_cfg.rpn_proposal.update(nms_pre=200, max_per_img=100)
    model.train_cfg.rcnn.sampler.num = 64
    model.test_cfg.rpn.update(nms_pre=200, max_per_img=100)
    # An untrained model scores every class about equally (1/81): keep its detections so
    # that the COCO evaluation has something to evaluate.
    model.test_cfg.rcnn.score_thr = 0.0
    _small_loaders(cfg, (128, 96), train_batch=1)
    # One epoch of the 2 training images (2 iterations), then validation.
    cfg.train_cfg.max_epochs = 1
    _run_settings(cfg, work_dir)


def shrink_segmentor(cfg, work_dir: str) -> None:
    """The real UperNet config, with a tiny backbone and heads, small images, no workers."""
    model = cfg.model
    model.data_preprocessor.size = (32, 32)
    model.backbone.update(TINY_BACKBONE)
    model.decode_head.update(in_channels=TINY_WIDTHS, channels=16)
    model.auxiliary_head.update(in_channels=TINY_WIDTHS[2], channels=8)
    _small_loaders(cfg, (96, 48), train_batch=2)  # batch 2: UperNet's BN after global pooling needs 2 values
    _resize_scales(cfg.tta_pipeline, (96, 48))
    cfg.train_cfg.update(max_iters=2, val_interval=2)
    _run_settings(cfg, work_dir)


def _run_settings(cfg, work_dir: str) -> None:
    cfg.work_dir = work_dir
    cfg.default_hooks.logger.interval = 1  # every iteration in the log, for the tests to read
