# ADE20K 160k: 160,000 iterations of a total batch of 16, AdamW lr 6e-5, 1600 warm-up
# iterations, then poly decay (paper). Warm-up from 1e-6 x lr, poly power 1.0 down to
# 0, validation every 16,000 iterations (InternImage's).
_base_ = './adamw_grootv.py'

optim_wrapper = dict(optimizer=dict(lr=6e-5))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1600),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=1600, end=160000),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=160000, val_interval=16000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
