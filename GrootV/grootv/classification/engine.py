"""One training epoch, one evaluation pass, and the throughput measurement."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm
from yacs.config import CfgNode

from .distributed import Runtime, sum_over_processes
from .images import LEFT_OUT

logger = logging.getLogger(__name__.rsplit(".", 1)[0])


@dataclass(frozen=True)
class Precision:
    """Mixed precision: torch.autocast to ``dtype`` when ``enabled``; fp16 also scales the loss."""

    enabled: bool
    dtype: torch.dtype
    device_type: str

    def autocast(self):
        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.enabled)

    def grad_scaler(self) -> torch.amp.GradScaler:
        # bfloat16 has float32's range: its gradients do not underflow and need no scaling.
        return torch.amp.GradScaler(self.device_type, enabled=self.enabled and self.dtype == torch.float16)

    def describe(self) -> str:
        return f"autocast to {str(self.dtype).replace('torch.', '')}" if self.enabled else "float32"


def resolve_precision(config: CfgNode, device: torch.device) -> Precision:
    """AMP_OPT_LEVEL '' = on with CUDA and off on CPU (where fp16 is slow); 'O0' off; 'O1'/'O2' on."""
    level = config.AMP_OPT_LEVEL
    enabled = device.type == "cuda" if level == "" else level != "O0"
    dtype = torch.bfloat16 if config.AMP_TYPE == "bfloat16" else torch.float16
    return Precision(enabled=enabled, dtype=dtype, device_type=device.type)


def _bar(total: int, desc: str, runtime: Runtime, progress: bool) -> tqdm:
    return tqdm(total=total, desc=desc, disable=not (progress and runtime.is_main), dynamic_ncols=True, leave=False)


def train_one_epoch(
    *,
    model: nn.Module,
    model_without_ddp: nn.Module,
    loader,
    optimizer: torch.optim.Optimizer,
    scheduler,
    criterion: nn.Module,
    mixup,
    scaler: torch.amp.GradScaler,
    precision: Precision,
    ema,
    epoch: int,
    updates_per_epoch: int,
    config: CfgNode,
    runtime: Runtime,
    progress: bool,
) -> dict:
    """Trains one epoch of ``updates_per_epoch`` optimizer updates; returns its statistics,
    summed over all processes."""
    model.train()
    optimizer.zero_grad(set_to_none=True)
    accumulation = max(1, config.TRAIN.ACCUMULATION_STEPS)
    clip = config.TRAIN.CLIP_GRAD or math.inf
    batches = updates_per_epoch * accumulation
    device = runtime.device
    # Per-batch values stay on the device until the end of the epoch (no sync per step).
    losses, batch_sizes, grad_norms = [], [], []
    start = time.perf_counter()
    bar = _bar(batches, f"train {epoch}", runtime, progress)
    for index, (images, targets) in enumerate(loader):
        if index >= batches:
            break
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        if mixup is not None:
            images, targets = mixup(images, targets)
        finishes_update = (index + 1) % accumulation == 0
        # Gradients are all-reduced only on the micro-batch that completes an update.
        sync = (
            model.no_sync()
            if isinstance(model, DistributedDataParallel) and not finishes_update
            else contextlib.nullcontext()
        )
        with sync:
            with precision.autocast():
                loss = criterion(model(images), targets)
            scaler.scale(loss / accumulation).backward()
        if finishes_update:
            update = epoch * updates_per_epoch + index // accumulation
            scheduler.step_update(update)
            scaler.unscale_(optimizer)
            grad_norms.append(torch.nn.utils.clip_grad_norm_(model.parameters(), clip).detach().double())
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            if ema is not None:
                ema.update(model_without_ddp, step=update)
        losses.append(loss.detach().double())
        batch_sizes.append(images.shape[0])
        bar.update(1)
        if (index + 1) % config.PRINT_FREQ == 0 or index + 1 == batches:
            lr = optimizer.param_groups[0]["lr"]
            current = loss.item()
            bar.set_postfix(loss=f"{current:.4f}", lr=f"{lr:.2e}")
            logger.debug(f"train epoch {epoch} step {index + 1}/{batches} loss {current:.4f} lr {lr:.3e}")
    bar.close()
    seconds = time.perf_counter() - start
    losses = torch.stack(losses)
    sizes = torch.tensor(batch_sizes, dtype=torch.float64, device=device)
    norms = torch.stack(grad_norms)
    # A float16 overflow gives an infinite loss and gradients, and the loss scaler skips that
    # update; such batches are counted, not averaged in.
    finite, finite_norms = torch.isfinite(losses), torch.isfinite(norms)
    loss_sum, finite_images, nonfinite, norm_sum, finite_updates, images = sum_over_processes(
        [
            (losses * sizes)[finite].sum().item(),
            sizes[finite].sum().item(),
            float((~finite).sum()),
            norms[finite_norms].sum().item(),
            float(finite_norms.sum()),
            sizes.sum().item(),
        ],
        runtime,
    )
    return {
        "train_loss": loss_sum / finite_images if finite_images else math.nan,
        "lr": optimizer.param_groups[0]["lr"],
        "grad_norm": norm_sum / finite_updates if finite_updates else math.nan,
        "nonfinite_steps": int(nonfinite),
        "epoch_time": seconds,
        "images_per_second": images / seconds,
    }


@torch.no_grad()
def evaluate(model: nn.Module, loader, precision: Precision, runtime: Runtime, progress: bool, desc: str) -> dict:
    """Top-1/top-5 accuracy (%) and cross-entropy over the whole validation set.

    Run on the bare model (not the DDP wrapper): every process scores its own shard and
    only the sums are all-reduced, so shards of different sizes are fine.
    """
    model.eval()
    device = runtime.device
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss, top-1, top-5, images
    bar = _bar(len(loader), desc, runtime, progress)
    for images, targets in loader:
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        # Unreadable images skipped with DATA.ON_BAD_IMAGE skip come labelled LEFT_OUT (-1).
        kept = targets != LEFT_OUT
        if not kept.all():
            images, targets = images[kept], targets[kept]
            if targets.numel() == 0:
                bar.update(1)
                continue
        with precision.autocast():
            logits = model(images)
        logits = logits.float()
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hits = top == targets[:, None]
        sums += torch.stack(
            [
                F.cross_entropy(logits, targets, reduction="sum").double(),
                hits[:, 0].sum().double(),
                hits.any(dim=1).sum().double(),
                torch.tensor(float(targets.shape[0]), dtype=torch.float64, device=device),
            ]
        )
        bar.update(1)
    bar.close()
    loss, top1, top5, count = sum_over_processes(sums.tolist(), runtime)
    count = max(count, 1.0)
    return {"acc1": 100.0 * top1 / count, "acc5": 100.0 * top5 / count, "loss": loss / count, "images": int(count)}


@torch.no_grad()
def measure_throughput(model: nn.Module, images: torch.Tensor, precision: Precision, iterations: int) -> float:
    """Inference images per second on one batch: ``iterations // 3 + 1`` warm-up passes, then
    ``iterations`` timed ones."""
    model.eval()
    synchronize = torch.cuda.synchronize if images.device.type == "cuda" else (lambda: None)
    with precision.autocast():
        for _ in range(iterations // 3 + 1):
            model(images)
        synchronize()
        start = time.perf_counter()
        for _ in range(iterations):
            model(images)
        synchronize()
    return iterations * images.shape[0] / (time.perf_counter() - start)
