"""GrootL configuration: a Mamba configuration plus the tree-scan options (SPEC §4).

GrootL adds no parameters to Mamba, so a GrootL checkpoint *is* a Mamba checkpoint: the
configuration keeps ``model_type = "mamba"`` and only adds three fields, which stock
``MambaConfig`` ignores and which default to the paper's settings when a plain Mamba
``config.json`` is loaded.
"""

from __future__ import annotations

import math

from huggingface_hub.dataclasses import strict
from transformers import MambaConfig

__all__ = ["GrootLMambaConfig", "CONTEX_LEN_MODES"]

# "per_row": every row of a batch gets the tree of its own prompt length.
# "batch_min": every row uses the smallest prompt length of the batch, as the release does.
CONTEX_LEN_MODES = ("per_row", "batch_min")


@strict
class GrootLMambaConfig(MambaConfig):
    r"""
    tree_scale (`float`, *optional*, defaults to 0.3):
        Weight of the tree scan added to the chain scan, ``h = scan_chain + tree_scale * scan_tree``
        (the paper's scaling factor).
    use_tree (`bool`, *optional*, defaults to `True`):
        Run the tree branch. With `False` the mixer is exactly transformers' Mamba.
    contex_len_mode (`str`, *optional*, defaults to `"per_row"`):
        `"per_row"`: each row's tree uses that row's prompt length. `"batch_min"`: every row uses
        the smallest prompt length of the batch, which reproduces the original release.
    """

    tree_scale: float = 0.3
    use_tree: bool = True
    contex_len_mode: str = "per_row"

    def __post_init__(self, **kwargs):
        if not math.isfinite(self.tree_scale):
            raise ValueError(f"`tree_scale` must be a finite float; got {self.tree_scale}")
        if self.contex_len_mode not in CONTEX_LEN_MODES:
            raise ValueError(f"`contex_len_mode` must be one of {CONTEX_LEN_MODES}; got {self.contex_len_mode!r}")
        super().__post_init__(**kwargs)
