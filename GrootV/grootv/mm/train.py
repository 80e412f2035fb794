"""Train a GrootV detector or segmentor with mmengine's Runner.

    python -m grootv.mm.train configs/coco/mask_rcnn_grootv_t_fpn_1x_coco.py
    torchrun --nproc_per_node 8 -m grootv.mm.train CONFIG --launcher pytorch

Logs, the resolved config and checkpoints go to --work-dir (default
work_dirs/<config name>). ``--resume`` continues from the newest checkpoint there (or
from the given one).
"""

from __future__ import annotations

import argparse

from mmengine.runner import Runner

from .launch import add_common_arguments, load_config
from .safe_loading import trusted_checkpoints


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m grootv.mm.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument("--resume", nargs="?", const="auto", metavar="CHECKPOINT",
                        help="resume training: from the newest checkpoint in the work dir, or from CHECKPOINT")
    parser.add_argument("--amp", action="store_true",
                        help="mixed precision (the tree scan itself stays float32)")
    parser.add_argument("--auto-scale-lr", action="store_true",
                        help="scale the learning rate to the total batch (detection configs: base batch 16)")
    return parser


def main(argv: list[str] | None = None) -> Runner:
    args = build_parser().parse_args(argv)
    cfg = load_config(args)
    if args.amp:
        cfg.optim_wrapper.type = "AmpOptimWrapper"
        cfg.optim_wrapper.loss_scale = "dynamic"
    if args.auto_scale_lr:
        if "auto_scale_lr" not in cfg:
            raise ValueError(f"--auto-scale-lr: {args.config} has no `auto_scale_lr` (its base batch size)")
        cfg.auto_scale_lr.enable = True
    if args.resume == "auto":
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    runner = Runner.from_cfg(cfg)
    with trusted_checkpoints(args.trust_checkpoint):
        runner.train()
    return runner


if __name__ == "__main__":
    main()
