"""GrootV: the tree-topology SSM vision backbone (GrootVL, NeurIPS 2024), timm style.

Image -> stem (two stride-2 convs) -> four levels, each a stack of
``x + DropPath(Tree_SSM(LN(x)))``, ``x + DropPath(MLP(LN(x)))`` blocks, an LN and a
stride-2 conv downsampling -> head (1x1 conv to 1.5x the width, BN, GELU, average pool,
linear). The layout is InternImage's, as in the release; features stay channels-last
``(B, H, W, C)`` between blocks.

Module and parameter names are the release's (``patch_embed``, ``levels.i.blocks.j.TreeSSM``,
``conv_head``, ``head``, the indices inside the norm ``Sequential``\\ s included), so its
checkpoints load with ``strict=True``. ``import grootv`` registers ``grootv_tiny``,
``grootv_small`` and ``grootv_base`` with timm.

The timm model contract (what timm's own model tests check) holds: the ``device``/``dtype``
factory arguments, ``global_pool`` ("" for unpooled features), ``features_only`` with every
feature class that reads modules ("getter", the default; "hook"; "fx"), torch.fx tracing
(Tree_SSM is registered as a leaf), ``forward_intermediates``/``prune_intermediate_layers``,
meta tensors and ``torch.export``. TorchScript is not supported (see
``Tree_SSM.__prepare_scriptable__``).
"""

from __future__ import annotations

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import DropPath, SelectAdaptivePool2d, trunc_normal_
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..checkpoint import extract_state_dict
from .tree_ssm import METRICS, ROOTS, SCANS, Tree_SSM, check_choice

__all__ = ["GrootV", "GrootVLayer", "GrootVLevel", "checkpoint_filter_fn"]

NORM_LAYERS = ("LN", "BN")
ACT_LAYERS = ("GELU", "ReLU", "SiLU")
DROP_PATH_TYPES = ("linear", "uniform")
# timm's global pooling types ("" = none: forward and forward_head return the feature map).
GLOBAL_POOLS = ("", "avg", "max", "avgmax", "catavgmax", "fast")


class _ToChannelsFirst(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 3, 1, 2)


class _ToChannelsLast(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1)


def norm_layer_for(channels: int, kind: str, channels_first_in: bool = False,
                   channels_first_out: bool = False, device=None, dtype=None) -> nn.Sequential:
    """LN or BN wrapped in the permutes it needs, as a ``Sequential``.

    The permutes sit at the same indices as in the release (``norm1.1.weight`` for an LN
    between two permutes), which is what keeps the checkpoint keys identical.
    """
    layers: list[nn.Module] = []
    if kind == "LN":
        if channels_first_in:
            layers.append(_ToChannelsLast())
        layers.append(nn.LayerNorm(channels, eps=1e-6, device=device, dtype=dtype))
        if channels_first_out:
            layers.append(_ToChannelsFirst())
    else:
        if not channels_first_in:
            layers.append(_ToChannelsFirst())
        layers.append(nn.BatchNorm2d(channels, device=device, dtype=dtype))
        if not channels_first_out:
            layers.append(_ToChannelsLast())
    return nn.Sequential(*layers)


def act_layer_for(kind: str) -> nn.Module:
    return {"GELU": nn.GELU, "ReLU": lambda: nn.ReLU(inplace=True), "SiLU": lambda: nn.SiLU(inplace=True)}[kind]()


