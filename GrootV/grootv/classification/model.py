"""The model named by MODEL.TYPE (GrootV from the MODEL.GROOTV keys, or any timm model), and
the model a checkpoint describes."""

from __future__ import annotations

import re
from collections.abc import Mapping

import timm
from torch import nn
from yacs.config import CfgNode

from ..checkpoint import select_state_dict
from .checkpoint import trained_config
from .config import defaults
from .errors import CheckpointError, ConfigError

_BLOCK_KEY = re.compile(r"^levels\.(\d+)\.blocks\.(\d+)\.")


def build_model(config: CfgNode, num_classes: int) -> nn.Module:
    """``MODEL.TYPE == 'grootv'`` builds :class:`grootv.models.GrootV`; other names go to timm.

    timm names include ``grootv_tiny``/``grootv_small``/``grootv_base`` (registered by
    ``import grootv``) and every timm architecture, which is how the pipeline can train
    something other than GrootV.
    """
    name = config.MODEL.TYPE
    if name.lower() == "grootv":
        from grootv.models import GrootV

        g = config.MODEL.GROOTV
        try:
            return GrootV(
                channels=g.CHANNELS,
                depths=list(g.DEPTHS),
                num_classes=num_classes,
                mlp_ratio=g.MLP_RATIO,
                drop_rate=config.MODEL.DROP_RATE,
                drop_path_rate=config.MODEL.DROP_PATH_RATE,
                drop_path_type=config.MODEL.DROP_PATH_TYPE,
                act_layer=g.ACT_LAYER,
                norm_layer=g.NORM_LAYER,
                layer_scale=g.LAYER_SCALE,
                post_norm=g.POST_NORM,
                with_cp=config.TRAIN.USE_CHECKPOINT,
                cls_scale=g.CLS_SCALE,
                metric=g.METRIC,
                root=g.ROOT,
                scan=g.SCAN,
                share_tree=g.SHARE_TREE,
            )
        except ValueError as error:
            raise ConfigError(f"MODEL.GROOTV does not describe a valid GrootV: {error}") from None

    import grootv  # noqa: F401  (registers the grootv_* names with timm)

    if not timm.is_model(name):
        raise ConfigError(f"MODEL.TYPE {name!r} is neither 'grootv' nor a timm model name (see timm.list_models())")
    kwargs = {"num_classes": num_classes}
    if config.MODEL.DROP_RATE > 0:
        kwargs["drop_rate"] = config.MODEL.DROP_RATE
    if config.MODEL.DROP_PATH_RATE > 0:
        kwargs["drop_path_rate"] = config.MODEL.DROP_PATH_RATE
    try:
        # Transformers need the image size at construction; convnets reject the argument.
        model = timm.create_model(name, img_size=config.DATA.IMG_SIZE, **kwargs)
    except TypeError as error:
        if "img_size" not in str(error):
            raise ConfigError(f"timm model {name!r} does not take {sorted(kwargs)}: {error}") from None
        try:
            model = timm.create_model(name, **kwargs)
        except TypeError as error:
            raise ConfigError(
                f"timm model {name!r} does not take {sorted(kwargs)} (MODEL.DROP_RATE / MODEL.DROP_PATH_RATE): {error}"
            ) from None
    if config.TRAIN.USE_CHECKPOINT:
        model.set_grad_checkpointing(True)
    return model


def model_for_checkpoint(checkpoint: Mapping, path: str, use_ema: bool | None = None) -> tuple[nn.Module, CfgNode]:
    """The model a checkpoint describes (weights not loaded) and the config it was trained with.

    Checkpoints of this pipeline (yaml text) and of the release (a yacs config) record their
    config: MODEL.TYPE and MODEL.GROOTV.* build the model, so custom widths, depths and the
    paper's variants come back as trained. A bare state_dict records none: a GrootV is
    built from the shapes of its weights (stem width, blocks per level, MLP ratio, head
    width, layer scales), with the default variant switches, and the config is the default
    one. The number of classes is always the head's, the one number a fine-tuned config
    may not hold.
    """
    try:
        state_dict = select_state_dict(checkpoint, use_ema)[1]
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: {error}") from None
    config = trained_config(checkpoint, path)
    if config is None:
        config = _config_from_weights(state_dict, path)
    head = state_dict.get("head.weight")
    num_classes = head.shape[0] if head is not None else config.MODEL.NUM_CLASSES
    return build_model(config, num_classes), config


def _config_from_weights(state_dict: Mapping, path: str) -> CfgNode:
    blocks = {}
    for key in state_dict:
        match = _BLOCK_KEY.match(key)
        if match:
            level, block = int(match.group(1)), int(match.group(2))
            blocks[level] = max(blocks.get(level, 0), block + 1)
    stem = state_dict.get("patch_embed.conv2.weight")
    if stem is None or sorted(blocks) != list(range(len(blocks))) or not blocks:
        raise CheckpointError(f"{path} holds no config and its weights are not a GrootV's (no patch_embed.conv2 "
                              "or levels.<i>.blocks.<j> entries): cannot tell which model to build")
    channels = stem.shape[0]
    config = defaults()
    g = config.MODEL.GROOTV
    g.CHANNELS, g.DEPTHS = channels, [blocks[level] for level in range(len(blocks))]
    fc1 = state_dict.get("levels.0.blocks.0.mlp.fc1.weight")
    if fc1 is not None:
        g.MLP_RATIO = fc1.shape[0] / channels
    conv_head = state_dict.get("conv_head.0.weight")
    if conv_head is not None:
        # GrootV takes int(last width x CLS_SCALE) channels; + 0.5 keeps float rounding off that.
        g.CLS_SCALE = (conv_head.shape[0] + 0.5) / (channels * 2 ** (len(blocks) - 1))
    if "levels.0.blocks.0.gamma1" in state_dict:
        g.LAYER_SCALE = 1.0  # any value: the weights replace it
    config.freeze()
    return config
