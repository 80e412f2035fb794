"""Evaluate a trained GrootV detector or segmentor (COCO box/mask mAP, ADE20K mIoU).

    python -m grootv.mm.test CONFIG CHECKPOINT
    python -m grootv.mm.test CONFIG CHECKPOINT --tta          # segmentation: multi-scale + flip
    torchrun --nproc_per_node 8 -m grootv.mm.test CONFIG CHECKPOINT --launcher pytorch

The metrics are printed and written under --work-dir (default work_dirs/<config name>).
"""

from __future__ import annotations

import argparse

from mmengine.runner import Runner

from .launch import add_common_arguments, load_config
from .safe_loading import trusted_checkpoints


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m grootv.mm.test", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument("checkpoint", help="the trained weights (a checkpoint written by grootv.mm.train)")
    parser.add_argument("--tta", action="store_true",
                        help="test-time augmentation of the config (tta_model, tta_pipeline): the "
                        "multi-scale + flip mIoU of the segmentation configs")
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    cfg = load_config(args)
    cfg.load_from = args.checkpoint
    if args.tta:
        if "tta_model" not in cfg or "tta_pipeline" not in cfg:
            raise ValueError(f"--tta: {args.config} defines no test-time augmentation (tta_model, tta_pipeline)")
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
        cfg.tta_model.module = cfg.model
        cfg.model = cfg.tta_model
    runner = Runner.from_cfg(cfg)
    with trusted_checkpoints(args.trust_checkpoint):
        return runner.test()


if __name__ == "__main__":
    main()
