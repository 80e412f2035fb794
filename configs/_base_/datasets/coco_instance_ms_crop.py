# COCO 2017 instances with the multi-scale training of the 3x schedule.
#
# Paper: multi-scale training, shorter side 480-800. InternImage (whose 3x configs
# GrootV follows) does it the DETR way: after a horizontal flip, either resize to a
# shorter side drawn from 480, 512, ..., 800 (longer side at most 1333), or resize to
# 400/500/600, take a random crop of 384-600 pixels and then resize to 480-800 as well.
_base_ = './coco_instance.py'

train_scales = [(1333, short) for short in range(480, 801, 32)]
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomChoice',
        transforms=[
            [dict(type='RandomChoiceResize', scales=train_scales, keep_ratio=True)],
            [
                dict(type='RandomChoiceResize', scales=[(1333, 400), (1333, 500), (1333, 600)], keep_ratio=True),
                dict(type='RandomCrop', crop_type='absolute_range', crop_size=(384, 600),
                     allow_negative_crop=True),
                dict(type='RandomChoiceResize', scales=train_scales, keep_ratio=True),
            ],
        ]),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
