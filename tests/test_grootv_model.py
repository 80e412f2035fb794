"""GrootV backbone: the release's structure (keys, shapes, counts), shapes of every path, variants, timm."""

import math

import pytest
import timm
import torch

import grootv
from grootv.models import GrootV

PAPER_MODELS = {
    # name: (channels, depths, parameters of the release)
    "grootv_tiny": (80, [2, 2, 9, 2], 29_958_600),
    "grootv_small": (96, [2, 2, 13, 2], 51_331_624),
    "grootv_base": (128, [2, 2, 13, 2], 90_597_096),
}
TINY = dict(channels=8, depths=[1, 2, 1, 1], num_classes=7)


def release_state_dict_shapes(channels, depths, num_classes=1000, mlp_ratio=4, cls_scale=1.5):
    """Keys and shapes of the release's GrootV state_dict, written out from its module tree.

    The stem/downsample norms are ``Sequential(permute, LayerNorm[, permute])`` (index 1),
    the block and level norms ``Sequential(LayerNorm)`` (index 0), the head BN
    ``Sequential(BatchNorm2d)`` inside ``conv_head`` (index 1 of it). Tree_SSM: d_inner =
    2C, rank = ceil(C / 16), d_state = 1, no biases on in_proj/conv2d/out_proj.
    """
    c = channels
    shapes = {
        "patch_embed.conv1.weight": (c // 2, 3, 3, 3), "patch_embed.conv1.bias": (c // 2,),
        "patch_embed.norm1.1.weight": (c // 2,), "patch_embed.norm1.1.bias": (c // 2,),
        "patch_embed.conv2.weight": (c, c // 2, 3, 3), "patch_embed.conv2.bias": (c,),
        "patch_embed.norm2.1.weight": (c,), "patch_embed.norm2.1.bias": (c,),
    }
    for i, depth in enumerate(depths):
        width, inner = c * 2**i, 2 * c * 2**i
        rank = math.ceil(width / 16)
        hidden = int(width * mlp_ratio)
        for j in range(depth):
            block = f"levels.{i}.blocks.{j}."
            shapes.update({
                block + "norm1.0.weight": (width,), block + "norm1.0.bias": (width,),
                block + "TreeSSM.x_proj_weight": (1, rank + 2, inner),
                block + "TreeSSM.dt_projs_weight": (1, inner, rank),
                block + "TreeSSM.dt_projs_bias": (1, inner),
                block + "TreeSSM.A_logs": (inner, 1),
                block + "TreeSSM.Ds": (inner,),
                block + "TreeSSM.in_proj.weight": (2 * inner, width),
                block + "TreeSSM.conv2d.weight": (inner, 1, 3, 3),
                block + "TreeSSM.h_norm.weight": (inner,), block + "TreeSSM.h_norm.bias": (inner,),
                block + "TreeSSM.out_norm.weight": (inner,), block + "TreeSSM.out_norm.bias": (inner,),
                block + "TreeSSM.out_proj.weight": (width, inner),
                block + "norm2.0.weight": (width,), block + "norm2.0.bias": (width,),
                block + "mlp.fc1.weight": (hidden, width), block + "mlp.fc1.bias": (hidden,),
                block + "mlp.fc2.weight": (width, hidden), block + "mlp.fc2.bias": (width,),
            })
        level = f"levels.{i}."
        shapes.update({level + "norm.0.weight": (width,), level + "norm.0.bias": (width,)})
        if i < len(depths) - 1:
            shapes.update({
                level + "downsample.conv.weight": (2 * width, width, 3, 3),
                level + "downsample.norm.1.weight": (2 * width,), level + "downsample.norm.1.bias": (2 * width,),
            })
    last, head = c * 2 ** (len(depths) - 1), int(c * 2 ** (len(depths) - 1) * cls_scale)
    shapes.update({
        "conv_head.0.weight": (head, last, 1, 1),
        "conv_head.1.0.weight": (head,), "conv_head.1.0.bias": (head,),
        "conv_head.1.0.running_mean": (head,), "conv_head.1.0.running_var": (head,),
        "conv_head.1.0.num_batches_tracked": (),
        "head.weight": (num_classes, head), "head.bias": (num_classes,),
    })
    return shapes


def test_release_key_list_spot_checks():
    # A few entries of the list above against numbers read off the release by hand (T).
    shapes = release_state_dict_shapes(80, [2, 2, 9, 2])
    assert len(shapes) == 333
    assert shapes["levels.2.blocks.8.TreeSSM.x_proj_weight"] == (1, 22, 640)
    assert shapes["levels.3.blocks.1.TreeSSM.dt_projs_weight"] == (1, 1280, 40)
    assert shapes["conv_head.0.weight"] == (960, 640, 1, 1)
    assert shapes["head.weight"] == (1000, 960)


@pytest.mark.parametrize("name", PAPER_MODELS)
def test_state_dict_keys_shapes_and_parameter_count_match_the_release(name):
    channels, depths, parameters = PAPER_MODELS[name]
    with torch.device("meta"):  # no memory, no init: structure only
        model = timm.create_model(name)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    want = release_state_dict_shapes(channels, depths)
    assert list(got) == list(want)  # same keys in the same order
    assert got == want
    assert sum(p.numel() for p in model.parameters()) == parameters


def test_parameter_count_does_not_depend_on_the_variant():
    base = sum(p.numel() for p in GrootV(**TINY).parameters())
    for variant in (dict(metric="manhattan"), dict(root="last"), dict(scan="raster"), dict(share_tree=True)):
        assert sum(p.numel() for p in GrootV(**TINY, **variant).parameters()) == base


def test_initialisation_follows_the_release():
    model = GrootV(**TINY)
    ssm = model.levels[0].blocks[0].TreeSSM
    assert torch.equal(ssm.A_logs, torch.zeros_like(ssm.A_logs))  # A = -1
    assert torch.equal(ssm.Ds, torch.ones_like(ssm.Ds))
    dt = torch.nn.functional.softplus(ssm.dt_projs_bias)
    assert dt.min() >= 1e-4 and dt.max() <= 0.1 + 1e-6
    assert ssm.dt_projs_weight.abs().max() <= ssm.dt_rank**-0.5
    assert ssm.x_proj_weight.abs().max() <= ssm.d_inner**-0.5
    assert model.head.bias.abs().max() == 0 and model.levels[0].norm[0].weight.eq(1).all()
    assert {"levels.0.blocks.0.TreeSSM.A_logs", "levels.0.blocks.0.TreeSSM.Ds"} <= model.no_weight_decay()


@pytest.mark.parametrize("height,width", [(50, 70), (33, 17), (64, 64)])
def test_forward_backward_on_odd_sizes(height, width):
    torch.manual_seed(0)
    model = GrootV(**TINY, drop_path_rate=0.1).train()
    image = torch.randn(2, 3, height, width, requires_grad=True)
    logits = model(image)
    assert logits.shape == (2, 7) and torch.isfinite(logits).all()
    logits.square().sum().backward()
    assert torch.isfinite(image.grad).all() and image.grad.abs().sum() > 0
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing


VARIANTS = [
    dict(metric="euclidean"), dict(metric="manhattan"),
    dict(root="first"), dict(root="last"),
    dict(scan="raster"), dict(scan="raster", root="first"),
    dict(share_tree=True), dict(share_tree=True, root="last"),
    dict(post_norm=True), dict(layer_scale=1e-3), dict(norm_layer="BN", act_layer="ReLU"),
    dict(act_layer="SiLU", drop_path_type="uniform", drop_rate=0.1),
]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: ",".join(f"{k}={w}" for k, w in v.items()))
def test_every_variant_runs_forward_and_backward(variant):
    torch.manual_seed(0)
    model = GrootV(**TINY, **variant)
    image = torch.randn(1, 3, 40, 56)
    model(image).sum().backward()
    unused = {n for n, p in model.named_parameters() if p.grad is None}
    # Under post_norm the release's level norms exist (checkpoint keys) but are not applied.
    assert unused == ({f"levels.{i}.norm.0.{w}" for i in range(4) for w in ("weight", "bias")}
                      if variant.get("post_norm") else set())
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(image), model(image))  # deterministic in eval


def test_post_norm_skips_the_level_norm():
    # What the release meant (its post_norm path read an undefined attribute).
    model = GrootV(**TINY, post_norm=True).eval()
    level = model.levels[3]
    x = torch.randn(1, 2, 2, level.norm[0].normalized_shape[0])
    with torch.no_grad():
        out, features = level(x)
        want = x
        for block in level.blocks:
            want, _ = block(want)
    assert torch.equal(features, want)


@pytest.mark.parametrize("argument,value", [
    ("metric", "cos"), ("root", "middle"), ("scan", "zigzag"), ("drop_path_type", "cosine"),
    ("act_layer", "tanh"), ("norm_layer", "GN"), ("channels", 0), ("depths", [2, 0]), ("num_classes", -1),
    ("drop_path_rate", 1.5),
])
def test_bad_arguments_raise_value_errors_naming_them(argument, value):
    with pytest.raises(ValueError, match=argument):
        GrootV(**{**TINY, argument: value})


@pytest.mark.parametrize("name", PAPER_MODELS)
def test_timm_registration(name):
    assert name in timm.list_models("grootv_*")
    model = timm.create_model(name, channels=8, depths=[1, 1, 1, 1], num_classes=3)
    assert model.pretrained_cfg["mean"] == timm.data.IMAGENET_DEFAULT_MEAN
    assert model.pretrained_cfg["crop_pct"] == 1.0 and model.pretrained_cfg["input_size"] == (3, 224, 224)
    image = torch.randn(2, 3, 64, 48)
    features = model.forward_features(image)
    assert features.shape == (2, model.num_features, 2, 2)
    pooled = model.forward_head(features, pre_logits=True)
    assert pooled.shape == (2, int(64 * 1.5)) == (2, model.num_features)
    assert model.forward_head(features).shape == (2, 3)
    model.reset_classifier(5)
    assert model(image).shape == (2, 5) and model.get_classifier().out_features == 5


def test_timm_default_configuration_is_the_papers():
    with torch.device("meta"):
        model = timm.create_model("grootv_small")
    assert model.channels == 96 and model.depths == [2, 2, 13, 2] and model.num_classes == 1000
    # Only what something reads is stored (the blocks keep their own settings).
    assert not any(hasattr(model, name) for name in ("mlp_ratio", "act_layer", "drop_rate", "post_norm"))
    rates = [getattr(b.drop_path, "drop_prob", 0.0) for level in model.levels for b in level.blocks]
    assert rates[0] == 0 and rates[-1] == pytest.approx(0.3)


def test_features_only_gives_four_stages_at_strides_4_to_32():
    model = timm.create_model("grootv_tiny", features_only=True, channels=8, depths=[1, 1, 2, 1])
    assert model.feature_info.reduction() == [4, 8, 16, 32]
    assert model.feature_info.channels() == [8, 16, 32, 64]
    features = model(torch.randn(2, 3, 96, 64))
    assert [tuple(f.shape) for f in features] == [(2, 8, 24, 16), (2, 16, 12, 8), (2, 32, 6, 4), (2, 64, 3, 2)]
    assert not any(k.startswith(("model.head", "model.conv_head")) for k in model.state_dict())

    two = timm.create_model("grootv_tiny", features_only=True, out_indices=(1, 2), channels=8, depths=[1, 1, 1, 1])
    assert [f.shape[1] for f in two(torch.randn(1, 3, 64, 64))] == [16, 32]
    assert len(two.model.levels) == 3 and two.model.levels[-1].downsample is None


def test_forward_intermediates_matches_forward_features():
    model = GrootV(**TINY).eval()
    image = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        final, intermediates = model.forward_intermediates(image)
        assert torch.equal(final, model.forward_features(image))
    assert [f.shape[-1] for f in intermediates] == [16, 8, 4, 2]


@pytest.mark.parametrize("indices", [[1], [0, 2], 4, [3]])
def test_forward_intermediates_stopping_early(indices):
    """Stopped before the last stage there is no head to run: the last computed stage's
    output comes back instead (timm's convention for truncated models)."""
    model = GrootV(channels=8, depths=[1, 1, 1, 1]).eval()
    image = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        final, intermediates = model.forward_intermediates(image, indices=indices, stop_early=True)
        every = model.forward_intermediates(image, intermediates_only=True)
        if indices == [3] or indices == 4:
            assert torch.equal(final, model.forward_features(image))
        else:
            assert torch.equal(final, intermediates[-1])
    last = max(indices) if isinstance(indices, list) else 3
    take = indices if isinstance(indices, list) else range(4)
    assert [tuple(f.shape) for f in intermediates] == [tuple(every[i].shape) for i in take]
    assert torch.equal(intermediates[-1], every[last])


def test_grad_checkpointing_behind_a_frozen_stem(monkeypatch):
    """Inputs without grad (a frozen stem, mm's frozen_stages >= 0) still train the blocks'
    weights, so those blocks are checkpointed too; in eval or under no_grad nothing is."""
    from grootv.models import grootv as backbone

    calls = []
    checkpoint = backbone.checkpoint
    monkeypatch.setattr(backbone, "checkpoint", lambda *args, **kwargs: calls.append(1) or checkpoint(*args, **kwargs))
    torch.manual_seed(0)
    model = GrootV(channels=8, depths=[1, 1], num_classes=3, drop_path_rate=0.0, with_cp=True).train()
    model.patch_embed.requires_grad_(False)
    image = torch.randn(2, 3, 32, 32)
    model(image).square().sum().backward()
    assert len(calls) == 2  # both blocks, the first one's input needing no grad
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert "levels.0.blocks.0.TreeSSM.in_proj.weight" in grads

    model.zero_grad()
    model.set_grad_checkpointing(False)
    model(image).square().sum().backward()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, dict(model.named_parameters())[name].grad, rtol=1e-5, atol=1e-6, msg=name)

    calls.clear()
    model.set_grad_checkpointing(True)
    with torch.no_grad():
        model(image)
    model.eval()(image)
    assert not calls


