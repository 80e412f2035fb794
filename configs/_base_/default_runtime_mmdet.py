# mmdet's runtime (hooks, logging, visualiser, default_scope='mmdet') with InternImage's
# checkpointing: every epoch, the 3 newest kept, plus the best box mAP.
_base_ = 'mmdet::_base_/default_runtime.py'

default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3, save_best='auto'))
