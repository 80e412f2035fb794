# UperNet with GrootV-S on ADE20K, 512x512 crops, 160k iterations.
#
# From the paper (SPEC §5): 160k iterations, AdamW, lr 6e-5, poly schedule, 1600
# warm-up iterations. Its results: mIoU single-scale / multi-scale 50.7 / 51.7,
# 82M parameters, 1019 GFLOPs at 512x2048.
# From InternImage (the paper is silent): the UperNet and auxiliary FCN heads, drop-path
# 0.3, weight decay 0.05, a total batch of 16 (2 images x 8 GPUs), poly power 1.0,
# warm-up from 1e-6 x lr, no gradient clipping, no layer-wise lr decay, the weight-decay
# exemptions, the test resizing (2048x512, then a multiple of 32), the multi-scale test
# ratios and the checkpointing.
_base_ = [
    '../_base_/models/upernet_grootv.py',
    '../_base_/datasets/ade20k_512.py',
    '../_base_/schedules/ade20k_adamw_160k.py',
    '../_base_/default_runtime_mmseg.py',
]

# GrootV-S's ImageNet-1k weights (the release's file, or a checkpoint written by
# python -m grootv.classification.main); relative to the working directory. The release's
# files are linked from the "Model Zoo" of https://github.com/EasonXiao-888/GrootVL's
# README; they load as they are (read as weights only, their yacs config included).
pretrained = 'pretrained/grootv_s_1k_224.pth'
model = dict(
    backbone=dict(
        channels=96,
        depths=[2, 2, 13, 2],
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    # The auxiliary head reads the third level's features.
    auxiliary_head=dict(in_channels=384))
