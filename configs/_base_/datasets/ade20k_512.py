# ADE20K (150 classes), 512x512 crops: mmseg's standard training pipeline (random
# rescale of the 2048x512 scale by 0.5-2.0, crop, flip, photometric distortion), as
# InternImage trains.
#
# Expected layout under the data root (default data/ade/ADEChallengeData2016, relative
# to the working directory; set GROOTVL_ADE_ROOT to put it elsewhere):
#   images/training/*.jpg       annotations/training/*.png
#   images/validation/*.jpg     annotations/validation/*.png
_base_ = 'mmseg::_base_/datasets/ade20k.py'

data_root = '{{$GROOTVL_ADE_ROOT:data/ade/ADEChallengeData2016}}'

# InternImage's evaluation: resize to fit 2048x512, then to a multiple of 32.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 512), keep_ratio=True),
    dict(type='ResizeToMultiple', size_divisor=32),
    # Labels are loaded after resizing: the metric compares at the original size.
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
# Multi-scale + flip testing (`python -m grootv.mm.test ... --tta`, the paper's "ms"
# mIoU): InternImage's ratios of the 2048x512 scale (mmseg 1.x's own TTA pipeline
# scales the original image instead).
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='TestTimeAug',
        transforms=[
            [dict(type='Resize', scale=(int(2048 * r), int(512 * r)), keep_ratio=True)
             for r in (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)],
            [dict(type='RandomFlip', prob=0.0, direction='horizontal'),
             dict(type='RandomFlip', prob=1.0, direction='horizontal')],
            [dict(type='ResizeToMultiple', size_divisor=32)],
            [dict(type='LoadAnnotations', reduce_zero_label=True)],
            [dict(type='PackSegInputs')],
        ]),
]

# 2 images per GPU: with InternImage's 8 GPUs, a total batch of 16.
train_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
