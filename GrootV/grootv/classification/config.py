"""Configuration of the classification pipeline: yacs defaults, merging and validation.

The key names are those of the original release, so its yaml files and ``--opts`` lists
keep working. A config is built in three layers, each overriding the one before:
the yaml file (after the files named in its ``BASE`` list), ``--opts KEY VALUE ...``,
then the dedicated command-line flags (``--batch-size``, ``--data-path``, ...).

Unlike plain yacs, an integer is accepted where a float is expected (``TRAIN.BASE_LR 1``),
and every mistake is reported as a :class:`ConfigError` naming the key and the source.
"""

from __future__ import annotations

import ast
import difflib
import math
import os
from collections.abc import Iterable, Mapping

import yaml
from yacs.config import CfgNode as CN

from ..models.grootv import ACT_LAYERS, DROP_PATH_TYPES, NORM_LAYERS
from ..models.tree_ssm import METRICS, ROOTS, SCANS
from .errors import ConfigError
from .images import BAD_IMAGE_CHOICES


def _available_cpus() -> int:
    """The CPUs this process may run on (a container's or a job's share, not the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


_C = CN()
# Other yaml files (relative to this one) merged before it.
_C.BASE = [""]

# -----------------------------------------------------------------------------
# Data
# -----------------------------------------------------------------------------
_C.DATA = CN()
# Images per process and per step; the learning rate is scaled with the total batch.
_C.DATA.BATCH_SIZE = 128
# Folder with train/ and val/ subfolders, one subfolder per class in each (ImageFolder).
_C.DATA.DATA_PATH = ""
# A name for the dataset, written into the log (--dataset); empty: the dataset folder's name.
# Any ImageFolder-shaped folder is read.
_C.DATA.DATASET = ""
_C.DATA.IMG_SIZE = 224
# Resize interpolation: bicubic, bilinear, nearest, lanczos, hamming, box, or random
# (a random choice per training image; bicubic for evaluation).
_C.DATA.INTERPOLATION = "bicubic"
# The release's zipped-ImageNet and in-memory modes are not provided: these keys exist
# so that its configs merge, and must stay False.
_C.DATA.ZIP_MODE = False
_C.DATA.CACHE_MODE = "part"
_C.DATA.IMG_ON_MEMORY = False
# Load batches into page-locked memory for faster copies to the GPU (no effect on CPU).
_C.DATA.PIN_MEMORY = True
# Data-loader worker processes per training process. The default is 8, capped at the CPUs
# available to the process (more workers than CPUs only compete for them, and PyTorch warns
# every epoch); a value set in a config file or --opts is taken as given.
_C.DATA.NUM_WORKERS = 8
# An image file that cannot be decoded: 'stop' the run with its name, or 'skip' it with a
# warning (training takes the next readable image instead, evaluation leaves it out).
_C.DATA.ON_BAD_IMAGE = "stop"

# -----------------------------------------------------------------------------
# Model
# -----------------------------------------------------------------------------
_C.MODEL = CN()
# 'grootv' builds GrootV from MODEL.GROOTV; any other name is a timm model name.
_C.MODEL.TYPE = "grootv"
# Set to the config file's name; used in logs.
_C.MODEL.NAME = "GrootV"
# Weights to start from (fine-tuning); a classifier head of another size is re-initialised.
_C.MODEL.PRETRAINED = ""
# Checkpoint to resume training from, or to evaluate with --eval.
_C.MODEL.RESUME = ""
# Left at 1000 it follows the number of class folders in the dataset.
_C.MODEL.NUM_CLASSES = 1000
_C.MODEL.DROP_RATE = 0.0
_C.MODEL.DROP_PATH_RATE = 0.1
# 'linear': the rate grows from 0 to DROP_PATH_RATE over the blocks; 'uniform': the same everywhere.
_C.MODEL.DROP_PATH_TYPE = "linear"
_C.MODEL.LABEL_SMOOTHING = 0.1

_C.MODEL.GROOTV = CN()
# GrootV-T; the release's defaults (64, [4, 4, 18, 4]) describe no GrootV model.
_C.MODEL.GROOTV.CHANNELS = 80
_C.MODEL.GROOTV.DEPTHS = [2, 2, 9, 2]
_C.MODEL.GROOTV.MLP_RATIO = 4.0
_C.MODEL.GROOTV.LAYER_SCALE = None
_C.MODEL.GROOTV.POST_NORM = False
_C.MODEL.GROOTV.ACT_LAYER = "GELU"
_C.MODEL.GROOTV.NORM_LAYER = "LN"
# Width of the classifier's 1x1 conv relative to the last level's channels.
_C.MODEL.GROOTV.CLS_SCALE = 1.5
# The paper's variants (the defaults are the release's model): tree edge weight
# cosine/euclidean/manhattan (Table 5), scan roots all/first/last (Table 6), tree or
# raster scan (Table 4), and one tree per stage shared by its blocks (GrootV-T*, Table 7).
_C.MODEL.GROOTV.METRIC = "cosine"
_C.MODEL.GROOTV.ROOT = "all"
_C.MODEL.GROOTV.SCAN = "tree"
_C.MODEL.GROOTV.SHARE_TREE = False
# InternImage settings the release's configs still carry; GrootV has no use for them.
_C.MODEL.GROOTV.GROUPS = [4, 8, 16, 32]
_C.MODEL.GROOTV.OFFSET_SCALE = 1.0
_C.MODEL.GROOTV.CORE_OP = "DCNv3"
_C.MODEL.GROOTV.RES_POST_NORM = False
_C.MODEL.GROOTV.DW_KERNEL_SIZE = None
_C.MODEL.GROOTV.USE_CLIP_PROJECTOR = False
_C.MODEL.GROOTV.LEVEL2_POST_NORM = False
_C.MODEL.GROOTV.LEVEL2_POST_NORM_BLOCK_IDS = None
_C.MODEL.GROOTV.CENTER_FEATURE_SCALE = False
_C.MODEL.GROOTV.REMOVE_CENTER = False

# -----------------------------------------------------------------------------
# Training
# -----------------------------------------------------------------------------
_C.TRAIN = CN()
# Set from a checkpoint when resuming.
_C.TRAIN.START_EPOCH = 0
_C.TRAIN.EPOCHS = 300
_C.TRAIN.WARMUP_EPOCHS = 20
_C.TRAIN.WEIGHT_DECAY = 0.05
# The three learning rates are for a total batch of 512 and are scaled linearly with
# DATA.BATCH_SIZE x processes x accumulation steps (5e-4 at 512 = 1e-3 at 1024).
_C.TRAIN.BASE_LR = 5e-4
_C.TRAIN.WARMUP_LR = 5e-7
_C.TRAIN.MIN_LR = 5e-6
# Gradient-norm clipping threshold; 0 or None turns clipping off.
_C.TRAIN.CLIP_GRAD = 5.0
# Continue from the newest checkpoint in the output folder (also --auto-resume).
_C.TRAIN.AUTO_RESUME = False
# Micro-batches per optimizer step (0 and 1 both mean none).
_C.TRAIN.ACCUMULATION_STEPS = 0
# Gradient checkpointing (activations recomputed in backward to save memory).
_C.TRAIN.USE_CHECKPOINT = False

_C.TRAIN.LR_SCHEDULER = CN()
# cosine, linear (to 1% of the base rate) or step; all with linear warm-up, updated every step.
_C.TRAIN.LR_SCHEDULER.NAME = "cosine"
_C.TRAIN.LR_SCHEDULER.DECAY_EPOCHS = 30
_C.TRAIN.LR_SCHEDULER.DECAY_RATE = 0.1

_C.TRAIN.OPTIMIZER = CN()
# adamw or sgd (Nesterov).
_C.TRAIN.OPTIMIZER.NAME = "adamw"
_C.TRAIN.OPTIMIZER.EPS = 1e-8
_C.TRAIN.OPTIMIZER.BETAS = (0.9, 0.999)
_C.TRAIN.OPTIMIZER.MOMENTUM = 0.9
# Release options that are not provided here; they must keep these values.
_C.TRAIN.OPTIMIZER.USE_ZERO = False
_C.TRAIN.OPTIMIZER.FREEZE_BACKBONE = None
_C.TRAIN.OPTIMIZER.DCN_LR_MUL = None

_C.TRAIN.EMA = CN()
_C.TRAIN.EMA.ENABLE = False
_C.TRAIN.EMA.DECAY = 0.9998

# Layer-wise learning-rate decay is not provided; must stay False.
_C.TRAIN.LR_LAYER_DECAY = False
_C.TRAIN.LR_LAYER_DECAY_RATIO = 0.875
# When fine-tuning with another number of classes, shrink the new head's initial
# weights by 1000 (the release's RAND_INIT_FT_HEAD).
_C.TRAIN.RAND_INIT_FT_HEAD = False

# -----------------------------------------------------------------------------
# Augmentation (timm's create_transform and Mixup)
# -----------------------------------------------------------------------------
_C.AUG = CN()
# Colour-jitter strength; 0 turns it off (timm also leaves it out under RandAugment).
_C.AUG.COLOR_JITTER = 0.4
# A timm auto-augment policy ('rand-m9-mstd0.5-inc1', 'original', 'v0', ...) or 'none'.
_C.AUG.AUTO_AUGMENT = "rand-m9-mstd0.5-inc1"
# Random erasing: probability, mode (pixel, rand, const) and number of boxes.
_C.AUG.REPROB = 0.25
_C.AUG.REMODE = "pixel"
_C.AUG.RECOUNT = 1
# Mixup / CutMix alphas; either > 0 (or CUTMIX_MINMAX set) turns mixing on.
_C.AUG.MIXUP = 0.8
_C.AUG.CUTMIX = 1.0
_C.AUG.CUTMIX_MINMAX = None
_C.AUG.MIXUP_PROB = 1.0
_C.AUG.MIXUP_SWITCH_PROB = 0.5
# Mixing parameters drawn per 'batch', 'pair' or 'elem'.
_C.AUG.MIXUP_MODE = "batch"
# Evaluation only, when TEST.CROP is False: random-resized crop instead of a plain resize.
_C.AUG.RANDOM_RESIZED_CROP = False
_C.AUG.MEAN = (0.485, 0.456, 0.406)
_C.AUG.STD = (0.229, 0.224, 0.225)

# -----------------------------------------------------------------------------
# Evaluation
# -----------------------------------------------------------------------------
_C.TEST = CN()
# Resize the short side to IMG_SIZE and centre-crop (True), or resize to IMG_SIZE x IMG_SIZE.
_C.TEST.CROP = True
# Kept so that the release's configs merge: validation here always shards the val set
# over the processes without padding, so every image counts exactly once.
_C.TEST.SEQUENTIAL = False

# -----------------------------------------------------------------------------
# Misc
# -----------------------------------------------------------------------------
# Mixed precision: '' = automatic (on with CUDA, off on CPU), 'O0' = off, 'O1'/'O2' = on
# (both mean torch.autocast here). AMP_TYPE picks float16 (with loss scaling) or bfloat16.
_C.AMP_OPT_LEVEL = ""
_C.AMP_TYPE = "float16"
# cpu, cuda, or auto (cuda when available).
_C.DEVICE = "auto"
# Output folder: checkpoints, metrics.jsonl, log.txt and config.yaml go straight into it.
_C.OUTPUT = ""
# A label for the run, written into the log (--tag); the output folder does not depend on it.
_C.TAG = "default"
# Save a checkpoint every SAVE_FREQ epochs (and after the last) and keep SAVE_CKPT_NUM of them.
_C.SAVE_FREQ = 1
_C.SAVE_CKPT_NUM = 1
# Log a line every PRINT_FREQ steps (the progress bar shows every step).
_C.PRINT_FREQ = 10
# Validate every EVAL_FREQ epochs (and after the last).
_C.EVAL_FREQ = 1
_C.SEED = 0
_C.EVAL_MODE = False
_C.THROUGHPUT_MODE = False
# Kept so that the release's configs merge; not read: each process takes its local rank
# from the LOCAL_RANK environment variable that torchrun sets.
_C.LOCAL_RANK = 0
# Evaluating a 22k-class head on ImageNet-1k is not provided; must stay False.
_C.EVAL_22K_TO_1K = False


# Keys with a non-None default that may still be set to None (meaning "off").
_NULLABLE = {"TRAIN.CLIP_GRAD"}
# Keys whose values are the model's own choices, checked against its lists.
MODEL_CHOICES = {
    "MODEL.DROP_PATH_TYPE": DROP_PATH_TYPES,
    "MODEL.GROOTV.ACT_LAYER": ACT_LAYERS,
    "MODEL.GROOTV.NORM_LAYER": NORM_LAYERS,
    "MODEL.GROOTV.METRIC": METRICS,
    "MODEL.GROOTV.ROOT": ROOTS,
    "MODEL.GROOTV.SCAN": SCANS,
}


def defaults() -> CN:
    """A fresh, mutable copy of the default config (DATA.NUM_WORKERS capped at this machine's CPUs)."""
    config = _C.clone()
    config.DATA.NUM_WORKERS = min(_C.DATA.NUM_WORKERS, _available_cpus())
    return config


def _decode(value):
    """Turns a string from yaml or --opts into the Python value it spells, as yacs does.

    ``'0.1'`` -> 0.1, ``'[1, 2]'`` -> [1, 2], ``'None'`` -> None, ``'rand-m9'`` stays a string.
    """
    if not isinstance(value, str):
        return value
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def _type_name(value) -> str:
    return "None" if value is None else type(value).__name__


def _coerce(full_key: str, value, default, source: str):
    """``value`` converted to the type of ``default``, or a ConfigError naming the key."""
    value = _decode(value)
    if default is None or (value is None and full_key in _NULLABLE):
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
    elif isinstance(default, (list, tuple)):
        if isinstance(value, (list, tuple)):
            return type(default)(value)
    raise ConfigError(
        f"{full_key}: expected {_type_name(default)} (like the default {default!r}), "
        f"got {value!r} ({_type_name(value)}) from {source}"
    )


def _unknown_key(full_key: str, node: CN, key: str, source: str) -> ConfigError:
    prefix = full_key[: -len(key)]
    close = difflib.get_close_matches(key, list(node.keys()), n=3)
    hint = f"; did you mean {', '.join(prefix + c for c in close)}?" if close else ""
    return ConfigError(f"unknown config key {full_key} in {source}{hint}")


def _set(config: CN, full_key: str, value, source: str, record: set | None = None) -> None:
    if record is not None:
        record.add(full_key)
    node = config
    parts = full_key.split(".")
    for depth, key in enumerate(parts):
        path = ".".join(parts[: depth + 1])
        if key not in node:
            raise _unknown_key(path, node, key, source)
        if depth == len(parts) - 1:
            if isinstance(node[key], CN):
                raise ConfigError(f"{path} is a group of keys, not a value (from {source})")
            node[key] = _coerce(path, value, node[key], source)
        else:
            node = node[key]
            if not isinstance(node, CN):
                raise ConfigError(f"{path} is a value, not a group of keys (from {source})")


def _merge_mapping(config: CN, mapping: Mapping, source: str, prefix: str = "", record: set | None = None) -> None:
    for key, value in mapping.items():
        full_key = f"{prefix}{key}"
        if isinstance(value, Mapping):
            node = config
            for part in full_key.split("."):
                if part not in node:
                    raise _unknown_key(full_key, node, part, source)
                node = node[part]
            if not isinstance(node, CN):
                raise ConfigError(f"{full_key} is a value, but {source} gives it a group of keys")
            _merge_mapping(config, value, source, prefix=f"{full_key}.", record=record)
        else:
            _set(config, full_key, value, source, record)


def merge_file(config: CN, cfg_file: str, _seen: tuple[str, ...] = (), record: set | None = None) -> None:
    """Merges a yaml file (after the files in its BASE list, relative to it) into ``config``;
    the full names of the keys it sets are added to ``record``."""
    path = os.path.abspath(cfg_file)
    if path in _seen:
        raise ConfigError(f"{cfg_file}: BASE files include each other in a loop")
    if not os.path.isfile(path):
        raise ConfigError(f"config file {cfg_file} does not exist (--cfg)")
    try:
        with open(path) as f:
            content = yaml.safe_load(f) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {cfg_file} is not valid yaml: {error}") from None
    if not isinstance(content, dict):
        raise ConfigError(f"config file {cfg_file} must hold a mapping of keys, not {_type_name(content)}")
    bases = content.pop("BASE", None) or []
    if isinstance(bases, str):
        bases = [bases]
    for base in bases:
        if base:
            merge_file(config, os.path.join(os.path.dirname(path), base), _seen + (path,), record)
    _merge_mapping(config, content, source=cfg_file, record=record)


def merge_opts(config: CN, opts: Iterable[str], record: set | None = None) -> None:
    """Merges ``KEY VALUE KEY VALUE ...`` (the --opts list); the keys set are added to ``record``."""
    opts = list(opts or [])
    if len(opts) % 2:
        raise ConfigError(f"--opts expects KEY VALUE pairs, got an odd number of items: {' '.join(map(str, opts))}")
    for key, value in zip(opts[0::2], opts[1::2]):
        _set(config, key, value, source="--opts", record=record)


def _check(condition: bool, key: str, message: str, value) -> None:
    if not condition:
        raise ConfigError(f"{key} {message}, got {value!r}")


def validate(config: CN) -> None:
    """Raises a ConfigError naming the first key whose value cannot work."""

    def get(key):
        node = config
        for part in key.split("."):
            node = node[part]
        return node

    def number(key):
        value = get(key)
        _check(isinstance(value, (int, float)) and not isinstance(value, bool), key, "must be a number", value)
        return value

    def at_least(key, low):
        _check(number(key) >= low, key, f"must be >= {low}", get(key))

    def fraction(key, closed=False):
        value = number(key)
        ok = 0 <= value <= 1 if closed else 0 <= value < 1
        _check(ok, key, "must be in [0, 1]" if closed else "must be in [0, 1)", value)

    def one_of(key, choices):
        _check(get(key) in choices, key, f"must be one of {sorted(choices)}", get(key))

    def must_stay(key, wanted, why):
        _check(get(key) == wanted, key, f"must be {wanted!r} ({why})", get(key))

    for key in ("DATA.BATCH_SIZE", "DATA.IMG_SIZE", "MODEL.NUM_CLASSES", "TRAIN.EPOCHS", "MODEL.GROOTV.CHANNELS"):
        at_least(key, 1)
    for key in ("SAVE_FREQ", "SAVE_CKPT_NUM", "PRINT_FREQ", "EVAL_FREQ", "AUG.RECOUNT"):
        at_least(key, 1)
    for key in ("DATA.NUM_WORKERS", "TRAIN.START_EPOCH", "TRAIN.WARMUP_EPOCHS", "TRAIN.ACCUMULATION_STEPS", "SEED"):
        at_least(key, 0)
    for key in ("TRAIN.WEIGHT_DECAY", "TRAIN.WARMUP_LR", "TRAIN.MIN_LR", "AUG.COLOR_JITTER", "AUG.MIXUP", "AUG.CUTMIX"):
        at_least(key, 0.0)
    for key in ("TRAIN.BASE_LR", "TRAIN.OPTIMIZER.EPS", "MODEL.GROOTV.MLP_RATIO", "MODEL.GROOTV.CLS_SCALE"):
        _check(number(key) > 0 and math.isfinite(get(key)), key, "must be a positive number", get(key))
    for key in ("MODEL.DROP_RATE", "MODEL.DROP_PATH_RATE", "MODEL.LABEL_SMOOTHING", "TRAIN.OPTIMIZER.MOMENTUM"):
        fraction(key)
    for key in ("AUG.REPROB", "AUG.MIXUP_PROB", "AUG.MIXUP_SWITCH_PROB"):
        fraction(key, closed=True)
    _check(0 < number("TRAIN.EMA.DECAY") < 1, "TRAIN.EMA.DECAY", "must be in (0, 1)", config.TRAIN.EMA.DECAY)
    _check(
        config.TRAIN.WARMUP_EPOCHS <= config.TRAIN.EPOCHS,
        "TRAIN.WARMUP_EPOCHS",
        f"must not exceed TRAIN.EPOCHS ({config.TRAIN.EPOCHS})",
        config.TRAIN.WARMUP_EPOCHS,
    )
    clip = config.TRAIN.CLIP_GRAD
    _check(
        clip is None or (isinstance(clip, (int, float)) and clip >= 0), "TRAIN.CLIP_GRAD", "must be >= 0 or None", clip
    )
    layer_scale = config.MODEL.GROOTV.LAYER_SCALE
    _check(
        layer_scale is None or (isinstance(layer_scale, (int, float)) and layer_scale > 0),
        "MODEL.GROOTV.LAYER_SCALE",
        "must be None or a positive number",
        layer_scale,
    )
    depths = config.MODEL.GROOTV.DEPTHS
    _check(
        len(depths) > 0 and all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in depths),
        "MODEL.GROOTV.DEPTHS",
        "must be a non-empty list of positive integers",
        depths,
    )
    model_type = config.MODEL.TYPE
    _check(bool(model_type.strip()), "MODEL.TYPE", "must name a model ('grootv' or a timm model)", model_type)
    betas = config.TRAIN.OPTIMIZER.BETAS
    _check(
        len(betas) == 2 and all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas),
        "TRAIN.OPTIMIZER.BETAS",
        "must be two numbers in [0, 1)",
        betas,
    )
    for key in ("AUG.MEAN", "AUG.STD"):
        value = get(key)
        _check(len(value) == 3 and all(isinstance(v, (int, float)) for v in value), key, "must be 3 numbers", value)
    _check(all(s > 0 for s in config.AUG.STD), "AUG.STD", "must be positive", config.AUG.STD)
    minmax = config.AUG.CUTMIX_MINMAX
    _check(
        minmax is None or (len(minmax) == 2 and 0 < minmax[0] <= minmax[1] <= 1),
        "AUG.CUTMIX_MINMAX",
        "must be None or [min, max] with 0 < min <= max <= 1",
        minmax,
    )

    one_of("DATA.INTERPOLATION", {"bicubic", "bilinear", "nearest", "lanczos", "hamming", "box", "random"})
    one_of("DATA.CACHE_MODE", {"no", "part", "full"})
    one_of("DATA.ON_BAD_IMAGE", set(BAD_IMAGE_CHOICES))
    for key, choices in MODEL_CHOICES.items():
        one_of(key, choices)
    one_of("TRAIN.LR_SCHEDULER.NAME", {"cosine", "linear", "step"})
    one_of("TRAIN.OPTIMIZER.NAME", {"adamw", "sgd"})
    one_of("AUG.REMODE", {"pixel", "rand", "const"})
    one_of("AUG.MIXUP_MODE", {"batch", "pair", "elem"})
    one_of("AMP_OPT_LEVEL", {"", "O0", "O1", "O2"})
    one_of("AMP_TYPE", {"float16", "bfloat16"})
    one_of("DEVICE", {"auto", "cpu", "cuda"})
    if config.TRAIN.LR_SCHEDULER.NAME == "step":
        at_least("TRAIN.LR_SCHEDULER.DECAY_EPOCHS", 1)
        rate = number("TRAIN.LR_SCHEDULER.DECAY_RATE")
        _check(rate > 0, "TRAIN.LR_SCHEDULER.DECAY_RATE", "must be positive", rate)
    if mixing_enabled(config):
        # timm's Mixup asserts an even batch in every AUG.MIXUP_MODE ('elem' too).
        _check(
            config.DATA.BATCH_SIZE % 2 == 0,
            "DATA.BATCH_SIZE",
            "must be even while Mixup/CutMix is on (AUG.MIXUP / AUG.CUTMIX > 0) because images are mixed in pairs",
            config.DATA.BATCH_SIZE,
        )

    not_provided = "the release's option is not provided by this pipeline"
    must_stay("DATA.ZIP_MODE", False, "zipped datasets are not read here; extract them into train/ and val/ folders")
    must_stay("DATA.IMG_ON_MEMORY", False, not_provided)
    must_stay("TRAIN.OPTIMIZER.USE_ZERO", False, not_provided)
    must_stay("TRAIN.OPTIMIZER.FREEZE_BACKBONE", None, not_provided)
    must_stay("TRAIN.OPTIMIZER.DCN_LR_MUL", None, "GrootV has no deformable convolutions")
    must_stay("TRAIN.LR_LAYER_DECAY", False, not_provided)
    must_stay("EVAL_22K_TO_1K", False, not_provided)


