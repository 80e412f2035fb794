"""Seconds per training iteration on the CPU: Mask R-CNN-T and UperNet-T, beside ResNet-50 peers.

    python benchmarks/bench_mm_cpu.py            # 1 warm-up + 3 timed iterations per model
    python benchmarks/bench_mm_cpu.py --quick    # 1 timed iteration, no peers

A training iteration is what the runner does per step: data pre-processing (normalise,
pad), forward with losses, backward, AdamW step, with the configs' optimiser settings and
no pretrained weights. Inputs are synthetic: one 800x1333 image with 3 boxes and masks
for Mask R-CNN; 512x512 images with a random label map for UperNet, two of them,
because UperNet's BatchNorm after its 1x1 global pooling cannot train on a batch of one.
The peers are the same detector and segmentor with mmdet's and mmseg's ResNet-50
backbones (the FPN/heads and the machine's state are then shared, so the ratio is
steadier than the seconds on a busy machine).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.structures import InstanceData, PixelData

from grootv.mm.complexity import build_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MASK_RCNN_T = os.path.join(ROOT, "configs", "coco", "mask_rcnn_grootv_t_fpn_1x_coco.py")
UPERNET_T = os.path.join(ROOT, "configs", "ade20k", "upernet_grootv_t_512_160k_ade20k.py")
# The peers: the configs above with the codebases' own ResNet-50 backbones.
RESNET50_DET = dict(type="ResNet", depth=50, num_stages=4, out_indices=(0, 1, 2, 3), frozen_stages=1,
                    norm_cfg=dict(type="BN", requires_grad=True), norm_eval=True, style="pytorch")
RESNET50_SEG = dict(type="ResNetV1c", depth=50, num_stages=4, out_indices=(0, 1, 2, 3), dilations=(1, 1, 1, 1),
                    strides=(1, 2, 2, 2), norm_cfg=dict(type="BN", requires_grad=True), norm_eval=False,
                    style="pytorch", contract_dilation=True)


def _config(path: str, backbone: dict | None, in_channels: list[int] | None) -> Config:
    cfg = Config.fromfile(path)
    cfg.model.backbone.init_cfg = None  # no weights: the work is the same
    if backbone is not None:
        cfg.model.backbone = backbone
        if "neck" in cfg.model:
            cfg.model.neck.in_channels = in_channels
        else:
            cfg.model.decode_head.in_channels = in_channels
            cfg.model.auxiliary_head.in_channels = in_channels[2]
    return cfg


def detection_batch() -> dict:
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks

    height, width = 800, 1333
    boxes = torch.tensor([[100.0, 100, 400, 500], [600, 200, 1000, 700], [50, 500, 300, 780]])
    masks = np.zeros((3, height, width), dtype=np.uint8)
    for mask, (x0, y0, x1, y1) in zip(masks, boxes.int().tolist()):
        mask[y0:y1, x0:x1] = 1
    sample = DetDataSample(metainfo=dict(img_id=0, img_shape=(height, width), ori_shape=(height, width),
                                         scale_factor=(1.0, 1.0)))
    sample.gt_instances = InstanceData(bboxes=boxes, labels=torch.tensor([0, 2, 5]),
                                       masks=BitmapMasks(masks, height, width))
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return dict(inputs=[image], data_samples=[sample])


def segmentation_batch(images: int = 2) -> dict:
    from mmseg.structures import SegDataSample

    generator = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    for _ in range(images):
        sample = SegDataSample(metainfo=dict(img_shape=(512, 512), ori_shape=(512, 512)))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 150, (1, 512, 512), generator=generator))
        inputs.append(torch.randint(0, 256, (3, 512, 512), dtype=torch.uint8, generator=generator))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def time_training(cfg: Config, batch: dict, warmup: int, runs: int) -> list[float]:
    torch.manual_seed(0)
    model, _ = build_model(cfg)
    model.train()
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    times = []
    for step in range(warmup + runs):
        start = time.perf_counter()
        model.train_step(batch, optim_wrapper)
        if step >= warmup:
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 timed iteration, no ResNet-50 peers")
    parser.add_argument("--runs", type=int, default=3, help="timed iterations per model (default 3)")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error(f"--runs must be at least 1, got {args.runs}")
    runs = 1 if args.quick else args.runs

    from mmengine.logging import MMLogger

    MMLogger.get_instance("mmengine", log_level="WARNING")  # the optimiser's per-parameter lines
    cases = [("Mask R-CNN GrootV-T", MASK_RCNN_T, None, None, "1 x 800x1333", 1, detection_batch),
             ("UperNet GrootV-T", UPERNET_T, None, None, "2 x 512x512", 2, segmentation_batch)]
    if not args.quick:
        cases.insert(1, ("Mask R-CNN R-50", MASK_RCNN_T, RESNET50_DET, [256, 512, 1024, 2048], "1 x 800x1333", 1,
                         detection_batch))
        cases.append(("UperNet R-50", UPERNET_T, RESNET50_SEG, [256, 512, 1024, 2048], "2 x 512x512", 2,
                      segmentation_batch))

    print(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__} with {torch.get_num_threads()} threads; "
          f"1 warm-up + {runs} timed training iterations each (median)")
    print(f"{'model':<22} {'batch':<14} {'s / iteration':>14} {'s / image':>10} {'min':>7}")
    for name, path, backbone, in_channels, shape, images, make_batch in cases:
        times = time_training(_config(path, backbone, in_channels), make_batch(), warmup=1, runs=runs)
        median = statistics.median(times)
        print(f"{name:<22} {shape:<14} {median:>14.2f} {median / images:>10.2f} {min(times):>7.2f}", flush=True)


if __name__ == "__main__":
    main()
