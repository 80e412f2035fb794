"""Learning-rate scaling and schedules (timm's schedulers, stepped every optimizer update)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from timm.scheduler import CosineLRScheduler, PolyLRScheduler, StepLRScheduler
from timm.scheduler.scheduler import Scheduler
from yacs.config import CfgNode

# The configs give learning rates for this total batch.
REFERENCE_BATCH = 512


@dataclass(frozen=True)
class LearningRates:
    base: float
    warmup: float
    min: float


def scaled_learning_rates(config: CfgNode, world_size: int) -> LearningRates:
    """The release's linear scaling rule: every rate x (images per update) / 512, where
    images per update = DATA.BATCH_SIZE x processes x accumulation steps."""
    images_per_update = config.DATA.BATCH_SIZE * world_size * max(1, config.TRAIN.ACCUMULATION_STEPS)
    factor = images_per_update / REFERENCE_BATCH
    return LearningRates(
        base=config.TRAIN.BASE_LR * factor,
        warmup=config.TRAIN.WARMUP_LR * factor,
        min=config.TRAIN.MIN_LR * factor,
    )


def build_scheduler(
    config: CfgNode, optimizer: torch.optim.Optimizer, rates: LearningRates, updates_per_epoch: int
) -> Scheduler:
    """TRAIN.LR_SCHEDULER.NAME with TRAIN.WARMUP_EPOCHS of linear warm-up, in optimizer updates.

    Call ``step_update(n)`` before update ``n`` (counted from 0 over the whole run).
    """
    total = config.TRAIN.EPOCHS * updates_per_epoch
    warmup = config.TRAIN.WARMUP_EPOCHS * updates_per_epoch
    common = dict(warmup_t=warmup, warmup_lr_init=rates.warmup, t_in_epochs=False)
    name = config.TRAIN.LR_SCHEDULER.NAME
    if name == "step":
        return StepLRScheduler(
            optimizer,
            decay_t=config.TRAIN.LR_SCHEDULER.DECAY_EPOCHS * updates_per_epoch,
            decay_rate=config.TRAIN.LR_SCHEDULER.DECAY_RATE,
            **common,
        )
    if name == "linear":
        # The release's 'linear' decays from the base rate to 1% of it over the updates
        # after the warm-up.
        return PolyLRScheduler(
            optimizer,
            t_initial=max(1, total - warmup),
            power=1.0,
            lr_min=0.01 * rates.base,
            warmup_prefix=True,
            **common,
        )
    return CosineLRScheduler(optimizer, t_initial=total, lr_min=rates.min, cycle_limit=1, **common)
