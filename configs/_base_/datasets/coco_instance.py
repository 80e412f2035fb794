# COCO 2017 instances (boxes and masks), mmdet's standard single-scale pipeline
# (resize to fit 1333x800, horizontal flip), which InternImage's 1x configs use.
#
# Expected layout under the data root (default data/coco, relative to the working
# directory; set GROOTVL_COCO_ROOT to put it elsewhere):
#   annotations/instances_train2017.json  annotations/instances_val2017.json
#   train2017/*.jpg                        val2017/*.jpg
_base_ = 'mmdet::_base_/datasets/coco_instance.py'

data_root = '{{$GROOTVL_COCO_ROOT:data/coco}}/'

# 2 images per GPU: with InternImage's 8 GPUs, the paper's total batch of 16.
train_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator
