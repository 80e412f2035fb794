"""The COCO and ADE20K configs: they build, carry the paper's hyper-parameters and sizes."""

import json
import os
import re

import numpy as np
import pytest

pytest.importorskip("mmengine")
pytest.importorskip("grootv.mm")

from grootv_mm_helpers import (  # noqa: E402
    DETECTION_CONFIGS,
    SEGMENTATION_CONFIGS,
    TINY_BACKBONE,
    TINY_WIDTHS,
    make_coco,
)
from mmengine.config import Config  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

from grootv.mm.complexity import build_model  # noqa: E402
from grootv.mm.complexity import main as complexity_main  # noqa: E402

# Paper (SPEC §5): parameters in millions; the target is within 1M.
PAPER_PARAMS = {
    "mask_rcnn_grootv_t_fpn_1x_coco": 49, "mask_rcnn_grootv_t_fpn_3x_coco": 49,
    "mask_rcnn_grootv_s_fpn_1x_coco": 70, "mask_rcnn_grootv_s_fpn_3x_coco": 70,
    "upernet_grootv_t_512_160k_ade20k": 60, "upernet_grootv_s_512_160k_ade20k": 82,
}
SIZES = {"t": dict(channels=80, depths=[2, 2, 9, 2]), "s": dict(channels=96, depths=[2, 2, 13, 2])}


def _name(path):
    return os.path.splitext(os.path.basename(path))[0]


def _size(path):
    return re.search(r"grootv_([ts])_", path).group(1)


pytestmark = pytest.mark.usefixtures("one_thread")


def test_there_are_the_six_configs():
    assert sorted(map(_name, DETECTION_CONFIGS + SEGMENTATION_CONFIGS)) == sorted(PAPER_PARAMS)


@pytest.mark.parametrize("path", DETECTION_CONFIGS + SEGMENTATION_CONFIGS, ids=_name)
def test_config_builds_with_the_papers_parameter_count(path):
    model, _ = build_model(path)  # on the CPU, no weights loaded
    params = sum(p.numel() for p in model.parameters()) / 1e6
    assert abs(params - PAPER_PARAMS[_name(path)]) < 1.0, params
    size = SIZES[_size(path)]
    assert model.backbone.levels[0].blocks[0].norm1[0].normalized_shape == (size["channels"],)
    assert [len(level.blocks) for level in model.backbone.levels] == size["depths"]


@pytest.mark.parametrize("path", DETECTION_CONFIGS, ids=_name)
def test_detection_hyper_parameters(path):
    cfg = Config.fromfile(path)
    three_x = "_3x_" in path
    assert cfg.custom_imports.imports == ["grootv.mm"] and not cfg.custom_imports.allow_failed_imports
    assert cfg.model.backbone.type == "GrootV" and cfg.model.backbone.out_indices == (0, 1, 2, 3)
    weights = f"pretrained/grootv_{_size(path)}_1k_224.pth"
    assert cfg.model.backbone.init_cfg == dict(type="Pretrained", checkpoint=weights)
    optimizer = cfg.optim_wrapper.optimizer
    assert (optimizer.type, optimizer.lr, optimizer.weight_decay) == ("AdamW", 1e-4, 0.05)
    assert cfg.train_dataloader.batch_size * 8 == 16 == cfg.auto_scale_lr.base_batch_size
    assert cfg.train_cfg.max_epochs == (36 if three_x else 12)
    steps = [s for s in cfg.param_scheduler if s.type == "MultiStepLR"]
    assert len(steps) == 1 and steps[0].milestones == ([27, 33] if three_x else [8, 11])
    assert steps[0].end == cfg.train_cfg.max_epochs
    assert cfg.val_evaluator.metric == ["bbox", "segm"]


@pytest.mark.parametrize("path", SEGMENTATION_CONFIGS, ids=_name)
def test_segmentation_hyper_parameters(path):
    cfg = Config.fromfile(path)
    assert cfg.model.backbone.type == "GrootV" and cfg.model.pretrained is None
    assert cfg.model.decode_head.num_classes == cfg.model.auxiliary_head.num_classes == 150
    optimizer = cfg.optim_wrapper.optimizer
    assert (optimizer.type, optimizer.lr, optimizer.weight_decay) == ("AdamW", 6e-5, 0.05)
    assert cfg.train_dataloader.batch_size * 8 == 16
    assert cfg.train_cfg.max_iters == 160000 and cfg.crop_size == (512, 512)
    warmup, poly = cfg.param_scheduler
    assert (warmup.type, warmup.end) == ("LinearLR", 1600)
    assert (poly.type, poly.begin, poly.end, poly.power, poly.eta_min) == ("PolyLR", 1600, 160000, 1.0, 0.0)
    assert cfg.val_evaluator.iou_metrics == ["mIoU"]


