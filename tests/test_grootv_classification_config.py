"""The classification pipeline's configuration, data checks, optimizer groups and schedule."""

import math
import os

import pytest
import torch
from grootv_classification_helpers import CONFIG_DIR, tiny_dataset

from grootv.classification.config import MODEL_CHOICES, defaults, get_config
from grootv.classification.data import build_datasets, build_loaders, resolve_num_classes
from grootv.classification.errors import ConfigError, DataError
from grootv.classification.main import _overrides, build_parser
from grootv.classification.optim import param_groups
from grootv.classification.schedule import build_scheduler, scaled_learning_rates

pytestmark = pytest.mark.usefixtures("one_thread")


def test_defaults_keep_the_release_key_names_and_values():
    c = defaults()
    assert c.MODEL.NUM_CLASSES == 1000
    assert c.MODEL.LABEL_SMOOTHING == 0.1
    assert c.TRAIN.BASE_LR == 5e-4 and c.TRAIN.WARMUP_LR == 5e-7 and c.TRAIN.MIN_LR == 5e-6
    assert c.TRAIN.EPOCHS == 300 and c.TRAIN.WARMUP_EPOCHS == 20 and c.TRAIN.WEIGHT_DECAY == 0.05
    assert c.TRAIN.CLIP_GRAD == 5.0 and c.TRAIN.OPTIMIZER.BETAS == (0.9, 0.999)
    assert c.AUG.AUTO_AUGMENT == "rand-m9-mstd0.5-inc1" and c.AUG.REPROB == 0.25
    assert c.AUG.MIXUP == 0.8 and c.AUG.CUTMIX == 1.0 and c.AUG.COLOR_JITTER == 0.4
    assert c.DATA.IMG_SIZE == 224 and c.DATA.BATCH_SIZE == 128
    assert c.DATA.NUM_WORKERS == min(8, len(os.sched_getaffinity(0)))
    assert c.TRAIN.LR_SCHEDULER.NAME == "cosine" and c.TRAIN.OPTIMIZER.NAME == "adamw"
    assert c.MODEL.GROOTV.METRIC == "cosine" and c.MODEL.GROOTV.ROOT == "all" and c.MODEL.GROOTV.SCAN == "tree"


