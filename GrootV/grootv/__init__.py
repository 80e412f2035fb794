"""GrootV: the tree-topology vision backbone of GrootVL (NeurIPS 2024).

``import grootv`` registers ``grootv_tiny``, ``grootv_small`` and ``grootv_base`` with
timm (``timm.create_model("grootv_tiny")``). Public API:

    grootv.models.GrootV(channels, depths, num_classes, ...)   the backbone
    grootv.models.Tree_SSM(d_model, ...)                       its mixer
    grootv.load_checkpoint(model, path_or_dict, use_ema=None)  strict loading, loud errors
    grootv.count_flops(model, img_size=224) -> int             fvcore-style FLOPs
"""

from . import models
from .checkpoint import CheckpointMismatchError, extract_state_dict, load_checkpoint
from .flops import count_flops
from .models import GrootV, Tree_SSM

__all__ = [
    "CheckpointMismatchError",
    "GrootV",
    "Tree_SSM",
    "count_flops",
    "extract_state_dict",
    "load_checkpoint",
    "models",
]
