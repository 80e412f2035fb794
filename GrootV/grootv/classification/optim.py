"""The optimizer: AdamW (or Nesterov SGD) with weight decay only where it belongs."""

from __future__ import annotations

import torch
from torch import nn
from yacs.config import CfgNode

# Leaf names of the SSM's parameters that must not be decayed (A = -exp(A_logs) sets the
# state's memory, D the skip path); GrootV also marks them with `_no_weight_decay`.
_NO_DECAY_LEAVES = {"A_logs", "Ds"}


def wants_weight_decay(name: str, param: nn.Parameter, skip: set[str], skip_keywords: set[str]) -> bool:
    """Weights of linear and conv layers are decayed; norms, biases, layer scales, the SSM's
    A_logs/Ds and anything the model lists or marks `_no_weight_decay` are not."""
    return not (
        param.ndim <= 1
        # "bias" also catches the SSM's 2-D dt_projs_bias.
        or name.endswith("bias")
        or name.rsplit(".", 1)[-1] in _NO_DECAY_LEAVES
        or getattr(param, "_no_weight_decay", False)
        or name in skip
        or any(keyword in name for keyword in skip_keywords)
    )


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups, decayed and not; frozen parameters are left out."""
    skip = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    skip_keywords = set(model.no_weight_decay_keywords()) if hasattr(model, "no_weight_decay_keywords") else set()
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (decay if wants_weight_decay(name, param, skip, skip_keywords) else no_decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(config: CfgNode, model: nn.Module, lr: float) -> torch.optim.Optimizer:
    """TRAIN.OPTIMIZER.NAME over :func:`param_groups`, starting at the (scaled) ``lr``."""
    groups = param_groups(model, config.TRAIN.WEIGHT_DECAY)
    opt = config.TRAIN.OPTIMIZER
    if opt.NAME == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=opt.MOMENTUM, nesterov=True)
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(opt.BETAS), eps=opt.EPS)
