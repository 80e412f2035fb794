# COCO 1x: 12 epochs, learning rate x0.1 after epochs 8 and 11, AdamW lr 1e-4 for a
# total batch of 16 (paper). Linear warm-up over the first 500 iterations from 0.001 x lr
# (InternImage's, mmdet's default).
_base_ = './adamw_grootv.py'

optim_wrapper = dict(optimizer=dict(lr=1e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', by_epoch=True, begin=0, end=12, milestones=[8, 11], gamma=0.1),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# The lr above is for 16 images per step; `python -m grootv.mm.train --auto-scale-lr`
# scales it linearly to another total batch.
auto_scale_lr = dict(enable=False, base_batch_size=16)
