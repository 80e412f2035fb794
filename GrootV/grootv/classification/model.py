"""The model named by MODEL.TYPE: GrootV from the MODEL.GROOTV keys, or any timm model."""

from __future__ import annotations

import timm
from torch import nn
from yacs.config import CfgNode

from .errors import ConfigError


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
