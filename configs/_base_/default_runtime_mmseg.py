# mmseg's runtime (logging, visualiser, default_scope='mmseg') and hooks, with
# InternImage's checkpointing: every 1000 iterations (only the newest kept, so that a
# stopped run resumes close to where it was), plus the best mIoU.
_base_ = 'mmseg::_base_/default_runtime.py'

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=1000, max_keep_ckpts=1, save_best='mIoU'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