def test_grad_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    model = GrootV(**TINY, share_tree=True, drop_path_rate=0.0).train()
    image = torch.randn(2, 3, 32, 48)

    def gradients():
        model.zero_grad()
        model(image).square().sum().backward()
        return [p.grad.clone() for p in model.parameters()]

    plain = gradients()
    model.set_grad_checkpointing(True)
    assert all(b.with_cp for level in model.levels for b in level.blocks)
    for got, want in zip(gradients(), plain):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    model.set_grad_checkpointing(False)
    assert not any(b.with_cp for level in model.levels for b in level.blocks)


def test_bf16_autocast_forward_on_cpu():
    torch.manual_seed(0)
    model = GrootV(**TINY).eval()
    image = torch.randn(2, 3, 48, 40)
    with torch.no_grad():
        want = model(image)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = model(image)
    assert got.dtype == torch.bfloat16 and torch.isfinite(got).all()
    # bf16 rounding may change a few tree edges too: close, not equal.
    assert torch.nn.functional.cosine_similarity(got.float().flatten(), want.flatten(), dim=0) > 0.98


def test_whole_model_in_bfloat16_runs():
    model = GrootV(**TINY).eval().to(torch.bfloat16)
    with torch.no_grad():
        out = model(torch.randn(1, 3, 32, 32, dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()


def test_import_is_light():
    import subprocess
    import sys

    code = ("import sys, grootv; heavy = [m for m in ('fvcore', 'matplotlib', 'transformers', 'mmdet', 'mmseg') "
            "if m in sys.modules]; print(heavy)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
    assert grootv.GrootV is GrootV


def test_timm_optimizer_with_layer_decay_and_no_weight_decay_list():
    from timm.optim import create_optimizer_v2

    model = GrootV(**TINY)
    optimizer = create_optimizer_v2(model, "adamw", lr=1e-3, weight_decay=0.05, layer_decay=0.8)
    decayed = {id(p) for g in optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    ssm = model.levels[0].blocks[0].TreeSSM
    assert id(ssm.A_logs) not in decayed and id(ssm.Ds) not in decayed and id(ssm.x_proj_weight) in decayed
    scales = {g["lr_scale"] for g in optimizer.param_groups}
    assert max(scales) == 1.0 and min(scales) < 0.5  # the stem learns slowest
