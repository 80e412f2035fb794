"""Train and evaluate image classifiers (GrootV or any timm model) on ImageFolder data.

    python -m grootv.classification.main --cfg GrootV/classification/config/grootv_t_1k_224.yaml \\
        --data-path /data/imagenet --output output/grootv_t [--opts KEY VALUE ...]

Several processes (GPUs, or CPU processes with gloo) and several nodes: start the same
command with ``torchrun --nproc_per_node N [--nnodes M --node_rank R --master_addr A] -m
grootv.classification.main ...`` (see GrootV/scripts/bash_cls_train.sh). Other modes:
``--eval --resume CKPT`` (accuracy of a checkpoint), ``--throughput`` (images/s),
``--auto-resume`` (continue the run in --output from its newest checkpoint).

Writes into --output: ``metrics.jsonl`` (one JSON line per epoch), ``ckpt_epoch_<n>.pth``
(atomic, every SAVE_FREQ epochs), ``log.txt`` and ``config.yaml``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys

import numpy as np
import torch
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.utils import ModelEmaV3
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm
from yacs.config import CfgNode

from .. import atomic
from . import checkpoint as ckpt
from .config import get_config
from .data import build_datasets, build_loaders, build_mixup, resolve_num_classes
from .distributed import Runtime, barrier, broadcast_buffers, broadcast_object, init_runtime, shutdown
from .engine import evaluate, measure_throughput, resolve_precision, train_one_epoch
from .errors import CheckpointError, ConfigError, DataError, PipelineError
from .images import count_unreadable
from .metrics import append_metrics, keep_epochs_before
from .model import build_model
from .optim import build_optimizer
from .schedule import build_scheduler, scaled_learning_rates

logger = logging.getLogger(__name__.rsplit(".", 1)[0])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m grootv.classification.main",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--cfg", metavar="FILE", help="yaml config (its BASE files are merged first); "
                        "without it the defaults (GrootV-T, the release's recipe) are used")
    parser.add_argument("--opts", nargs="+", default=[], metavar="KEY VALUE",
                        help="config overrides as KEY VALUE pairs, e.g. --opts TRAIN.EPOCHS 30 AUG.MIXUP 0.0")
    data = parser.add_argument_group("data")
    data.add_argument("--data-path", help="dataset folder with train/ and val/ (DATA.DATA_PATH)")
    data.add_argument("--batch-size", type=int, help="images per process and step (DATA.BATCH_SIZE)")
    data.add_argument("--dataset", help="a name for the dataset, for the logs (DATA.DATASET; default: the "
                      "dataset folder's name)")
    data.add_argument("--on-bad-image", choices=["stop", "skip"],
                      help="an image file that cannot be decoded: stop with its name (default), or skip it with "
                      "a warning (DATA.ON_BAD_IMAGE)")
    data.add_argument("--zip", action="store_true", help="the release's zipped ImageNet (not provided: an error)")
    data.add_argument("--cache-mode", choices=["no", "full", "part"],
                      help="the release's zip cache mode (DATA.CACHE_MODE)")
    run = parser.add_argument_group("run")
    run.add_argument("--output", metavar="DIR", help="output folder (OUTPUT; default output/<config name>)")
    run.add_argument("--tag", help="a label for the run, for the logs (TAG)")
    run.add_argument("--resume", metavar="CKPT", help="resume training from, or with --eval evaluate, this checkpoint")
    run.add_argument("--auto-resume", action="store_true",
                     help="continue from the newest checkpoint in --output (TRAIN.AUTO_RESUME)")
    run.add_argument("--pretrained", metavar="CKPT",
                     help="start from these weights (a head of another size is re-initialised)")
    run.add_argument("--trust-checkpoint", action="store_true",
                     help="let checkpoint files unpickle any Python object (without it only tensors, plain values "
                     "and the release's yacs config are read); only for files you trust")
    run.add_argument("--eval", action="store_true", help="only evaluate (with --resume CKPT)")
    run.add_argument("--throughput", action="store_true", help="only measure inference images/s")
    run.add_argument("--throughput-iters", type=int, default=30, metavar="N",
                     help="timed passes for --throughput (default 30)")
    run.add_argument("--device", choices=["auto", "cpu", "cuda"], help="DEVICE (default auto: CUDA when present)")
    run.add_argument("--seed", type=int, help="SEED")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    train = parser.add_argument_group("training")
    train.add_argument("--accumulation-steps", type=int, help="micro-batches per update (TRAIN.ACCUMULATION_STEPS)")
    train.add_argument("--use-checkpoint", action="store_true", help="gradient checkpointing (TRAIN.USE_CHECKPOINT)")
    train.add_argument("--amp-opt-level", choices=["O0", "O1", "O2"],
                       help="O0: float32; O1/O2: mixed precision (AMP_OPT_LEVEL; default: on with CUDA, off on CPU)")
    train.add_argument("--amp-dtype", choices=["float16", "bfloat16"], help="mixed-precision type (AMP_TYPE)")
    train.add_argument("--save-ckpt-num", type=int, help="per-epoch checkpoints to keep (SAVE_CKPT_NUM)")
    train.add_argument("--use-zero", action="store_true", help="the release's ZeRO optimizer (not provided: an error)")
    # torch.distributed.launch passes this; torchrun's LOCAL_RANK environment variable is what is used.
    parser.add_argument("--local-rank", "--local_rank", type=int, help=argparse.SUPPRESS)
    return parser


def _overrides(args: argparse.Namespace) -> dict:
    """Config keys set by the dedicated flags (they win over --opts, as in the release)."""
    values = {
        "DATA.DATA_PATH": args.data_path,
        "DATA.BATCH_SIZE": args.batch_size,
        "DATA.DATASET": args.dataset,
        "DATA.CACHE_MODE": args.cache_mode,
        "DATA.ON_BAD_IMAGE": args.on_bad_image,
        "OUTPUT": args.output,
        "TAG": args.tag,
        "MODEL.RESUME": args.resume,
        "MODEL.PRETRAINED": args.pretrained,
        "DEVICE": args.device,
        "SEED": args.seed,
        "TRAIN.ACCUMULATION_STEPS": args.accumulation_steps,
        "AMP_OPT_LEVEL": args.amp_opt_level,
        "AMP_TYPE": args.amp_dtype,
        "SAVE_CKPT_NUM": args.save_ckpt_num,
    }
    switches = {
        "DATA.ZIP_MODE": args.zip,
        "TRAIN.AUTO_RESUME": args.auto_resume,
        "TRAIN.USE_CHECKPOINT": args.use_checkpoint,
        "TRAIN.OPTIMIZER.USE_ZERO": args.use_zero,
        "EVAL_MODE": args.eval,
        "THROUGHPUT_MODE": args.throughput,
    }
    overrides = {key: value for key, value in values.items() if value is not None}
    overrides.update({key: True for key, on in switches.items() if on})
    return overrides


def _setup_logging(output: str | None, runtime: Runtime) -> None:
    """Rank 0 logs to the console (around the progress bars) and to OUTPUT/log.txt."""

    class _TqdmHandler(logging.Handler):
        def emit(self, record):
            tqdm.write(self.format(record), file=sys.stdout)

    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    console = _TqdmHandler()
    console.setLevel(logging.INFO if runtime.is_main else logging.WARNING)
    console.setFormatter(logging.Formatter("[%(asctime)s] %(message)s", "%H:%M:%S"))
    logger.addHandler(console)
    if output and runtime.is_main:
        file_handler = logging.FileHandler(os.path.join(output, "log.txt"))
        file_handler.setFormatter(logging.Formatter("[%(asctime)s] %(message)s"))
        logger.addHandler(file_handler)


def _close_log_file() -> None:
    for handler in list(logger.handlers):
        if isinstance(handler, logging.FileHandler):
            logger.removeHandler(handler)
            handler.close()


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """Every epoch of every process draws from a stream fixed by (SEED, epoch, rank) alone, so an
    epoch run after --auto-resume draws exactly what it would have in an uninterrupted run
    (augmentations, Mixup, drop-path, data-loader workers), whatever ran before it."""
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])


def _criterion(config: CfgNode, mixup) -> torch.nn.Module:
    if mixup is not None:
        # Mixup/CutMix produce soft targets that already include the label smoothing. (The
        # release chose this loss on AUG.MIXUP alone and crashed with CutMix only.)
        return SoftTargetCrossEntropy()
    if config.MODEL.LABEL_SMOOTHING > 0:
        return LabelSmoothingCrossEntropy(smoothing=config.MODEL.LABEL_SMOOTHING)
    return torch.nn.CrossEntropyLoss()


def _with_num_classes(config: CfgNode, num_classes: int) -> CfgNode:
    effective = config.clone()
    effective.defrost()
    effective.MODEL.NUM_CLASSES = num_classes
    effective.freeze()
    return effective


def _describe(model: torch.nn.Module, config: CfgNode, num_classes: int, classes: list[str]) -> None:
    params = sum(p.numel() for p in model.parameters())
    shown = f" ({', '.join(classes[:8])}{', ...' if len(classes) > 8 else ''})" if classes else ""
    logger.info(f"model {config.MODEL.TYPE}: {params:,} parameters, {num_classes} classes{shown}")


def _eval_checkpoint_path(config: CfgNode) -> str:
    path = config.MODEL.RESUME or config.MODEL.PRETRAINED
    if not path and config.TRAIN.AUTO_RESUME:
        path = ckpt.latest_checkpoint(config.OUTPUT)
    if not path:
        raise ConfigError("--eval needs weights: pass --resume CKPT (or --auto-resume with checkpoints in --output)")
    return path


def _trained_image_size(config: CfgNode, checkpoint: dict, path: str, explicit: bool) -> CfgNode:
    """The config with DATA.IMG_SIZE at the size the checkpoint was trained at, when it records one.

    A size the user set that differs from it is an error rather than a silently different
    (and usually much lower) accuracy.
    """
    trained = ckpt.trained_image_size(checkpoint, path)
    if trained is None or trained == config.DATA.IMG_SIZE:
        return config
    if explicit:
        raise ConfigError(
            f"{path} was trained at {trained}px, but DATA.IMG_SIZE is set to {config.DATA.IMG_SIZE} (--cfg / --opts); "
            f"leave DATA.IMG_SIZE out (or set it to {trained}) to evaluate at the training size"
        )
    logger.info(f"evaluating at {trained}px, the image size {path} was trained at")
    sized = config.clone()
    sized.defrost()
    sized.DATA.IMG_SIZE = trained
    sized.freeze()
    return sized


def _evaluate_checkpoint(config, args, runtime, model, val_loader, precision, path: str, checkpoint: dict) -> dict:
    has_plain = any(key in checkpoint for key in ("model", "state_dict"))
    has_ema = any(key in checkpoint for key in ("model_ema", "state_dict_ema"))
    source = ckpt.load_weights(model, checkpoint, path, use_ema=None)
    result = {"checkpoint": path, "weights": source}
    stats = evaluate(model, val_loader, precision, runtime, not args.no_progress, "eval")
    result.update({f"val_{key}": value for key, value in stats.items()})
    result["skipped_images"] = count_unreadable([val_loader.dataset], runtime.device, runtime.distributed)
    if result["skipped_images"]:
        logger.warning(f"{result['skipped_images']} unreadable image file(s) left out of the evaluation")
    logger.info(f"{path} [{source}]: top-1 {stats['acc1']:.2f}%  top-5 {stats['acc5']:.2f}%  "
                f"loss {stats['loss']:.4f}  ({stats['images']} images)")
    if has_plain and has_ema:
        ckpt.load_weights(model, checkpoint, path, use_ema=True)
        stats = evaluate(model, val_loader, precision, runtime, not args.no_progress, "eval ema")
        result.update({f"ema_val_{key}": value for key, value in stats.items()})
        logger.info(f"{path} [EMA]: top-1 {stats['acc1']:.2f}%  top-5 {stats['acc5']:.2f}%  loss {stats['loss']:.4f}")
    if runtime.is_main and config.OUTPUT:
        atomic.write_text(os.path.join(config.OUTPUT, "eval.json"), json.dumps(result, indent=1))
    return result


def _throughput(config, args, runtime, model, val_loader, precision) -> dict:
    if args.throughput_iters < 1:
        raise ConfigError(f"--throughput-iters must be >= 1, got {args.throughput_iters}")
    path = config.MODEL.RESUME or config.MODEL.PRETRAINED
    if path:
        ckpt.load_weights(model, ckpt.read_checkpoint(path, args.trust_checkpoint), path)
    if val_loader is not None:
        images = next(iter(val_loader))[0]
    else:
        # No dataset needed to time the model: random images of the configured size.
        images = torch.randn(config.DATA.BATCH_SIZE, 3, config.DATA.IMG_SIZE, config.DATA.IMG_SIZE)
    images = images.to(runtime.device)
    rate = measure_throughput(model, images, precision, args.throughput_iters)
    logger.info(f"throughput: {rate:.1f} images/s (batch {images.shape[0]}, {config.DATA.IMG_SIZE}px, "
                f"{precision.describe()}, {runtime.device})")
    return {"throughput": rate, "batch_size": images.shape[0], "img_size": config.DATA.IMG_SIZE}


def _resume_source(config: CfgNode, runtime: Runtime, trusted: bool) -> str | None:
    """The checkpoint to resume from, decided on rank 0 (the output folder is assumed shared)."""
    decision = None
    if runtime.is_main:
        try:
            decision = _choose_resume_checkpoint(config, trusted)
        except PipelineError as error:
            decision = error  # raised on every process below, so that none waits for the others
    decision = broadcast_object(decision, runtime)
    if isinstance(decision, Exception):
        raise decision
    return decision


def _choose_resume_checkpoint(config: CfgNode, trusted: bool) -> str | None:
    if config.MODEL.RESUME:
        return config.MODEL.RESUME
    newest = ckpt.resume_checkpoint(config.OUTPUT, trusted)
    if config.TRAIN.AUTO_RESUME or newest is None:
        return newest
    raise ConfigError(
        f"the output folder {config.OUTPUT} already holds checkpoints of a run ({os.path.basename(newest)}): "
        "pass --auto-resume to continue it, or choose another --output"
    )


def _train(config, args, runtime, model, train_loader, val_loader, num_classes, classes, precision) -> dict:
    progress = not args.no_progress
    resume_path = _resume_source(config, runtime, args.trust_checkpoint)
    if config.MODEL.PRETRAINED and not resume_path:
        replaced = ckpt.load_pretrained(model, config.MODEL.PRETRAINED, args.trust_checkpoint,
                                        config.TRAIN.RAND_INIT_FT_HEAD)
        logger.info(f"started from {config.MODEL.PRETRAINED}" + (f" (new head: {replaced})" if replaced else ""))
    ema = ModelEmaV3(model, decay=config.TRAIN.EMA.DECAY) if config.TRAIN.EMA.ENABLE else None
    accumulation = max(1, config.TRAIN.ACCUMULATION_STEPS)
    updates_per_epoch = len(train_loader) // accumulation
    if updates_per_epoch == 0:
        raise ConfigError(
            f"TRAIN.ACCUMULATION_STEPS={accumulation} exceeds the {len(train_loader)} batches of an epoch"
        )
    rates = scaled_learning_rates(config, runtime.world_size)
    optimizer = build_optimizer(config, model, rates.base)
    scheduler = build_scheduler(config, optimizer, rates, updates_per_epoch)
    scaler = precision.grad_scaler()
    mixup = build_mixup(config, num_classes)
    criterion = _criterion(config, mixup)

    start_epoch = config.TRAIN.START_EPOCH
    best = {"max_accuracy": 0.0, "max_accuracy_ema": 0.0, "best_epoch": None, "best_epoch_ema": None}
    resumed = None
    if resume_path:
        checkpoint = ckpt.read_checkpoint(resume_path, args.trust_checkpoint)
        state = ckpt.restore_training_state(checkpoint, resume_path, model, ema.module if ema else None,
                                            optimizer, scaler)
        resumed = (resume_path, {key: checkpoint[key] for key in ("epoch", *ckpt.BEST_FILES.values())
                                 if key in checkpoint})
        del checkpoint
        start_epoch = state["epoch"] + 1
        best = {key: state[key] for key in best}
        logger.info(f"resumed from {resume_path}: epoch {state['epoch']} done, continuing at epoch {start_epoch}")
    problem = None
    if runtime.is_main:
        # Resuming from an older checkpoint abandons the epochs after it: their metrics
        # lines, and their checkpoints, which --auto-resume would otherwise pick up later.
        # A kill may also have cut short a write or come between the files of one epoch.
        try:
            keep_epochs_before(config.OUTPUT, start_epoch)
            ckpt.tidy_output(config.OUTPUT, config.SAVE_CKPT_NUM, resumed, args.trust_checkpoint)
        except PipelineError as error:
            problem = error
    problem = broadcast_object(problem, runtime)  # the other processes must not wait for rank 0 forever
    if problem is not None:
        raise problem

    ddp_model = model
    if runtime.distributed:
        ddp_model = DistributedDataParallel(
            model, device_ids=[runtime.local_rank] if runtime.device.type == "cuda" else None
        )
    if start_epoch < config.TRAIN.EPOCHS:
        logger.info(
            f"training run {config.TAG!r}, epochs {start_epoch}..{config.TRAIN.EPOCHS - 1}: "
            f"{runtime.world_size} process(es) x {config.DATA.BATCH_SIZE} images x {accumulation} accumulation "
            f"step(s), {updates_per_epoch} updates/epoch, lr {rates.base:.3e} (warm-up from {rates.warmup:.1e}, "
            f"min {rates.min:.1e}), {precision.describe()}, {runtime.device}"
        )
    config_yaml = config.dump()
    record = None
    skipped_before = 0
    for epoch in range(start_epoch, config.TRAIN.EPOCHS):
        _seed_everything(_epoch_seed(config.SEED, epoch, runtime.rank))
        train_loader.sampler.set_epoch(epoch)
        record = {"epoch": epoch}
        record.update(train_one_epoch(
            model=ddp_model, model_without_ddp=model, loader=train_loader, optimizer=optimizer, scheduler=scheduler,
            criterion=criterion, mixup=mixup, scaler=scaler, precision=precision, ema=ema, epoch=epoch,
            updates_per_epoch=updates_per_epoch, config=config, runtime=runtime, progress=progress,
        ))
        if not all(torch.isfinite(p).all() for p in model.parameters()):
            raise PipelineError(
                f"training diverged in epoch {epoch}: the weights hold NaN/inf (mean loss {record['train_loss']}); "
                "lower TRAIN.BASE_LR or keep TRAIN.CLIP_GRAD on. The last good checkpoint is kept"
            )
        broadcast_buffers(model, runtime)
        if ema is not None:
            broadcast_buffers(ema.module, runtime)
        last = epoch == config.TRAIN.EPOCHS - 1
        record.update({f"{prefix}val_{key}": None for prefix in ("", "ema_") for key in ("acc1", "acc5", "loss")})
        improved = improved_ema = False
        if epoch % config.EVAL_FREQ == 0 or last:
            stats = evaluate(model, val_loader, precision, runtime, progress, f"val {epoch}")
            record.update({"val_acc1": stats["acc1"], "val_acc5": stats["acc5"], "val_loss": stats["loss"]})
            improved = stats["acc1"] > best["max_accuracy"]
            if improved:
                best.update(max_accuracy=stats["acc1"], best_epoch=epoch)
            if ema is not None:
                stats = evaluate(ema.module, val_loader, precision, runtime, progress, f"val ema {epoch}")
                record.update(
                    {"ema_val_acc1": stats["acc1"], "ema_val_acc5": stats["acc5"], "ema_val_loss": stats["loss"]}
                )
                improved_ema = stats["acc1"] > best["max_accuracy_ema"]
                if improved_ema:
                    best.update(max_accuracy_ema=stats["acc1"], best_epoch_ema=epoch)
        record.update(max_accuracy=best["max_accuracy"], world_size=runtime.world_size)
        record["skipped_images"] = count_unreadable([train_loader.dataset, val_loader.dataset], runtime.device,
                                                    runtime.distributed)
        if record["skipped_images"] > skipped_before:
            logger.warning(f"{record['skipped_images']} unreadable image file(s) skipped so far (named in the "
                           "warnings above and in log.txt)")
        skipped_before = record["skipped_images"]
        logger.info(_epoch_line(record, config.TRAIN.EPOCHS))
        if runtime.is_main:
            # Metrics first: a run killed between the two re-runs this epoch and drops its line.
            append_metrics(config.OUTPUT, record)
            due = (epoch + 1) % config.SAVE_FREQ == 0 or last
            if due or improved or improved_ema:
                state = ckpt.training_state(epoch, model, ema.module if ema else None, optimizer, scheduler, scaler,
                                            best, runtime.world_size, config_yaml, classes)
                # Per-epoch checkpoint first: a kill before a best copy is written is then
                # repaired from it when the run resumes (checkpoint.tidy_output).
                if due:
                    atomic.torch_save(state, ckpt.checkpoint_path(config.OUTPUT, epoch))
                if improved:
                    atomic.torch_save(state, ckpt.checkpoint_path(config.OUTPUT, "best"))
                if improved_ema:
                    atomic.torch_save(state, ckpt.checkpoint_path(config.OUTPUT, "ema_best"))
                if due:
                    ckpt.prune_checkpoints(config.OUTPUT, config.SAVE_CKPT_NUM)
        barrier(runtime)
    if record is None:
        logger.info(f"nothing to train: the run in {config.OUTPUT} finished all {config.TRAIN.EPOCHS} epochs")
    return {"last_epoch": record, "max_accuracy": best["max_accuracy"], "max_accuracy_ema": best["max_accuracy_ema"]}


def _epoch_line(record: dict, epochs: int) -> str:
    line = (f"epoch {record['epoch']}/{epochs - 1}: train loss {record['train_loss']:.4f}, lr {record['lr']:.3e}, "
            f"{record['images_per_second']:.1f} img/s")
    if record["val_acc1"] is not None:
        line += f" | val top-1 {record['val_acc1']:.2f}% top-5 {record['val_acc5']:.2f}% loss {record['val_loss']:.4f}"
    if record["ema_val_acc1"] is not None:
        line += f" | EMA top-1 {record['ema_val_acc1']:.2f}%"
    return line


def run(argv: list[str] | None = None) -> dict:
    """Parses ``argv`` and runs; raises :class:`PipelineError` on anything the user can fix.

    Returns a summary: for training ``{"last_epoch": <the last metrics record or None>,
    "max_accuracy", "max_accuracy_ema"}``, for --eval the accuracies, for --throughput the rate.
    """
    args = build_parser().parse_args(argv)
    explicit = set()
    config = get_config(args.cfg, args.opts, _overrides(args), explicit)
    if not config.OUTPUT:
        config.defrost()
        config.OUTPUT = os.path.join("output", config.MODEL.NAME)
        config.freeze()
    runtime = init_runtime(config.DEVICE)
    try:
        return _run(config, args, runtime, explicit)
    finally:
        shutdown(runtime)
        _close_log_file()


def _run(config: CfgNode, args: argparse.Namespace, runtime: Runtime, explicit: set[str]) -> dict:
    """``explicit``: the config keys the user set (in --cfg, --opts or a flag)."""
    if runtime.is_main:
        os.makedirs(config.OUTPUT, exist_ok=True)
    barrier(runtime)
    _setup_logging(config.OUTPUT, runtime)
    if runtime.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    # Identical initial weights on every process (DDP also broadcasts rank 0's).
    _seed_everything(config.SEED)
    precision = resolve_precision(config, runtime.device)

    timing_only = config.THROUGHPUT_MODE and not config.DATA.DATA_PATH
    eval_path = eval_checkpoint = None
    if config.EVAL_MODE and not config.THROUGHPUT_MODE:
        # Read first: its class list decides how val/'s folders are numbered.
        eval_path = _eval_checkpoint_path(config)
        eval_checkpoint = ckpt.read_checkpoint(eval_path, args.trust_checkpoint)
        config = _trained_image_size(config, eval_checkpoint, eval_path, "DATA.IMG_SIZE" in explicit)
    train_set = val_set = train_loader = val_loader = None
    if timing_only:
        num_classes, classes = config.MODEL.NUM_CLASSES, []
    else:
        need_train = not (config.EVAL_MODE or config.THROUGHPUT_MODE)
        trained_classes = ckpt.trained_classes(eval_checkpoint, eval_path) if eval_checkpoint is not None else None
        train_set, val_set, classes = build_datasets(config, need_train, trained_classes)
        num_classes = resolve_num_classes(config, len(classes))
        train_loader, val_loader = build_loaders(config, train_set, val_set, runtime.rank, runtime.world_size,
                                                 runtime.device)
    config = _with_num_classes(config, num_classes)
    if runtime.is_main and not (config.EVAL_MODE or config.THROUGHPUT_MODE):
        atomic.write_text(os.path.join(config.OUTPUT, "config.yaml"), config.dump())

    model = build_model(config, num_classes).to(runtime.device)
    _describe(model, config, num_classes, classes)
    if val_set is not None:
        sizes = f"{len(train_set)} training and " if train_set is not None else ""
        name = config.DATA.DATASET or os.path.basename(os.path.normpath(config.DATA.DATA_PATH))
        logger.info(f"data {name!r} in {config.DATA.DATA_PATH}: {sizes}{len(val_set)} validation "
                    f"images, {config.DATA.IMG_SIZE}px")
    if config.THROUGHPUT_MODE:
        return _throughput(config, args, runtime, model, val_loader, precision)
    if config.EVAL_MODE:
        return _evaluate_checkpoint(config, args, runtime, model, val_loader, precision, eval_path, eval_checkpoint)
    return _train(config, args, runtime, model, train_loader, val_loader, num_classes, classes, precision)


def main(argv: list[str] | None = None) -> None:
    """The command line: errors the user can fix are printed as one line, exit status 2."""
    try:
        run(argv)
    except PipelineError as error:
        kinds = {ConfigError: " (config)", DataError: " (data)", CheckpointError: " (checkpoint)"}
        kind = next((label for kind, label in kinds.items() if isinstance(error, kind)), "")
        print(f"error{kind}: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
