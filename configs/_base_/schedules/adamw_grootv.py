# The optimiser of both tasks: AdamW (paper) with betas (0.9, 0.999) and weight decay
# 0.05 (paper for detection, InternImage for segmentation), no gradient clipping and no
# layer-wise learning-rate decay (InternImage: its layer_decay_rate is 1.0). The
# learning rate is set by the schedules.
#
# No weight decay on norms, biases and 1-D parameters (InternImage's rule; for GrootV
# that also covers the layer scales and the SSM's skip weights `Ds`), nor on the SSM's
# `A_logs` and `dt_projs_bias`, which GrootV's classification training exempts too.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', betas=(0.9, 0.999), weight_decay=0.05),
    clip_grad=None,
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        flat_decay_mult=0.0,
        custom_keys={
            '.A_logs': dict(decay_mult=0.0),
            '.dt_projs_bias': dict(decay_mult=0.0),
        }))
