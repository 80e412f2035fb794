"""GrootV as a dense-prediction backbone: multi-scale feature maps for mmdet and mmseg.

The stem and the four levels are those of :class:`grootv.models.GrootV`, under the same
names (``patch_embed``, ``levels.i...``), so classification weights load key for key.
The classifier (``conv_head``, ``head``) is not built, nor are the levels after the
last requested output. Each output is a level's features after its own LayerNorm and
before its downsampling, as InternImage's backbone returns them: that norm is the "norm
per output", and it comes pretrained with the classification weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from mmengine.model import BaseModule

from ..models import GrootV
from .pretrained import load_pretrained

__all__ = ["GrootVBackbone"]

# Keys of init_cfg=dict(type='Pretrained', ...) besides `type`, passed to load_pretrained.
_PRETRAINED_KEYS = {"checkpoint", "use_ema", "strict", "trusted", "map_location"}


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class GrootVBackbone(BaseModule):
    """GrootV feature maps at strides 4, 8, 16, 32, channels-first ``(B, C, H, W)``.

    Args (model): those of :class:`grootv.models.GrootV` — ``channels``, ``depths``,
        ``mlp_ratio``, ``drop_rate``, ``drop_path_rate``, ``drop_path_type``, ``act_layer``,
        ``norm_layer``, ``layer_scale``, ``post_norm``, ``with_cp`` (gradient checkpointing
        of every block) and the variant switches ``metric``, ``root``, ``scan`` and
        ``share_tree`` (one tree per stage: GrootV-T*). Defaults are GrootV-T's.
    Args (dense prediction):
        out_indices: the levels whose features are returned, in increasing order
            (level i has ``channels * 2**i`` channels at stride ``4 * 2**i``).
        frozen_stages: -1 trains everything; k >= 0 freezes the stem and the first k
            levels (weights fixed, dropout and drop-path off), mmdet's convention.
        init_cfg: None keeps the release's initialisation; ``dict(type='Pretrained',
            checkpoint=PATH_OR_URL)`` loads classification weights when the runner
            initialises the model, with optional ``use_ema`` (None: ``model`` if present,
            else ``model_ema``), ``strict`` (fail on missing keys too), ``trusted``
            (unpickle non-tensor objects) and ``map_location`` — see
            :func:`grootv.mm.load_pretrained`. Other mmengine initialisers are passed on.
    """

    def __init__(
        self,
        channels: int = 80,
        depths: Sequence[int] = (2, 2, 9, 2),
        mlp_ratio: float = 4.0,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.2,
        drop_path_type: str = "linear",
        act_layer: str = "GELU",
        norm_layer: str = "LN",
        layer_scale: float | None = None,
        post_norm: bool = False,
        with_cp: bool = False,
        metric: str = "cosine",
        root: str = "all",
        scan: str = "tree",
        share_tree: bool = False,
        out_indices: Sequence[int] = (0, 1, 2, 3),
        frozen_stages: int = -1,
        init_cfg: dict | list | None = None,
    ):
        pretrained = _pretrained_cfg(init_cfg)
        super().__init__(init_cfg=None if pretrained is not None else init_cfg)
        self._pretrained = pretrained
        trunk = GrootV(
            channels=channels, depths=depths, num_classes=0, mlp_ratio=mlp_ratio, drop_rate=drop_rate,
            drop_path_rate=drop_path_rate, drop_path_type=drop_path_type, act_layer=act_layer,
            norm_layer=norm_layer, layer_scale=layer_scale, post_norm=post_norm, with_cp=with_cp,
            metric=metric, root=root, scan=scan, share_tree=share_tree,
        )
        num_levels = trunk.num_levels
        if (isinstance(out_indices, (str, bytes)) or not isinstance(out_indices, Sequence) or not out_indices
                or not all(_is_int(i) and 0 <= i < num_levels for i in out_indices)
                or list(out_indices) != sorted(set(out_indices))):
            raise ValueError(f"`out_indices` must be increasing level indices in [0, {num_levels}), "
                             f"got {out_indices!r}")
        if not _is_int(frozen_stages) or not -1 <= frozen_stages <= num_levels:
            raise ValueError(f"`frozen_stages` must be an int in [-1, {num_levels}], got {frozen_stages!r}")
        self.out_indices = tuple(out_indices)
        self.frozen_stages = frozen_stages
        self.out_channels = [trunk.feature_info[i]["num_chs"] for i in self.out_indices]
        self.strides = [trunk.feature_info[i]["reduction"] for i in self.out_indices]

        # Levels after the last output would only cost time; the last kept level needs
        # no downsampling either.
        trunk.prune_intermediate_layers(list(self.out_indices), prune_head=True)
        self.patch_embed = trunk.patch_embed
        self.pos_drop = trunk.pos_drop
        self.levels = trunk.levels
        self._freeze_stages()

    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        frozen = [self.patch_embed, self.pos_drop, *self.levels[:self.frozen_stages]]
        for module in frozen:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> GrootVBackbone:
        super().train(mode)
        self._freeze_stages()  # model.train() would otherwise switch drop-path back on there
        return self

    def init_weights(self) -> None:
        if self._pretrained is None:
            super().init_weights()
            return
        load_pretrained(self, **self._pretrained)
        self._is_init = True

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Images ``(B, 3, H, W)`` -> one ``(B, C_i, H / s_i, W / s_i)`` map per ``out_indices``
        entry (sizes rounded up: the stride-2 convs pad)."""
        if x.dim() != 4:
            raise ValueError(f"GrootVBackbone expects images (B, C, H, W); got shape {tuple(x.shape)}")
        x = self.pos_drop(self.patch_embed(x))
        outs = []
        for i, level in enumerate(self.levels):
            x, features = level(x)
            if i in self.out_indices:
                outs.append(features.permute(0, 3, 1, 2).contiguous())
        return tuple(outs)


def _pretrained_cfg(init_cfg) -> dict | None:
    """The load_pretrained arguments of a ``type='Pretrained'`` init_cfg, or None."""
    if not isinstance(init_cfg, dict) or init_cfg.get("type") != "Pretrained":
        return None
    unknown = set(init_cfg) - _PRETRAINED_KEYS - {"type"}
    if unknown:
        raise ValueError(f"`init_cfg` of type 'Pretrained' takes {sorted(_PRETRAINED_KEYS)}; "
                         f"unknown: {sorted(unknown)}")
    if not init_cfg.get("checkpoint"):
        raise ValueError(f"`init_cfg` of type 'Pretrained' needs `checkpoint` (a path or URL), got {init_cfg!r}")
    return {k: v for k, v in init_cfg.items() if k != "type"}