def test_data_roots_follow_the_environment(monkeypatch):
    monkeypatch.setenv("GROOTVL_COCO_ROOT", "/datasets/coco")
    monkeypatch.setenv("GROOTVL_ADE_ROOT", "/datasets/ADEChallengeData2016")
    det = Config.fromfile(DETECTION_CONFIGS[0])
    for loader in (det.train_dataloader, det.val_dataloader, det.test_dataloader):
        assert loader.dataset.data_root == "/datasets/coco/"
    assert det.val_evaluator.ann_file == det.test_evaluator.ann_file == \
        "/datasets/coco/annotations/instances_val2017.json"
    seg = Config.fromfile(SEGMENTATION_CONFIGS[0])
    for loader in (seg.train_dataloader, seg.val_dataloader, seg.test_dataloader):
        assert loader.dataset.data_root == "/datasets/ADEChallengeData2016"
    monkeypatch.delenv("GROOTVL_COCO_ROOT")
    assert Config.fromfile(DETECTION_CONFIGS[0]).train_dataloader.dataset.data_root == "data/coco/"


def test_weight_decay_spares_norms_biases_and_the_ssm_parameters():
    from mmengine.optim import build_optim_wrapper

    cfg = Config.fromfile(DETECTION_CONFIGS[0])
    cfg.model.backbone.update(TINY_BACKBONE, layer_scale=1.0)
    cfg.model.neck.in_channels = TINY_WIDTHS
    init_default_scope("mmdet")
    from mmdet.registry import MODELS

    model = MODELS.build(cfg.model)
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    decay = {id(p): group["weight_decay"] for group in wrapper.optimizer.param_groups for p in group["params"]}
    for name, param in model.named_parameters():
        # Norms, biases, layer scales and Ds are 1-D; A_logs and dt_projs_bias are not.
        exempt = param.ndim <= 1 or name.rsplit(".", 1)[-1] in ("A_logs", "dt_projs_bias")
        assert decay[id(param)] == (0.0 if exempt else 0.05), name
    assert decay[id(model.backbone.levels[0].blocks[0].TreeSSM.A_logs)] == 0.0
    assert decay[id(model.backbone.levels[0].blocks[0].TreeSSM.x_proj_weight)] == 0.05


def test_3x_training_is_multi_scale_480_to_800(tmp_path):
    from mmdet.registry import DATASETS

    cfg = Config.fromfile(DETECTION_CONFIGS[1])
    assert "_3x_" in DETECTION_CONFIGS[1]
    dataset_cfg = cfg.train_dataloader.dataset
    dataset_cfg.update(data_root=str(make_coco(str(tmp_path), train=1, val=1)) + "/")
    init_default_scope("mmdet")
    dataset = DATASETS.build(dataset_cfg)
    np.random.seed(0)  # the transforms draw from numpy
    shorts = set()
    for _ in range(12):
        sample = dataset[0]
        height, width = sample["data_samples"].img_shape
        assert max(height, width) <= 1333
        shorts.add(min(height, width))
    assert shorts <= set(range(480, 801, 32)) and len(shorts) > 1


def test_complexity_cli_on_small_models(capsys):
    """The FLOPs counter runs on both kinds of models; the heads add work to the backbone's."""
    tiny = ["model.backbone.channels=8", "model.backbone.depths=[1,1,1,1]"]
    det, = complexity_main([DETECTION_CONFIGS[0], "--shape", "64", "96", "--json",
                            "--cfg-options", *tiny, "model.neck.in_channels=[8,16,32,64]"])
    seg, = complexity_main([SEGMENTATION_CONFIGS[0], "--shape", "64", "64", "--json", "--cfg-options", *tiny,
                            "model.decode_head.in_channels=[8,16,32,64]", "model.auxiliary_head.in_channels=32"])
    for row in (det, seg):
        assert row["flops"] > row["backbone_flops"] > 0 and row["params"] > row["backbone_params"] > 0
    assert det["shape"] == (64, 96) and seg["shape"] == (64, 64)
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [row["flops"] for row in printed] == [det["flops"], seg["flops"]]
    with pytest.raises(SystemExit):
        complexity_main([DETECTION_CONFIGS[0], "--shape", "16", "16"])
