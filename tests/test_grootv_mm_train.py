"""Training and evaluating through the entry points, on tiny COCO and ADE20K datasets made here.

The real configs (pipelines, optimiser, schedules, evaluators) with a tiny GrootV,
small heads and small images: 2 training iterations, a checkpoint, then the COCO
box/mask evaluation or the mIoU evaluation of that checkpoint by ``grootv.mm.test``.
"""

import math
import os
import re

import pytest
import torch

pytest.importorskip("mmengine")
pytest.importorskip("grootv.mm")

from grootv_mm_helpers import (  # noqa: E402
    DETECTION_CONFIGS,
    SEGMENTATION_CONFIGS,
    make_ade,
    make_coco,
    shrink_detector,
    shrink_segmentor,
)
from mmengine.config import Config  # noqa: E402

from grootv.mm import test as test_entry  # noqa: E402
from grootv.mm import train as train_entry  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_thread")


def _losses(runner) -> dict:
    return {k: v for k, v in runner.message_hub.log_scalars.items() if "loss" in k}


def test_detection_trains_and_evaluates_with_the_coco_metric(tmp_path, monkeypatch):
    monkeypatch.setenv("GROOTVL_COCO_ROOT", make_coco(str(tmp_path / "coco")))
    cfg = Config.fromfile(DETECTION_CONFIGS[2])  # GrootV-T, 1x
    assert "_t_fpn_1x_" in DETECTION_CONFIGS[2]
    work_dir = str(tmp_path / "work")
    shrink_detector(cfg, work_dir)
    config = str(tmp_path / "tiny_mask_rcnn.py")
    cfg.dump(config)

    runner = train_entry.main([config])
    assert runner.iter == 2 and runner.epoch == 1
    losses = _losses(runner)
    assert {"train/loss_rpn_cls", "train/loss_cls", "train/loss_bbox", "train/loss_mask"} <= set(losses)
    assert all(math.isfinite(buffer.current()) for buffer in losses.values())
    checkpoint = os.path.join(work_dir, "epoch_1.pth")
    assert os.path.isfile(checkpoint)

    switch = os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
    metrics = test_entry.main([config, checkpoint, "--work-dir", str(tmp_path / "test")])
    assert os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD") == switch  # only set while mmengine loads
    for kind in ("bbox", "segm"):
        assert 0.0 <= metrics[f"coco/{kind}_mAP"] <= 1.0


def test_the_tiny_coco_dataset_is_what_the_metric_scores(tmp_path):
    """Its own ground truth as predictions scores mAP 1 (boxes, polygon and RLE masks):
    the 0 of an untrained model above is a real score, not a broken dataset."""
    import numpy as np
    from mmdet.evaluation import CocoMetric
    from mmdet.datasets import CocoDataset
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    root = make_coco(str(tmp_path / "coco"))
    annotations = os.path.join(root, "annotations", "instances_val2017.json")
    coco = COCO(annotations)
    metric = CocoMetric(ann_file=annotations, metric=["bbox", "segm"])
    metric.dataset_meta = CocoDataset.METAINFO
    label_of = {c: i for i, c in enumerate(sorted(coco.getCatIds()))}
    for image_id in coco.getImgIds():
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
        boxes = torch.tensor([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                              for a in anns], dtype=torch.float32)
        masks = torch.from_numpy(np.stack([coco.annToMask(a) for a in anns])).bool()
        assert all(mask_utils.area(mask_utils.encode(np.asfortranarray(m.numpy().astype(np.uint8)))) > 0
                   for m in masks)
        prediction = dict(img_id=image_id, ori_shape=masks.shape[1:],
                          pred_instances=dict(bboxes=boxes, scores=torch.ones(len(anns)), masks=masks,
                                              labels=torch.tensor([label_of[a["category_id"]] for a in anns])))
        metric.process({}, [prediction])
    scores = metric.evaluate(len(coco.getImgIds()))
    assert scores["coco/bbox_mAP"] == pytest.approx(1.0) and scores["coco/segm_mAP"] == pytest.approx(1.0)


def test_segmentation_trains_and_evaluates_with_miou(tmp_path, monkeypatch):
    monkeypatch.setenv("GROOTVL_ADE_ROOT", make_ade(str(tmp_path / "ade")))
    cfg = Config.fromfile(SEGMENTATION_CONFIGS[1])  # GrootV-T
    assert "_t_512_" in SEGMENTATION_CONFIGS[1]
    work_dir = str(tmp_path / "work")
    shrink_segmentor(cfg, work_dir)
    config = str(tmp_path / "tiny_upernet.py")
    cfg.dump(config)

    runner = train_entry.main([config])
    assert runner.iter == 2
    losses = _losses(runner)
    assert {"train/decode.loss_ce", "train/aux.loss_ce"} <= set(losses)
    assert all(math.isfinite(buffer.current()) for buffer in losses.values())
    checkpoint = os.path.join(work_dir, "iter_2.pth")
    assert os.path.isfile(checkpoint)

    for extra in ([], ["--tta"]):
        metrics = test_entry.main([config, checkpoint, "--work-dir", str(tmp_path / "test"), *extra])
        assert {"aAcc", "mIoU", "mAcc"} <= set(metrics) and 0.0 <= metrics["mIoU"] <= 100.0


def test_resume_continues_from_the_work_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("GROOTVL_ADE_ROOT", make_ade(str(tmp_path / "ade")))
    cfg = Config.fromfile(SEGMENTATION_CONFIGS[1])
    shrink_segmentor(cfg, str(tmp_path / "work"))
    cfg.train_cfg.update(max_iters=1, val_interval=100)
    cfg.default_hooks.checkpoint.interval = 1
    config = str(tmp_path / "tiny_upernet.py")
    cfg.dump(config)
    assert train_entry.main([config]).iter == 1
    resumed = train_entry.main([config, "--resume", "--cfg-options", "train_cfg.max_iters=2"])
    assert resumed.iter == 2 and os.path.isfile(str(tmp_path / "work" / "iter_2.pth"))
    # The resumed run trained iteration 2 only.
    with open(os.path.join(resumed.log_dir, f"{resumed.timestamp}.log")) as f:
        log = f.read()
    assert "resumed epoch: 0, iter: 1" in log
    assert re.findall(r"Iter\(train\) \[(\d+)/2\]", log) == ["2"]


def test_bad_command_lines_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="config"):
        train_entry.main([str(tmp_path / "missing.py")])
    with pytest.raises(ValueError, match="--tta"):
        test_entry.main([DETECTION_CONFIGS[0], "x.pth", "--tta"])
