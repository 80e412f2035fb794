# UperNet with an FCN auxiliary head (mmseg's standard heads, as InternImage uses them) on
# a GrootV backbone. The model configs set the size (channels, depths, drop-path, the
# heads' in_channels) and the pretrained weights.
_base_ = 'mmseg::_base_/models/upernet_r50.py'

# Registers type='GrootV' in mmseg's MODELS, whatever the working directory.
custom_imports = dict(imports=['grootv.mm'], allow_failed_imports=False)

model = dict(
    # Training crops are 512x512; the pre-processor pads smaller images to that size.
    data_preprocessor=dict(size=(512, 512)),
    # The backbone loads its own weights (init_cfg); the segmentor-level `pretrained`
    # of the ResNet base would be handed to it as an argument it does not take.
    pretrained=None,
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
    decode_head=dict(num_classes=150),
    auxiliary_head=dict(num_classes=150),
    # InternImage: whole-image inference (no sliding window).
    test_cfg=dict(mode='whole'))
