"""GrootV against timm's model contract (what timm 1.0.31 checks of every model it registers).

Each test states one promise a timm model makes and checks it on the registered
``grootv_tiny/small/base``: structure-only checks on the meta device at full size, checks
that compute on small inputs and, where full width would be slow here, on the same
entry points made narrow and shallow through their keyword arguments (``SMALL``).
"""

import copy
import inspect
import math
import warnings

import pytest
import timm
import torch
from conftest import DEVICES
from timm.layers import create_feature_extractor, get_graph_node_names, is_notrace_module
from timm.models._manipulate import group_parameters

import grootv  # noqa: F401  (registers the models with timm)
from grootv.models import Tree_SSM

NAMES = ["grootv_tiny", "grootv_small", "grootv_base"]
# The paper models' layout, narrow and shallow: four stages, strides 4 to 32.
SMALL = dict(channels=8, depths=[1, 1, 2, 1])
SIZE = (48, 40)  # odd stage sizes on the way (12x10, 6x5, 3x3, 2x2)


def small_model(name="grootv_tiny", **kwargs):
    return timm.create_model(name, **{**SMALL, **kwargs})


def images(generator, batch=2, size=SIZE, channels=3):
    return torch.randn(batch, channels, *size, generator=generator)


def floating_tensors(model):
    return [(n, t) for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_floating_point()]


# Factory arguments -------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_create_model_places_every_tensor_on_the_requested_device_and_dtype(name):
    # timm.create_model hands device/dtype to the constructor; meta: full size, no memory.
    model = timm.create_model(name, device="meta", dtype=torch.float64)
    tensors = [*model.named_parameters(), *model.named_buffers()]
    assert tensors and all(t.device.type == "meta" for _, t in tensors)
    assert all(t.dtype == torch.float64 for _, t in floating_tensors(model))


@pytest.mark.parametrize("device", DEVICES)
def test_create_model_with_device_and_dtype_builds_a_working_model(device, generator):
    model = small_model(num_classes=5, device=device, dtype=torch.float64).eval()
    assert {t.device.type for _, t in floating_tensors(model)} == {device}
    assert {t.dtype for _, t in floating_tensors(model)} == {torch.float64}
    with torch.no_grad():
        out = model(images(generator).to(device, torch.float64))
    assert out.shape == (2, 5) and out.dtype == torch.float64 and torch.isfinite(out).all()


def test_same_seed_same_weights_with_or_without_the_factory_arguments():
    torch.manual_seed(0)
    plain = small_model().state_dict()
    torch.manual_seed(0)
    explicit = small_model(device="cpu", dtype=torch.float32).state_dict()
    assert all(torch.equal(plain[k], explicit[k]) for k in plain)


def test_unknown_constructor_arguments_raise_type_error():
    with pytest.raises(TypeError):
        timm.create_model("grootv_tiny", device="meta", not_a_model_arg=1)


# Configuration and attributes ---------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_default_cfg_fields_name_real_modules_and_match_the_output(name):
    model = timm.create_model(name, device="meta").eval()
    cfg = model.pretrained_cfg
    state = model.state_dict()
    assert model.in_chans == cfg["input_size"][0] == 3
    assert model.num_classes == cfg["num_classes"] == 1000
    assert model.num_features > 0 and model.head_hidden_size > 0
    assert cfg["first_conv"] + ".weight" in state and cfg["classifier"] + ".weight" in state
    # At the configured input size the unpooled features have the configured pool size.
    x = torch.randn(1, *cfg["input_size"], device="meta")
    features = model.forward_features(x)
    assert features.shape == (1, model.num_features, *cfg["pool_size"])
    assert model.forward_head(features, pre_logits=True).shape == (1, model.head_hidden_size)
    assert model(x).shape == (1, 1000)


def test_in_chans_is_kept_and_used(generator):
    model = small_model(in_chans=1, num_classes=3).eval()
    assert model.in_chans == 1 and model.patch_embed.conv1.in_channels == 1
    with torch.no_grad():
        assert model(images(generator, channels=1)).shape == (2, 3)
    with pytest.raises(ValueError, match="in_chans"):
        small_model(in_chans=0)