class StemLayer(nn.Module):
    """Two 3x3 stride-2 convs: image (B, 3, H, W) -> channels-last (B, H/4, W/4, C)."""

    def __init__(self, in_chans: int, out_chans: int, act_layer: str, norm_layer: str, device=None, dtype=None):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.conv1 = nn.Conv2d(in_chans, out_chans // 2, 3, stride=2, padding=1, **dd)
        self.norm1 = norm_layer_for(out_chans // 2, norm_layer, True, True, **dd)
        self.act = act_layer_for(act_layer)
        self.conv2 = nn.Conv2d(out_chans // 2, out_chans, 3, stride=2, padding=1, **dd)
        self.norm2 = norm_layer_for(out_chans, norm_layer, True, False, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm2(self.conv2(self.act(self.norm1(self.conv1(x)))))


class DownsampleLayer(nn.Module):
    """3x3 stride-2 conv doubling the channels: channels-first ``(B, C, H, W)`` in, channels-last out."""

    def __init__(self, channels: int, norm_layer: str, device=None, dtype=None):
        super().__init__()
        self.conv = nn.Conv2d(channels, 2 * channels, 3, stride=2, padding=1, bias=False, device=device,
                              dtype=dtype)
        self.norm = norm_layer_for(2 * channels, norm_layer, True, False, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


class MLPLayer(nn.Module):
    def __init__(self, in_features: int, hidden_features: int, act_layer: str, drop: float, device=None,
                 dtype=None):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features, device=device, dtype=dtype)
        self.act = act_layer_for(act_layer)
        self.fc2 = nn.Linear(hidden_features, in_features, device=device, dtype=dtype)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class GrootVLayer(nn.Module):
    """One block: Tree_SSM and MLP residual branches (pre-norm, or post-norm if asked)."""

    def __init__(self, channels: int, mlp_ratio: float, drop: float, drop_path: float, act_layer: str,
                 post_norm: bool, layer_scale: float | None, with_cp: bool, metric: str, root: str, scan: str,
                 device=None, dtype=None):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.with_cp = with_cp
        self.post_norm = post_norm
        self.norm1 = norm_layer_for(channels, "LN", **dd)
        # The release's settings: d_state 1, d_inner = 2 * channels, 3x3 conv without bias.
        self.TreeSSM = Tree_SSM(channels, ssm_ratio=2.0, d_conv=3, conv_bias=False, metric=metric, root=root,
                                scan=scan, **dd)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = norm_layer_for(channels, "LN", **dd)
        self.mlp = MLPLayer(channels, int(channels * mlp_ratio), act_layer, drop, **dd)
        self.layer_scale = layer_scale is not None
        if self.layer_scale:
            self.gamma1 = nn.Parameter(torch.full((channels,), float(layer_scale), **dd))
            self.gamma2 = nn.Parameter(torch.full((channels,), float(layer_scale), **dd))

    def _branches(self, x: torch.Tensor, tree):
        gamma1 = self.gamma1 if self.layer_scale else 1.0
        gamma2 = self.gamma2 if self.layer_scale else 1.0
        if self.post_norm:
            mixed, tree = self.TreeSSM(x, tree)
            x = x + self.drop_path(gamma1 * self.norm1(mixed))
            x = x + self.drop_path(gamma2 * self.norm2(self.mlp(x)))
        else:
            mixed, tree = self.TreeSSM(self.norm1(x), tree)
            x = x + self.drop_path(gamma1 * mixed)
            x = x + self.drop_path(gamma2 * self.mlp(self.norm2(x)))
        return x, tree

    def forward(self, x: torch.Tensor, tree=None):
        """``x (B, H, W, C)``, optional shared tree -> ``(x, tree used)``."""
        # Not `x.requires_grad`: behind a frozen stem (mm's frozen_stages >= 0) the first
        # blocks get inputs without grad yet train their own weights.
        if self.with_cp and self.training and torch.is_grad_enabled():
            # Non-reentrant: it passes the TreeOrder through, works with inputs that need no
            # grad, and recomputing rebuilds the same tree (the MST is a pure function of its input).
            return checkpoint(self._branches, x, tree, use_reentrant=False)
        return self._branches(x, tree)


class GrootVLevel(nn.Module):
    """A stage: ``depth`` blocks, a LayerNorm, and the downsampling to the next stage.

    ``share_tree`` (GrootV-T*, the paper's Table 7): the first block builds its tree from
    its own scan input as usual and every later block of the stage scans along that
    same tree, so the stage builds one tree instead of ``depth``.
    """

    def __init__(self, channels: int, depth: int, downsample: bool, mlp_ratio: float, drop: float,
                 drop_path: list[float], act_layer: str, norm_layer: str, post_norm: bool,
                 layer_scale: float | None, with_cp: bool, metric: str, root: str, scan: str, share_tree: bool,
                 device=None, dtype=None):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.post_norm = post_norm
        self.share_tree = share_tree
        self.blocks = nn.ModuleList([
            GrootVLayer(channels, mlp_ratio, drop, drop_path[i], act_layer, post_norm, layer_scale, with_cp,
                        metric, root, scan, **dd)
            for i in range(depth)
        ])
        self.norm = norm_layer_for(channels, "LN", **dd)
        # The stage's features, channels-first, are the output of this (parameter-free)
        # module: feature_info names it, so timm's hook and FX feature extractors read them here.
        self.features = _ToChannelsFirst()
        self.downsample = DownsampleLayer(channels, norm_layer, **dd) if downsample else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x (B, H, W, C)`` -> ``(input of the next stage, this stage's features (B, H, W, C))``."""
        tree = None
        for block in self.blocks:
            x, built = block(x, tree)
            if self.share_tree:
                tree = built
        # The release skips this norm under post_norm unless `center_feature_scale`, an
        # attribute it never defines (post_norm=True raised AttributeError there); without
        # that option what it meant is: with post_norm, no extra norm.
        if not self.post_norm:
            x = self.norm(x)
        features = x
        # A view; in the last stage only feature extractors hooked to it read it.
        channels_first = self.features(x)
        if self.downsample is not None:
            x = self.downsample(channels_first)
        return x, features


class GrootV(nn.Module):
    """The GrootV backbone and classifier.

    Args (the release's, same defaults):
        channels: width of the first stage (doubles at every stage).
        depths: blocks per stage.
        num_classes: classifier outputs; 0 leaves the head an identity.
        mlp_ratio: MLP hidden width / channels.
        drop_rate: dropout after the stem and inside the MLPs.
        drop_path_rate, drop_path_type: stochastic depth, "linear" (0 -> rate over the
            blocks) or "uniform" (rate everywhere).
        act_layer: "GELU", "ReLU" or "SiLU" (stem, MLPs, head).
        norm_layer: "LN" or "BN" for the stem and the downsampling.
        layer_scale: initial per-channel scale of the residual branches, or None.
        post_norm: normalise the branch outputs instead of their inputs.
        with_cp: gradient checkpointing of every block (see ``set_grad_checkpointing``).
        cls_scale: head width = ``cls_scale`` x the last stage's width.
    Variant switches (defaults reproduce the release):
        metric: tree edge weight, "cosine", "euclidean" or "manhattan" (Table 5).
        root: "all", "first" or "last" (Table 6).
        scan: "tree" or "raster" (Table 4).
        share_tree: one tree per stage, shared by its blocks (GrootV-T*, Table 7).
        in_chans: image channels.
    timm's arguments:
        global_pool: pooling before the classifier, one of ``GLOBAL_POOLS`` ("avg", the
            release's; "" keeps the feature map and needs ``num_classes=0``).
        device, dtype: where and in which dtype the parameters are created (None: PyTorch's
            defaults); ``timm.create_model`` passes them on.
    """

    def __init__(
        self,
        channels: int = 64,
        depths: tuple[int, ...] | list[int] = (3, 4, 18, 5),
        num_classes: int = 1000,
        mlp_ratio: float = 4.0,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.2,
        drop_path_type: str = "linear",
        act_layer: str = "GELU",
        norm_layer: str = "LN",
        layer_scale: float | None = None,
        post_norm: bool = False,
        with_cp: bool = False,
        cls_scale: float = 1.5,
        *,
        metric: str = "cosine",
        root: str = "all",
        scan: str = "tree",
        share_tree: bool = False,
        in_chans: int = 3,
        global_pool: str = "avg",
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 2:
            raise ValueError(f"`channels` must be an int >= 2, got {channels!r}")
        depths = list(depths)
        if not depths or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in depths):
            raise ValueError(f"`depths` must be a non-empty list of positive ints, got {depths!r}")
        _check_head(num_classes, global_pool)
        if isinstance(in_chans, bool) or not isinstance(in_chans, int) or in_chans < 1:
            raise ValueError(f"`in_chans` must be a positive int, got {in_chans!r}")
        check_choice("drop_path_type", drop_path_type, DROP_PATH_TYPES)
        check_choice("act_layer", act_layer, ACT_LAYERS)
        check_choice("norm_layer", norm_layer, NORM_LAYERS)
        check_choice("metric", metric, METRICS)
        check_choice("root", root, ROOTS)
        check_choice("scan", scan, SCANS)
        if not 0 <= drop_path_rate < 1:
            raise ValueError(f"`drop_path_rate` must be in [0, 1), got {drop_path_rate}")
        if not 0 <= drop_rate < 1:
            raise ValueError(f"`drop_rate` must be in [0, 1), got {drop_rate}")
        if mlp_ratio <= 0 or cls_scale <= 0:
            raise ValueError(f"`mlp_ratio` and `cls_scale` must be positive, got {mlp_ratio} and {cls_scale}")

        self.in_chans = in_chans
        self.num_levels = len(depths)
        # Kept for introspection, as timm models keep their defining sizes (`model.depths`).
        self.depths = depths
        self.channels = channels
        widths = [channels * 2**i for i in range(self.num_levels)]
        # timm's convention: num_features is what forward_features returns and the head
        # reads, here the output of conv_head (the release's name for widths[-1] was
        # num_features; it is `widths[-1]` here, kept in feature_info). head_hidden_size,
        # the pooled width, is set with the head.
        self.num_features = int(widths[-1] * cls_scale)

        self.patch_embed = StemLayer(in_chans, channels, act_layer, norm_layer, **dd)
        self.pos_drop = nn.Dropout(p=drop_rate)
        rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
        if drop_path_type == "uniform":
            rates = [drop_path_rate] * sum(depths)
        self.levels = nn.ModuleList()
        for i, width in enumerate(widths):
            self.levels.append(GrootVLevel(
                width, depths[i], i < self.num_levels - 1, mlp_ratio, drop_rate,
                rates[sum(depths[:i]):sum(depths[:i + 1])], act_layer, norm_layer, post_norm, layer_scale,
                with_cp, metric, root, scan, share_tree, **dd,
            ))
        self.feature_info = [
            dict(num_chs=width, reduction=4 * 2**i, module=f"levels.{i}.features") for i, width in enumerate(widths)
        ]
        self.conv_head = nn.Sequential(
            nn.Conv2d(widths[-1], self.num_features, kernel_size=1, bias=False, **dd),
            norm_layer_for(self.num_features, "BN", True, True, **dd),
            act_layer_for(act_layer),
        )
        self._build_head(num_classes, global_pool, **dd)
        self.apply(self._init_weights)

    def _build_head(self, num_classes: int, global_pool: str, device=None, dtype=None) -> None:
        """The pooling and the classifier after ``conv_head`` (parameters: ``head.weight``/``head.bias``)."""
        # Without pooling nothing is flattened: forward returns the (B, C, H, W) map.
        self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=bool(global_pool))
        self.head_hidden_size = self.num_features * self.global_pool.feat_mult()
        self.head = (nn.Linear(self.head_hidden_size, num_classes, device=device, dtype=dtype) if num_classes > 0
                     else nn.Identity())
        self.num_classes = num_classes

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # As the release: only Linear and LayerNorm are re-initialised; convs, BN and the
        # SSM's own parameters keep their constructors' initialisation.
        if isinstance(module, nn.Linear):
            trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    # timm model interface ------------------------------------------------------------

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """The SSM's A_logs and Ds, as the release marks them (norms and biases are 1-D anyway)."""
        return {name for name, p in self.named_parameters() if getattr(p, "_no_weight_decay", False)}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return dict(
            stem=r"^patch_embed",
            blocks=r"^levels\.(\d+)" if coarse else [
                (r"^levels\.(\d+)\.blocks\.(\d+)", None),
                (r"^levels\.(\d+)\.(?:norm|downsample)", (99999,)),
                (r"^conv_head", (99999,)),
            ],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for level in self.levels:
            for block in level.blocks:
                block.with_cp = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new classifier of ``num_classes`` outputs (0: none); ``global_pool`` None keeps the pooling.

        A classifier needs pooled features: asked for one while the pooling is off
        (``global_pool=''`` earlier, or a pruned head) and ``global_pool`` None, the
        release's average pooling comes back. The new layers take the device, dtype and
        train/eval mode of the model: those of the classifier they replace, or else of the
        model's first parameter.
        """
        if global_pool is None:
            global_pool = self.global_pool.pool_type if self.global_pool.pool_type or not num_classes else "avg"
        _check_head(num_classes, global_pool)
        reference = next(self.head.parameters(), None)
        if reference is None:
            reference = next(self.parameters(), None)
        dd = {} if reference is None else {"device": reference.device, "dtype": reference.dtype}
        self._build_head(num_classes, global_pool, **dd)
        self.global_pool.train(self.training)
        self.head.train(self.training)

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ):
        """Each stage's output before its downsampling, strides 4/8/16/32.

        That output is what the stage's last block produced, through the stage's
        LayerNorm unless ``post_norm`` (the release skips that norm then).
        ``indices``: stages to return (int = the last n; None = all). ``norm`` is accepted
        for timm's interface and ignored: GrootV has no final norm besides the stages' own.
        ``output_fmt``: "NCHW" or "NHWC" (the intermediates' layout; ``final`` is NCHW).
        Returns the list, or ``(final, list)`` unless ``intermediates_only``: ``final`` is
        ``forward_features(x)``, or, when ``stop_early`` ends before the last stage, the
        last computed stage's output without the head (timm's convention).
        """
        check_choice("output_fmt", output_fmt, ("NCHW", "NHWC"))
        take, last = feature_take_indices(len(self.levels), indices)
        intermediates = []
        x = self.pos_drop(self.patch_embed(x))
        levels = self.levels[:last + 1] if stop_early or intermediates_only else self.levels
        for i, level in enumerate(levels):
            x, features = level(x)
            if i in take:
                intermediates.append(features.permute(0, 3, 1, 2) if output_fmt == "NCHW" else features)
        if intermediates_only:
            return intermediates
        if len(levels) < len(self.levels):
            return features.permute(0, 3, 1, 2), intermediates
        return self.conv_head(x.permute(0, 3, 1, 2)), intermediates

    def prune_intermediate_layers(self, indices: int | list[int] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        """Drop what the requested stages do not need (later stages, the head).

        Pruning before the last stage removes the head too (it is sized for the last
        stage); ``forward_features`` then ends at the last kept stage. A removed head
        leaves no pooling either (timm's convention): ``forward`` returns the feature
        map until ``reset_classifier`` adds one.
        """
        take, last = feature_take_indices(len(self.levels), indices)
        levels = self.levels[:last + 1]
        levels.training = self.training  # a new container, which would start in training mode
        self.levels = levels
        self.levels[-1].downsample = None
        if prune_head or last < self.num_levels - 1:
            self.conv_head = nn.Identity().train(self.training)
            self.num_features = self.feature_info[last]["num_chs"]
            self.reset_classifier(0, "")
        return take

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Image ``(B, in_chans, H, W)`` -> ``(B, num_features, H/32, W/32)`` (after conv_head)."""
        x = self.pos_drop(self.patch_embed(x))
        for level in self.levels:
            x, _ = level(x)
        return self.conv_head(x.permute(0, 3, 1, 2))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _check_head(num_classes, global_pool) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
        raise ValueError(f"`num_classes` must be an int >= 0, got {num_classes!r}")
    check_choice("global_pool", global_pool, GLOBAL_POOLS)
    if not global_pool and num_classes > 0:
        raise ValueError(f"`global_pool=''` (no pooling) needs `num_classes=0`: a classifier of {num_classes} "
                         "classes needs pooled features")


def checkpoint_filter_fn(state_dict: dict, model: GrootV) -> dict:
    """The release's checkpoint files (``model``/``model_ema`` inside, DDP prefixes) -> our keys.

    Names are the release's already, so this only unwraps. Note that timm's file loader
    picks the entry before this runs and prefers ``model_ema`` when present; to choose,
    use :func:`grootv.load_checkpoint` (``use_ema``). A head of another size is left to
    timm (``pretrained_cfg['classifier']`` names it and timm drops it).
    """
    return extract_state_dict(state_dict)


def _cfg(**kwargs) -> dict:
    return {
        "url": "",
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": (7, 7),
        "crop_pct": 1.0,  # the release evaluates at crop ratio 1.0: resize the short side to 224, centre-crop 224
        "interpolation": "bicubic",
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "first_conv": "patch_embed.conv1",
        "classifier": "head",
        "license": "mit",
        "paper_ids": "arXiv:2406.02395",
        "paper_name": "GrootVL: Tree Topology is All You Need in State Space Model",
        "origin_url": "https://github.com/EasonXiao-888/GrootVL",
        **kwargs,
    }


# The released ImageNet-1k weights are not hosted for timm: load them with
# ``pretrained=True, pretrained_cfg_overlay=dict(file="grootv_t_1k_224.pth")``.
default_cfgs = generate_default_cfgs({
    "grootv_tiny.in1k": _cfg(),
    "grootv_small.in1k": _cfg(),
    "grootv_base.in1k": _cfg(),
})


def _create_grootv(variant: str, pretrained: bool = False, **kwargs) -> GrootV:
    return build_model_with_cfg(
        GrootV, variant, pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(feature_cls="getter", out_indices=(0, 1, 2, 3)),
        **kwargs,
    )


# The paper's models, as the release's yaml configs set them (drop_path_rate is the
# training value; mlp_ratio 4, no layer scale, pre-norm and cls_scale 1.5 are defaults).
@register_model
def grootv_tiny(pretrained: bool = False, **kwargs) -> GrootV:
    """GrootV-T: 29,958,600 parameters, 4.8 GFLOPs at 224 (paper: 83.4% ImageNet top-1)."""
    model_args = dict(channels=80, depths=[2, 2, 9, 2], drop_path_rate=0.1)
    return _create_grootv("grootv_tiny", pretrained, **dict(model_args, **kwargs))


@register_model
def grootv_small(pretrained: bool = False, **kwargs) -> GrootV:
    """GrootV-S: 51,331,624 parameters, 8.5 GFLOPs at 224 (paper: 84.2% ImageNet top-1)."""
    model_args = dict(channels=96, depths=[2, 2, 13, 2], drop_path_rate=0.3)
    return _create_grootv("grootv_small", pretrained, **dict(model_args, **kwargs))


@register_model
def grootv_base(pretrained: bool = False, **kwargs) -> GrootV:
    """GrootV-B: 90,597,096 parameters, 15.1 GFLOPs at 224 (paper: 84.8% ImageNet top-1)."""
    model_args = dict(channels=128, depths=[2, 2, 13, 2], drop_path_rate=0.5)
    return _create_grootv("grootv_base", pretrained, **dict(model_args, **kwargs))
