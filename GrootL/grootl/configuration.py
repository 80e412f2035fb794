"""GrootL configuration: a Mamba configuration plus the tree-scan options (SPEC §4).

GrootL adds no parameters to Mamba, so a GrootL checkpoint *is* a Mamba checkpoint: the
configuration keeps ``model_type = "mamba"`` and only adds four fields, which stock
``MambaConfig`` ignores and which default to the paper's settings when a plain Mamba
``config.json`` is loaded.
"""

from __future__ import annotations

import json
import math
import os

from huggingface_hub.dataclasses import strict
from transformers import MambaConfig

from .atomic import atomic_write

__all__ = [
    "CONTEX_LEN_MODES",
    "GrootLMambaConfig",
    "TREE_SETTINGS",
    "TREE_SETTINGS_FILE",
    "read_tree_settings",
    "write_tree_settings",
]

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
    fused_scan (`bool`, *optional*, defaults to `True`):
        Run the chain and tree scans as one fused operator (`tree_scan_lan.selective_tree_scan`),
        which never forms the `(batch, length, d_inner, d_state)` tensors. `False`: the unfused
        path, which forms them (the reference twin; same results up to rounding).
    """

    tree_scale: float = 0.3
    use_tree: bool = True
    contex_len_mode: str = "per_row"
    fused_scan: bool = True

    def __post_init__(self, **kwargs):
        if not math.isfinite(self.tree_scale):
            raise ValueError(f"`tree_scale` must be a finite float; got {self.tree_scale}")
        if self.contex_len_mode not in CONTEX_LEN_MODES:
            raise ValueError(f"`contex_len_mode` must be one of {CONTEX_LEN_MODES}; got {self.contex_len_mode!r}")
        super().__post_init__(**kwargs)


# The fields GrootL adds to Mamba's configuration. A LoRA adapter folder holds only peft's
# files, so training also writes them into TREE_SETTINGS_FILE beside the adapter; merging
# and evaluating an adapter read them back, so the model keeps the settings it was trained with.
TREE_SETTINGS = ("use_tree", "tree_scale", "contex_len_mode")
TREE_SETTINGS_FILE = "grootl_tree.json"


def write_tree_settings(config: MambaConfig, folder: str | os.PathLike) -> None:
    """Records ``config``'s tree settings in ``folder/grootl_tree.json``."""
    settings = {key: getattr(config, key) for key in TREE_SETTINGS}
    with atomic_write(os.path.join(folder, TREE_SETTINGS_FILE)) as f:
        json.dump(settings, f, indent=2)


def read_tree_settings(folder: str | os.PathLike) -> dict:
    """The tree settings recorded in ``folder`` (``{}`` when it has none, e.g. an adapter
    trained elsewhere: the model then keeps its own)."""
    path = os.path.join(folder, TREE_SETTINGS_FILE)
    if not os.path.isfile(path):
        return {}
    try:
        settings = json.loads(open(path, encoding="utf-8").read())
    except ValueError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); delete it to use the model's own settings") from None
    unknown = set(settings) - set(TREE_SETTINGS) if isinstance(settings, dict) else None
    if unknown is None or unknown:
        raise ValueError(f"{path} must map some of {TREE_SETTINGS} to values; got {settings!r:.200}")
    return settings