def test_group_matcher_and_no_weight_decay_match_the_parameters():
    model = timm.create_model("grootv_tiny", device="meta")
    groups = group_parameters(model, model.group_matcher(coarse=False), reverse=True)
    assert len(set(groups.values())) > 1
    names = {n for n, _ in model.named_parameters()}
    assert model.no_weight_decay() and model.no_weight_decay() <= names
    assert inspect.signature(model.reset_classifier).parameters["global_pool"].default is None


# Forward and backward ------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_forward_backward_reach_every_parameter(name, generator):
    model = small_model(name, num_classes=42).train()
    out = model(images(generator))
    assert out.shape == (2, 42) and torch.isfinite(out).all()
    out.mean().backward()
    assert not [n for n, p in model.named_parameters() if p.grad is None]


def test_grad_checkpointing_does_not_change_the_eval_output(generator):
    model = small_model().eval()
    x = images(generator)
    with torch.no_grad():
        want = model(x)
        model.set_grad_checkpointing()
        assert torch.equal(model(x), want)


@pytest.mark.parametrize("name", NAMES)
def test_meta_forward_gives_shapes_in_every_dtype(name):
    # Shape-only runs (timm builds and checks models on the meta device).
    model = timm.create_model(name, device="meta").eval()
    x = torch.randn(2, 3, 64, 96, device="meta")
    assert model(x).shape == (2, 1000)
    last = model.forward_intermediates(x, intermediates_only=True)[-1]
    assert last.shape == (2, model.feature_info[-1]["num_chs"], 2, 3)
    model.to(torch.bfloat16)
    assert model(x.to(torch.bfloat16)).dtype == torch.bfloat16


def test_a_meta_forward_gives_the_shapes_of_a_real_one(generator):
    model = small_model(num_classes=0, global_pool="").eval()
    x = images(generator)
    with torch.no_grad():
        real = model(x)
    assert model.to("meta")(x.to("meta")).shape == real.shape


# Pooling and classifier ----------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_global_pool_argument_of_create_model(name, generator):
    x = images(generator)
    pooled = small_model(name, global_pool="avg").eval()
    unpooled = small_model(name, num_classes=0, global_pool="").eval()
    unpooled.load_state_dict({k: v for k, v in pooled.state_dict().items() if not k.startswith("head.")})
    with torch.no_grad():
        features = pooled.forward_features(x)
        assert torch.equal(unpooled(x), features)  # no pooling: the feature map itself
        assert torch.equal(pooled.forward_head(features, pre_logits=True), features.mean((2, 3)))
    assert unpooled.head_hidden_size == unpooled.num_features
    with pytest.raises(ValueError, match="global_pool"):
        small_model(name, global_pool="")  # 1000 classes need pooled features
    with pytest.raises(ValueError, match="global_pool"):
        small_model(name, global_pool="median")


def test_num_classes_zero_returns_the_pre_logits(generator):
    model = small_model().eval()
    x = images(generator)
    with torch.no_grad():
        pre_logits = model.forward_head(model.forward_features(x), pre_logits=True)
        model.reset_classifier(0)
        assert model.num_classes == 0 and torch.equal(model(x), pre_logits)
        assert pre_logits.shape == (2, model.head_hidden_size)


def test_reset_classifier_pooling_variants(generator):
    model = small_model().eval()
    x = images(generator)
    with torch.no_grad():
        features = model.forward_features(x)
        model.reset_classifier(0, "")
        assert torch.equal(model(x), features)
        model.reset_classifier(0, "max")
        assert torch.equal(model(x), features.amax((2, 3)))
        model.reset_classifier(7, "catavgmax")
        assert model.head_hidden_size == 2 * model.num_features == model.head.in_features
        assert model(x).shape == (2, 7)
        model.reset_classifier(0)  # keeps catavgmax
        torch.testing.assert_close(model(x), torch.cat([features.mean((2, 3)), features.amax((2, 3))], 1))
    with pytest.raises(ValueError, match="global_pool"):
        model.reset_classifier(5, "")
    with pytest.raises(ValueError, match="num_classes"):
        model.reset_classifier(-1)


def test_a_classifier_after_removed_pooling_brings_the_average_back(generator):
    model = small_model(num_classes=0, global_pool="").eval()
    x = images(generator)
    model.reset_classifier(4)
    assert model.global_pool.pool_type == "avg"
    with torch.no_grad():
        assert model(x).shape == (2, 4)


