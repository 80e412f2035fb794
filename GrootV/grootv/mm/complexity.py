"""Parameters and FLOPs of the detector or segmentor of a config.

    python -m grootv.mm.complexity configs/coco/mask_rcnn_grootv_t_fpn_1x_coco.py
    python -m grootv.mm.complexity configs/ade20k/upernet_grootv_t_512_160k_ade20k.py --shape 512 2048

FLOPs are counted as :func:`grootv.count_flops` counts the classification models: the
fvcore way (one multiply-add = one FLOP; matrix products, convolutions and norms of a
traced forward pass; no elementwise work), plus the tree scan's own work (4 per element
of its input for the all-roots scan, 1 for a single-root one). What runs is the
convention behind the published numbers of Swin and InternImage, which the paper
compares with:

* detection (default input 800 x 1280, height x width): backbone, FPN, the RPN head's
  convolutions on every level, and 1000 proposals through the box head of which the
  first 100 also go through the mask head (no NMS or other post-processing; RoIAlign
  is not counted);
* segmentation (default 512 x 2048): backbone and decode head; the auxiliary head only
  serves training and is left out.

Parameters are those of the whole model, auxiliary head included.
"""

from __future__ import annotations

import argparse
import json
import os

import torch
from mmengine.config import Config, DictAction
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData
from torch import nn

import grootv.mm  # noqa: F401  (registers the backbone)
from grootv.flops import count_flops

__all__ = ["DEFAULT_SHAPES", "build_model", "complexity", "flops_forward"]

DEFAULT_SHAPES = {"mmdet": (800, 1280), "mmseg": (512, 2048)}
PROPOSALS = 1000


class _TwoStageForward(nn.Module):
    """Image -> backbone, neck, RPN head, RoI heads on a fixed set of proposals."""

    def __init__(self, detector: nn.Module, height: int, width: int):
        super().__init__()
        self.detector = detector
        # Fixed boxes spread over the image: the count, not the place, sets the work.
        generator = torch.Generator().manual_seed(0)
        corner = torch.rand(PROPOSALS, 2, generator=generator) * torch.tensor([width * 0.8, height * 0.8])
        size = torch.rand(PROPOSALS, 2, generator=generator) * torch.tensor([width * 0.2, height * 0.2]) + 8
        self.register_buffer("proposals", torch.cat([corner, corner + size], dim=1), persistent=False)

    def forward(self, image: torch.Tensor):
        features = self.detector.extract_feat(image)
        rpn_outputs = self.detector.rpn_head(features)
        roi_outputs = self.detector.roi_head(features, [InstanceData(bboxes=self.proposals)])
        return (*rpn_outputs[0], *rpn_outputs[1], *roi_outputs)


class _EncoderDecoderForward(nn.Module):
    """Image -> backbone, (neck,) decode head."""

    def __init__(self, segmentor: nn.Module):
        super().__init__()
        self.segmentor = segmentor

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.segmentor.decode_head(self.segmentor.extract_feat(image))


def build_model(config: str | Config, cfg_options: dict | None = None) -> tuple[nn.Module, str]:
    """The model of a config, without weights, on the CPU; and its scope (mmdet/mmseg)."""
    cfg = config if isinstance(config, Config) else Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    scope = cfg.get("default_scope")
    if scope not in DEFAULT_SHAPES:
        raise ValueError(f"the config's default_scope must be one of {sorted(DEFAULT_SHAPES)}, got {scope!r}")
    init_default_scope(scope)
    if scope == "mmdet":
        from mmdet.registry import MODELS
    else:
        from mmseg.registry import MODELS
    return revert_sync_batchnorm(MODELS.build(cfg.model)), scope


def flops_forward(model: nn.Module, height: int, width: int) -> nn.Module:
    """The part of ``model`` whose FLOPs are counted, as a module taking one image tensor."""
    if hasattr(model, "roi_head") and hasattr(model, "rpn_head"):
        return _TwoStageForward(model, height, width)
    if hasattr(model, "decode_head"):
        return _EncoderDecoderForward(model)
    raise ValueError(f"FLOPs are counted for two-stage detectors and encoder-decoder segmentors, "
                     f"not for {type(model).__name__}")


def complexity(config: str | Config, shape: tuple[int, int] | None = None, cfg_options: dict | None = None) -> dict:
    """``{'params', 'backbone_params', 'flops', 'backbone_flops', 'shape'}`` of a config's model."""
    model, scope = build_model(config, cfg_options)
    height, width = shape or DEFAULT_SHAPES[scope]
    model.eval()
    return dict(
        params=sum(p.numel() for p in model.parameters()),
        backbone_params=sum(p.numel() for p in model.backbone.parameters()),
        flops=count_flops(flops_forward(model, height, width), img_size=(height, width)),
        backbone_flops=count_flops(model.backbone, img_size=(height, width)),
        shape=(height, width),
    )


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="python -m grootv.mm.complexity", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("configs", nargs="+", metavar="CONFIG", help="mmdet/mmseg configs")
    parser.add_argument("--shape", nargs=2, type=int, metavar=("HEIGHT", "WIDTH"),
                        help="input size (default: 800 1280 for detection, 512 2048 for segmentation)")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, metavar="KEY=VALUE", help="config overrides")
    parser.add_argument("--json", action="store_true", help="print one JSON line per config instead of a table")
    args = parser.parse_args(argv)
    if args.shape is not None and min(args.shape) < 32:
        parser.error(f"--shape must be at least 32 x 32 (the backbone downsamples 32 times), got {args.shape}")
    rows = []
    if not args.json:
        print(f"{'config':<42} {'input':>10} {'params (M)':>11} {'backbone':>9} {'GFLOPs':>8} {'backbone':>9}")
    for path in args.configs:
        if not os.path.isfile(path):
            parser.error(f"config not found: {path}")
        row = dict(config=path, **complexity(path, tuple(args.shape) if args.shape else None, args.cfg_options))
        rows.append(row)
        if args.json:
            print(json.dumps(row))
        else:
            name = os.path.splitext(os.path.basename(path))[0]
            print(f"{name:<42} {row['shape'][0]:>4}x{row['shape'][1]:<5} {row['params'] / 1e6:>11.2f} "
                  f"{row['backbone_params'] / 1e6:>9.2f} {row['flops'] / 1e9:>8.1f} "
                  f"{row['backbone_flops'] / 1e9:>9.1f}")
    return rows


if __name__ == "__main__":
    main()