@pytest.mark.parametrize("cpus, workers", [(1, 1), (2, 2), (8, 8), (64, 8)])
def test_default_data_workers_are_capped_at_the_cpus_available(monkeypatch, cpus, workers):
    """The full configs on a 2-core machine: 2 workers, not 8 (PyTorch warns every epoch
    about more workers than CPUs). A number set by the user is kept."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)))
    release = os.path.join(CONFIG_DIR, "grootv_t_1k_224.yaml")
    assert get_config(release).DATA.NUM_WORKERS == workers
    assert get_config(release, ["DATA.NUM_WORKERS", "6"]).DATA.NUM_WORKERS == 6


@pytest.mark.parametrize(
    "name, channels, depths, drop_path",
    [("t", 80, [2, 2, 9, 2], 0.1), ("s", 96, [2, 2, 13, 2], 0.3), ("b", 128, [2, 2, 13, 2], 0.5)],
)
def test_release_configs_merge(name, channels, depths, drop_path):
    c = get_config(os.path.join(CONFIG_DIR, f"grootv_{name}_1k_224.yaml"))
    assert (c.MODEL.TYPE, c.MODEL.GROOTV.CHANNELS, c.MODEL.GROOTV.DEPTHS) == ("grootv", channels, depths)
    assert c.MODEL.DROP_PATH_RATE == drop_path
    assert c.TRAIN.EMA.ENABLE and c.TRAIN.EMA.DECAY == 0.9999
    assert c.MODEL.NAME == f"grootv_{name}_1k_224"


def test_demo_config_merges():
    c = get_config(os.path.join(CONFIG_DIR, "grootv_demo.yaml"))
    assert c.DATA.IMG_SIZE == 32 and c.AUG.AUTO_AUGMENT == "none"


def test_layers_override_in_order_file_opts_flags(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("DATA:\n  BATCH_SIZE: 16\n  IMG_SIZE: 64\nTRAIN:\n  EPOCHS: 30\n")
    child = tmp_path / "child.yaml"
    child.write_text("BASE: ['base.yaml']\nDATA:\n  BATCH_SIZE: 32\nMODEL:\n  GROOTV:\n    LAYER_SCALE: None\n")
    args = build_parser().parse_args(
        ["--cfg", str(child), "--batch-size", "8", "--opts", "DATA.BATCH_SIZE", "64", "TRAIN.EPOCHS", "40",
         "TRAIN.BASE_LR", "1", "AUG.AUTO_AUGMENT", "none", "MODEL.GROOTV.DEPTHS", "[1, 2, 3, 4]"]
    )
    c = get_config(args.cfg, args.opts, _overrides(args))
    assert c.DATA.IMG_SIZE == 64  # base file
    assert c.TRAIN.EPOCHS == 40  # --opts over the file
    assert c.DATA.BATCH_SIZE == 8  # --batch-size over --opts
    assert c.TRAIN.BASE_LR == 1.0 and isinstance(c.TRAIN.BASE_LR, float)  # an int where a float is expected
    assert c.AUG.AUTO_AUGMENT == "none" and c.MODEL.GROOTV.DEPTHS == [1, 2, 3, 4]
    assert c.MODEL.GROOTV.LAYER_SCALE is None
    assert c.MODEL.NAME == "child"


@pytest.mark.parametrize(
    "opts, message",
    [
        (["MODEL.NUM_CLASES", "10"], "unknown config key MODEL.NUM_CLASES in --opts; did you mean MODEL.NUM_CLASSES"),
        (["DATA.BATCH_SIZE", "many"], "DATA.BATCH_SIZE: expected int"),
        (["DATA.BATCH_SIZE", "0"], "DATA.BATCH_SIZE must be >= 1"),
        (["DATA.BATCH_SIZE", "7"], "DATA.BATCH_SIZE must be even while Mixup/CutMix is on"),
        # timm's Mixup asserts an even batch in 'elem' mode too.
        (["DATA.BATCH_SIZE", "7", "AUG.MIXUP_MODE", "elem"], "DATA.BATCH_SIZE must be even while Mixup/CutMix is on"),
        (["DATA.BATCH_SIZE"], "--opts expects KEY VALUE pairs"),
        (["TRAIN.EMA.DECAY", "1.5"], "TRAIN.EMA.DECAY must be in (0, 1)"),
        (["AUG.REPROB", "2"], "AUG.REPROB must be in [0, 1]"),
        (["TRAIN.EPOCHS", "10"], "TRAIN.WARMUP_EPOCHS must not exceed TRAIN.EPOCHS (10)"),
        (["TRAIN.LR_SCHEDULER.NAME", "exp"], "TRAIN.LR_SCHEDULER.NAME must be one of"),
        (["MODEL.GROOTV.DEPTHS", "[2, 0]"], "MODEL.GROOTV.DEPTHS must be a non-empty list of positive integers"),
        (["MODEL.GROOTV.METRIC", "hamming"], "MODEL.GROOTV.METRIC must be one of"),
        (["DATA.ZIP_MODE", "True"], "DATA.ZIP_MODE must be False"),
        (["TRAIN", "1"], "TRAIN is a group of keys"),
        (["DATA.BATCH_SIZE.X", "1"], "DATA.BATCH_SIZE is a value"),
    ],
)
def test_bad_opts_are_named(opts, message):
    with pytest.raises(ConfigError) as error:
        get_config(None, opts)
    assert message in str(error.value)


def test_model_choices_are_the_models_own_lists():
    from grootv.models import grootv as backbone
    from grootv.models import tree_ssm

    own = {
        "MODEL.DROP_PATH_TYPE": backbone.DROP_PATH_TYPES,
        "MODEL.GROOTV.ACT_LAYER": backbone.ACT_LAYERS,
        "MODEL.GROOTV.NORM_LAYER": backbone.NORM_LAYERS,
        "MODEL.GROOTV.METRIC": tree_ssm.METRICS,
        "MODEL.GROOTV.ROOT": tree_ssm.ROOTS,
        "MODEL.GROOTV.SCAN": tree_ssm.SCANS,
    }
    # The same objects, not copies: a choice added to a model is accepted by the config.
    assert MODEL_CHOICES.keys() == own.keys() and all(MODEL_CHOICES[key] is own[key] for key in own)


def test_pin_memory_follows_the_key_on_a_gpu_and_is_off_on_a_cpu(tmp_path):
    data = tiny_dataset(tmp_path / "data", classes=2, train=2, val=1)
    for pin, device, want in ((True, "cuda", True), (False, "cuda", False), (True, "cpu", False)):
        config = get_config(None, ["DATA.DATA_PATH", data, "DATA.IMG_SIZE", "16", "DATA.BATCH_SIZE", "2",
                                   "DATA.NUM_WORKERS", "0", "DATA.PIN_MEMORY", str(pin)])
        train, val, _ = build_datasets(config, need_train=True)
        train_loader, val_loader = build_loaders(config, train, val, 0, 1, torch.device(device))
        assert train_loader.pin_memory is want and val_loader.pin_memory is want


def test_bad_config_files_are_named(tmp_path):
    with pytest.raises(ConfigError, match="config file .*missing.yaml does not exist"):
        get_config(str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("DATA:\n  BATCH_SIZ: 3\n")
    with pytest.raises(ConfigError, match=r"unknown config key DATA.BATCH_SIZ in .*bad.yaml; did you mean DATA.BATC"):
        get_config(str(bad))
    typo = tmp_path / "typo.yaml"
    typo.write_text("DATA: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid yaml"):
        get_config(str(typo))


def test_evaluation_numbers_val_by_the_trained_classes(tmp_path):
    """val/ holding a subset of the classes keeps the training indices (not its own 0, 1, ...)."""
    data = tiny_dataset(tmp_path / "data", classes=3, train=1, val=1)
    names = sorted(os.listdir(os.path.join(data, "train")))
    for name in names[:2]:
        for image in os.listdir(os.path.join(data, "val", name)):
            os.remove(os.path.join(data, "val", name, image))
        os.rmdir(os.path.join(data, "val", name))
    config = get_config(None, ["DATA.DATA_PATH", data, "DATA.IMG_SIZE", "16"])
    _, val, classes = build_datasets(config, need_train=False)  # train/ exists: its names
    assert classes == names and [label for _, label in val.samples] == [2]
    _, val, classes = build_datasets(config, need_train=False, trained_classes=["z"] + names)  # the checkpoint's
    assert len(classes) == 4 and [label for _, label in val.samples] == [3]


def test_num_classes_follows_the_dataset(tmp_path):
    data = tiny_dataset(tmp_path / "data", classes=3, train=2, val=1)
    config = get_config(None, ["DATA.DATA_PATH", data, "DATA.IMG_SIZE", "16"])
    train, val, classes = build_datasets(config, need_train=True)
    assert len(classes) == 3 and len(train) == 6 and len(val) == 3
    assert resolve_num_classes(config, len(classes)) == 3  # left at the default 1000
    assert resolve_num_classes(get_config(None, ["MODEL.NUM_CLASSES", "5"]), 3) == 5  # set: kept
    with pytest.raises(ConfigError, match="MODEL.NUM_CLASSES is 2 but the dataset has 3 class folders"):
        resolve_num_classes(get_config(None, ["MODEL.NUM_CLASSES", "2"]), 3)


def test_dataset_problems_are_named(tmp_path):
    data = tmp_path / "data"

    def datasets(need_train=True, path=str(data)):
        return build_datasets(get_config(None, ["DATA.DATA_PATH", path]), need_train)

    with pytest.raises(DataError, match="pass --data-path"):
        datasets(path="")
    with pytest.raises(DataError, match=f"the dataset folder {data} .* does not exist"):
        datasets()
    (data / "val" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="no train/ folder in the dataset folder"):
        datasets()
    tiny_dataset(tmp_path / "full", classes=2, train=1, val=1)
    os.rename(tmp_path / "full" / "train", data / "train")
    (data / "val" / "a").rmdir()
    with pytest.raises(DataError, match="holds no images"):
        datasets()
    os.rmdir(data / "val")
    with pytest.raises(DataError, match="no val/ folder"):
        datasets()
    (data / "val" / "not_a_training_class").mkdir(parents=True)
    with pytest.raises(DataError, match="class folder.* that train/ does not have: not_a_training_class"):
        datasets()
    with pytest.raises(DataError, match="class folder.* that train/ does not have: not_a_training_class"):
        datasets(need_train=False)  # evaluation numbers val/ by train/'s names too
    flat = tmp_path / "flat"
    (flat / "val").mkdir(parents=True)
    (flat / "val" / "image.png").write_bytes(b"")
    with pytest.raises(DataError, match="not in the ImageFolder layout"):
        datasets(need_train=False, path=str(flat))


def test_bad_auto_augment_is_named(tmp_path):
    data = tiny_dataset(tmp_path / "data", classes=2, train=1, val=1)
    with pytest.raises(ConfigError, match="AUG.AUTO_AUGMENT 'sometimes' is not a timm augmentation policy"):
        build_datasets(get_config(None, ["DATA.DATA_PATH", data, "AUG.AUTO_AUGMENT", "sometimes"]), True)


def test_linear_scaling_rule():
    config = get_config(None, ["DATA.BATCH_SIZE", "128"])
    rates = scaled_learning_rates(config, world_size=8)  # the paper's total batch of 1024
    assert (rates.base, rates.warmup, rates.min) == pytest.approx((1e-3, 1e-6, 1e-5))
    config = get_config(None, ["DATA.BATCH_SIZE", "64", "TRAIN.ACCUMULATION_STEPS", "2"])
    assert scaled_learning_rates(config, world_size=4).base == pytest.approx(5e-4)


def test_weight_decay_groups():
    from grootv.models import GrootV

    model = GrootV(channels=8, depths=[1, 1], num_classes=3)
    decay, no_decay = param_groups(model, 0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    kept = {names[id(p)] for p in no_decay["params"]}
    assert decayed | kept == set(names.values()) and not decayed & kept
    for leaf in ("A_logs", "Ds", "dt_projs_bias", "norm1.0.weight", "head.bias"):
        assert any(n.endswith(leaf) for n in kept), leaf
        assert not any(n.endswith(leaf) for n in decayed), leaf
    for leaf in ("in_proj.weight", "x_proj_weight", "dt_projs_weight", "conv2d.weight", "head.weight"):
        assert any(n.endswith(leaf) for n in decayed), leaf


def test_cosine_schedule_with_warmup():
    config = get_config(None, ["TRAIN.EPOCHS", "10", "TRAIN.WARMUP_EPOCHS", "2", "DATA.BATCH_SIZE", "512"])
    rates = scaled_learning_rates(config, 1)
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=rates.base)
    scheduler = build_scheduler(config, optimizer, rates, updates_per_epoch=5)

    def lr_at(update):
        scheduler.step_update(update)
        return optimizer.param_groups[0]["lr"]

    assert lr_at(0) == pytest.approx(rates.warmup)
    assert lr_at(5) == pytest.approx((rates.warmup + rates.base) / 2)
    for update in (10, 30, 49):
        cosine = rates.min + (rates.base - rates.min) * (1 + math.cos(math.pi * update / 50)) / 2
        assert lr_at(update) == pytest.approx(cosine)