def mixing_enabled(config: CN) -> bool:
    """Whether Mixup or CutMix is on (then the loss takes soft targets)."""
    return config.AUG.MIXUP > 0 or config.AUG.CUTMIX > 0 or config.AUG.CUTMIX_MINMAX is not None


def get_config(
    cfg_file: str | None = None, opts: Iterable[str] = (), overrides: Mapping | None = None,
    explicit: set | None = None,
) -> CN:
    """The frozen, validated config: defaults <- ``cfg_file`` <- ``opts`` <- ``overrides``.

    ``overrides`` maps full key names to values (what the dedicated command-line flags set).
    ``explicit``, when given, receives the full names of the keys that were set (not defaults).
    """
    config = defaults()
    if cfg_file:
        merge_file(config, cfg_file, record=explicit)
        config.MODEL.NAME = os.path.splitext(os.path.basename(cfg_file))[0]
    merge_opts(config, opts, record=explicit)
    for key, value in (overrides or {}).items():
        _set(config, key, value, source="the command line", record=explicit)
    validate(config)
    config.freeze()
    return config


def saved_mapping(saved, source: str) -> Mapping:
    """The keys of a checkpoint's ``config`` entry: the yaml text this pipeline saves, or the
    yacs config object (a dict) the release's checkpoints hold."""
    if isinstance(saved, str):
        try:
            saved = yaml.safe_load(saved)
        except yaml.YAMLError as error:
            raise ConfigError(f"{source}: its 'config' entry is not valid yaml: {error}") from None
    if not isinstance(saved, Mapping):
        raise ConfigError(f"{source}: its 'config' entry must be a mapping of keys, got {_type_name(saved)}")
    return saved


def saved_config(saved, source: str) -> CN:
    """The config a checkpoint records (see :func:`saved_mapping`), over the defaults. Keys the
    defaults do not have are ignored (the release's config has a few of its own); the rest
    is type-checked."""
    config = defaults()
    _overlay(config, saved_mapping(saved, source), source)
    config.freeze()
    return config


def _overlay(node: CN, saved: Mapping, source: str, prefix: str = "") -> None:
    for key, value in saved.items():
        if key not in node:
            continue
        if isinstance(node[key], CN):
            if isinstance(value, Mapping):
                _overlay(node[key], value, source, f"{prefix}{key}.")
            continue
        if isinstance(value, str) and isinstance(node[key], str):
            node[key] = value  # as saved: not re-read as a number or a list, as a value typed by hand is
        else:
            node[key] = _coerce(f"{prefix}{key}", value, node[key], f"the 'config' entry of {source}")
