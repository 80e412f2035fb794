"""GrootV models: the backbone (``grootv.py``) and its tree-scan mixer (``tree_ssm.py``).

Importing this registers ``grootv_tiny``, ``grootv_small`` and ``grootv_base`` with timm.
"""

from .grootv import GrootV, GrootVLayer, GrootVLevel, checkpoint_filter_fn, grootv_base, grootv_small, grootv_tiny
from .tree_ssm import METRICS, ROOTS, SCANS, Tree_SSM

__all__ = [
    "METRICS",
    "ROOTS",
    "SCANS",
    "GrootV",
    "GrootVLayer",
    "GrootVLevel",
    "Tree_SSM",
    "checkpoint_filter_fn",
    "grootv_base",
    "grootv_small",
    "grootv_tiny",
]