@pytest.mark.parametrize("device", DEVICES)
def test_reset_classifier_builds_on_the_device_and_dtype_of_the_model(device, generator):
    model = small_model().to(device, torch.float64).eval()
    model.reset_classifier(4)
    assert model.head.weight.dtype == torch.float64 and model.head.weight.device.type == device
    assert not any(m.training for m in model.modules())  # eval stays eval
    with torch.no_grad():
        assert model(images(generator).to(device, torch.float64)).shape == (2, 4)


def test_reset_classifier_after_removing_the_head_follows_the_model():
    model = timm.create_model("grootv_tiny", device="meta").to(dtype=torch.float64).eval()
    model.reset_classifier(0)
    model.reset_classifier(2)
    assert [(p.device.type, p.dtype) for p in model.head.parameters()] == [("meta", torch.float64)] * 2
    assert not any(m.training for m in model.modules())


def test_frozen_model_stays_frozen_when_the_head_is_removed():
    model = timm.create_model("grootv_tiny", device="meta").requires_grad_(False)
    model.reset_classifier(0)
    model.reset_classifier(0, "")
    assert not [n for n, p in model.named_parameters() if p.requires_grad]


# Feature extraction --------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.filterwarnings("ignore:NOTE. The nodes obtained by tracing")  # torchvision's, about dropout nodes
def test_every_features_only_class_returns_the_same_stage_features(name, generator):
    x = images(generator, size=(64, 56))
    outputs = {}
    for feature_cls in ("getter", "hook", "fx"):
        torch.manual_seed(0)  # same weights for the three
        model = small_model(name, features_only=True, feature_cls=feature_cls).eval()
        with torch.no_grad():
            outputs[feature_cls] = model(x)
        assert model.feature_info.reduction() == [4, 8, 16, 32]
        assert model.feature_info.channels() == [8, 16, 32, 64]
    for feature_cls in ("hook", "fx"):
        assert len(outputs[feature_cls]) == 4
        for got, want in zip(outputs[feature_cls], outputs["getter"]):
            assert torch.equal(got, want), feature_cls
    for features, reduction, channels in zip(outputs["getter"], [4, 8, 16, 32], [8, 16, 32, 64]):
        assert features.shape[:2] == (2, channels)
        assert features.shape[2:] == (math.ceil(64 / reduction), math.ceil(56 / reduction))


def test_feature_info_modules_output_the_stage_features(generator):
    model = small_model().eval()
    x = images(generator)
    seen = {}
    for info in model.feature_info:
        model.get_submodule(info["module"]).register_forward_hook(
            lambda module, args, output, name=info["module"]: seen.setdefault(name, output))
    with torch.no_grad():
        taps = model.forward_intermediates(x, intermediates_only=True)
    assert [torch.equal(seen[info["module"]], tap) for info, tap in zip(model.feature_info, taps)] == [True] * 4


def test_hook_features_train_every_stage(generator):
    model = small_model(features_only=True, feature_cls="hook").train()
    sum(f.square().mean() for f in model(images(generator))).backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert grads["body.levels.3.blocks.0.TreeSSM.in_proj.weight"] is not None


# torch.fx ------------------------------------------------------------------------------


def test_tree_ssm_is_a_timm_fx_leaf():
    assert is_notrace_module(Tree_SSM)


@pytest.mark.filterwarnings("ignore:NOTE. The nodes obtained by tracing")
def test_fx_traced_model_matches_eager_and_trains(generator):
    # As timm's FX tests trace: with timm's leaf registry, returning the last node.
    model = small_model(num_classes=42).eval()
    train_nodes, eval_nodes = get_graph_node_names(model)
    x = images(generator)
    traced = create_feature_extractor(model, return_nodes=[eval_nodes[-1]])
    with torch.no_grad():
        assert torch.equal(next(iter(traced(x).values())), model(x))

    model.train()
    traced = create_feature_extractor(model, return_nodes=[train_nodes[-1]]).train()
    out = next(iter(traced(x).values()))
    out.mean().backward()
    assert out.shape == (2, 42)
    assert not [n for n, p in traced.named_parameters() if p.grad is None]


