# COCO 3x: 36 epochs (paper), learning rate x0.1 after epochs 27 and 33 (InternImage's
# schedule_3x); otherwise as 1x.
_base_ = './coco_adamw_1x.py'

param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', by_epoch=True, begin=0, end=36, milestones=[27, 33], gamma=0.1),
]
train_cfg = dict(max_epochs=36)
