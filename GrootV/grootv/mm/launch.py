"""What ``grootv.mm.train`` and ``grootv.mm.test`` share: reading the config and the launcher.

One process: ``python -m grootv.mm.train CONFIG``. Several (GPUs, one node or many):
``torchrun --nproc_per_node N -m grootv.mm.train CONFIG --launcher pytorch`` (or
GrootV/scripts/dist_train.sh); mmengine's Runner then starts the process group (nccl),
or, without GPUs, :func:`load_config` does (gloo).
"""

from __future__ import annotations

import argparse
import os

import torch
from mmengine.config import Config, DictAction

import grootv.mm  # noqa: F401  (registers the backbone even for a config without custom_imports)

LAUNCHERS = ("none", "pytorch", "slurm", "mpi")


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="an mmdet or mmseg config, e.g. configs/coco/mask_rcnn_grootv_t_fpn_1x_coco.py")
    parser.add_argument("--work-dir", help="where logs and checkpoints go (default: work_dirs/<config name>)")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, metavar="KEY=VALUE",
                        help="config overrides, e.g. train_dataloader.batch_size=4 "
                        "model.backbone.init_cfg.checkpoint=weights.pth")
    parser.add_argument("--launcher", choices=LAUNCHERS, default="none",
                        help="how the processes were started: 'none' for one process, 'pytorch' under torchrun")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="let mmengine unpickle any object in the checkpoints it loads (load_from, --resume, "
                        "Pretrained init_cfg of mmdet/mmseg modules); only for files you trust. Without it they "
                        "are read as weights only, which this project's and mmengine's own checkpoints are")


def load_config(args: argparse.Namespace) -> Config:
    """The config with the command line applied: overrides, work_dir, launcher."""
    if not os.path.isfile(args.config):
        raise FileNotFoundError(f"`config` not found: {args.config!r}")
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get("work_dir") is None:
        cfg.work_dir = os.path.join("work_dirs", os.path.splitext(os.path.basename(args.config))[0])
    cfg.launcher = args.launcher
    if args.launcher != "none" and not torch.cuda.is_available():
        _distribute_on_cpu(cfg)
    return cfg


def _distribute_on_cpu(cfg: Config) -> None:
    """Several CPU processes (torchrun without GPUs): gloo, DDP without a device, plain BatchNorm.

    mmengine assumes GPUs once it is distributed: its process-group set-up selects a CUDA
    device, DDP gets ``device_ids=[LOCAL_RANK]``, and SyncBatchNorm refuses CPU tensors.
    The group is started here instead, with gloo (the Runner then leaves it as it is).
    """
    if cfg.launcher != "pytorch":
        raise ValueError(f"--launcher {cfg.launcher} needs GPUs; without them use torchrun and --launcher pytorch")
    cfg.model_wrapper_cfg = dict(type="MMDistributedDataParallel", device_ids=None, broadcast_buffers=False)
    cfg.model = _without_sync_bn(cfg.model)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="gloo")


def _without_sync_bn(node):
    if isinstance(node, dict):
        return type(node)({k: "BN" if (k, v) == ("type", "SyncBN") else _without_sync_bn(v) for k, v in node.items()})
    if isinstance(node, (list, tuple)):
        return type(node)(_without_sync_bn(v) for v in node)
    return node
