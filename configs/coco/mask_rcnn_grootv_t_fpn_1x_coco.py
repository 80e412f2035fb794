# Mask R-CNN + FPN with GrootV-T on COCO, 1x schedule (12 epochs, single-scale training).
#
# From the paper (SPEC §5): AdamW, lr 1e-4, weight decay 0.05, total batch 16, 12 epochs
# with the lr divided by 10 after epochs 8 and 11. Its results: box / mask mAP 47.0 / 42.7,
# 49M parameters, 265 GFLOPs at 1280x800.
# From InternImage (the paper is silent): the Mask R-CNN heads, drop-path 0.2, 2 images x 8
# GPUs, 500 warm-up iterations, no gradient clipping, no layer-wise lr decay, the
# weight-decay exemptions, single-scale 1333x800 training and the checkpointing.
_base_ = [
    '../_base_/models/mask_rcnn_grootv_fpn.py',
    '../_base_/datasets/coco_instance.py',
    '../_base_/schedules/coco_adamw_1x.py',
    '../_base_/default_runtime_mmdet.py',
]

# GrootV-T's ImageNet-1k weights (the release's file, or a checkpoint written by
# python -m grootv.classification.main); relative to the working directory. The release's
# files are linked from the "Model Zoo" of https://github.com/EasonXiao-888/GrootVL's
# README; they load as they are (read as weights only, their yacs config included).
pretrained = 'pretrained/grootv_t_1k_224.pth'
model = dict(
    backbone=dict(
        channels=80,
        depths=[2, 2, 9, 2],
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[80, 160, 320, 640]))
