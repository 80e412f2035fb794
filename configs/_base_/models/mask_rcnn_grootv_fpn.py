# Mask R-CNN + FPN (mmdet's standard heads, as InternImage uses them) on a GrootV backbone.
# The model configs set the size (channels, depths, drop-path, the FPN's in_channels) and
# the pretrained weights.
_base_ = 'mmdet::_base_/models/mask-rcnn_r50_fpn.py'

# Registers type='GrootV' in mmdet's MODELS, whatever the working directory.
custom_imports = dict(imports=['grootv.mm'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='GrootV',
        # The release's architecture (pre-norm blocks, no layer scale) so that its
        # ImageNet weights load unchanged.
        mlp_ratio=4.0,
        layer_scale=None,
        post_norm=False,
        with_cp=False,
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1),
    neck=dict(type='FPN', out_channels=256, num_outs=5))