# forward_intermediates and prune_intermediate_layers -----------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_forward_intermediates_match_forward_features_and_feature_info(name, generator):
    model = small_model(name).eval()
    x = images(generator, size=(64, 56))
    with torch.no_grad():
        final, intermediates = model.forward_intermediates(x)
        assert torch.equal(final, model.forward_features(x))
        model.set_grad_checkpointing()
        assert torch.equal(model.forward_intermediates(x)[0], final)
    for tap, info in zip(intermediates, model.feature_info):
        assert tap.shape == (2, info["num_chs"], math.ceil(64 / info["reduction"]), math.ceil(56 / info["reduction"]))


def test_forward_intermediates_in_both_layouts(generator):
    model = small_model().eval()
    x = images(generator)
    with torch.no_grad():
        nchw = model.forward_intermediates(x, intermediates_only=True)
        nhwc = model.forward_intermediates(x, output_fmt="NHWC", intermediates_only=True)
    assert all(torch.equal(a.permute(0, 2, 3, 1), b) for a, b in zip(nchw, nhwc))
    with pytest.raises(ValueError, match="output_fmt"):
        model.forward_intermediates(x, output_fmt="NLC")


def test_stopping_early_and_pruning_keep_every_tap(generator):
    model = small_model().eval()
    x = images(generator)
    last = len(model.feature_info) - 1
    with torch.no_grad():
        expected = model(x)
        taps = model.forward_intermediates(x, intermediates_only=True)
        kept = copy.deepcopy(model)
        kept.prune_intermediate_layers([last], prune_head=False)
        assert torch.equal(kept(x), expected)
    for i in range(last + 1):
        with torch.no_grad():
            early = model.forward_intermediates(x, indices=[i], stop_early=True, intermediates_only=True)
            assert torch.equal(early[0], taps[i])
            pruned = copy.deepcopy(model)
            take = pruned.prune_intermediate_layers([i], prune_norm=True)
            assert torch.equal(pruned.forward_intermediates(x, indices=take, intermediates_only=True)[0], taps[i])
            if i < last:  # the features now end at the tap
                assert torch.equal(pruned.forward_features(x), taps[i])
        pruned.train()
        selected = pruned.forward_intermediates(x, indices=take, intermediates_only=True)
        sum(f.sum() for f in selected + [pruned.forward_features(x)]).backward()
        assert not [n for n, p in pruned.named_parameters() if p.grad is None], f"pruned to {i}"


def test_a_pruned_model_has_no_pooling_until_a_classifier_is_added(generator):
    model = small_model().eval()
    x = images(generator)
    model.prune_intermediate_layers([2])
    assert not any(m.training for m in model.modules())
    with torch.no_grad():
        features = model.forward_features(x)
        assert torch.equal(model(x), features)  # timm's convention: the pruned head takes the pooling along
        assert model.num_features == model.head_hidden_size == model.feature_info[2]["num_chs"]
        model.reset_classifier(7, "avg")
        assert model.forward_head(features, pre_logits=True).shape == (2, model.head_hidden_size)
        assert model(x).shape == (2, 7)
        model.reset_classifier(0)
        assert torch.equal(model(x), features.mean((2, 3)))


def test_pruned_features_only_model_trains_every_parameter_with_dropout(generator):
    model = small_model(drop_rate=0.5)
    for indices in ([0], [3], [0, 1, 2, 3]):
        pruned = copy.deepcopy(model).train()
        take = pruned.prune_intermediate_layers(indices, prune_norm=True)
        sum(f.sum() for f in pruned.forward_intermediates(images(generator), indices=take,
                                                          intermediates_only=True)).backward()
        assert not [n for n, p in pruned.named_parameters() if p.grad is None], indices
        pruned = copy.deepcopy(model).eval()
        pruned.prune_intermediate_layers(indices)
        x = images(generator)
        with torch.no_grad():
            assert torch.equal(pruned(x), pruned(x))


# torch.export and TorchScript ----------------------------------------------------------


def test_torch_export_matches_eager(generator):
    model = small_model(depths=[1, 1, 1, 1], num_classes=5).eval()
    x = images(generator)
    exported = torch.export.export(model, (x,)).module()
    with torch.no_grad():
        assert torch.equal(exported(x), model(x))
        # The tree is computed inside the program, not frozen at export: new images, new trees.
        other = images(generator)
        assert torch.equal(exported(other), model(other))


def test_torchscript_is_refused_with_a_pointer_to_torch_export():
    model = small_model(depths=[1, 1, 1, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # PyTorch deprecates torch.jit.script itself
        with pytest.raises(RuntimeError, match="torch.export"):
            torch.jit.script(model)
