"""The GrootV backbone for mmdet/mmseg: registration, outputs, frozen stages, variants, bad arguments."""

import pytest
import torch

pytest.importorskip("mmengine")
grootv_mm = pytest.importorskip("grootv.mm")

from grootv.models import GrootV  # noqa: E402
from grootv.mm import GrootVBackbone  # noqa: E402

TINY = dict(channels=8, depths=[1, 2, 1, 1], drop_path_rate=0.0)


pytestmark = pytest.mark.usefixtures("one_thread")


def test_registered_as_GrootV_in_mmdet_and_mmseg():
    from mmdet.registry import MODELS as DET_MODELS
    from mmseg.registry import MODELS as SEG_MODELS

    assert set(grootv_mm.REGISTERED_IN) == {"mmdet", "mmseg"}
    for registry in (DET_MODELS, SEG_MODELS):
        assert registry.module_dict["GrootV"] is GrootVBackbone
        backbone = registry.build(dict(type="GrootV", **TINY))
        assert isinstance(backbone, GrootVBackbone)


def test_outputs_are_the_classification_models_stage_features(generator):
    """Strides 4/8/16/32, channels-first, the level norms applied: exactly what the
    classification GrootV computes with the same weights, so its checkpoints mean the same."""
    classifier = GrootV(num_classes=5, **TINY).eval()
    backbone = GrootVBackbone(**TINY).eval()
    result = backbone.load_state_dict(classifier.state_dict(), strict=False)
    assert not result.missing_keys and all(k.startswith(("conv_head.", "head.")) for k in result.unexpected_keys)

    image = torch.randn(2, 3, 50, 70, generator=generator)  # odd sizes: every stride rounds up
    with torch.no_grad():
        outs = backbone(image)
        expected = classifier.forward_intermediates(image, intermediates_only=True)
    sizes = [(13, 18), (7, 9), (4, 5), (2, 3)]
    assert [tuple(o.shape) for o in outs] == [(2, c, h, w) for c, (h, w) in zip([8, 16, 32, 64], sizes)]
    assert all(o.is_contiguous() for o in outs)
    for out, reference in zip(outs, expected):
        torch.testing.assert_close(out, reference, rtol=0, atol=0)
    assert backbone.out_channels == [8, 16, 32, 64] and backbone.strides == [4, 8, 16, 32]


def test_out_indices_select_levels_and_drop_the_unneeded_ones():
    backbone = GrootVBackbone(out_indices=(1, 2), **TINY)
    assert len(backbone.levels) == 3 and backbone.levels[2].downsample is None
    assert not any(k.startswith(("levels.3.", "conv_head", "head")) for k in backbone.state_dict())
    outs = backbone(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == backbone.out_channels == [16, 32]


def test_frozen_stages_freeze_the_stem_and_the_first_levels():
    backbone = GrootVBackbone(frozen_stages=1, **dict(TINY, drop_path_rate=0.2))
    backbone.train()
    frozen = [n for n, p in backbone.named_parameters() if not p.requires_grad]
    assert frozen and all(n.startswith(("patch_embed.", "levels.0.")) for n in frozen)
    assert all(p.requires_grad for n, p in backbone.named_parameters() if n.startswith("levels.1."))
    assert not backbone.levels[0].training and backbone.levels[1].training
    sum(o.sum() for o in backbone(torch.randn(2, 3, 32, 32))).backward()
    assert all(p.grad is None for n, p in backbone.named_parameters() if n in frozen)
    assert backbone.levels[1].blocks[0].TreeSSM.in_proj.weight.grad is not None


def test_gradient_checkpointing_gives_the_same_gradients(generator):
    image = torch.randn(2, 3, 32, 40, generator=generator)
    grads = []
    for with_cp in (False, True):
        torch.manual_seed(0)
        backbone = GrootVBackbone(with_cp=with_cp, **TINY).train()
        sum((o * o).sum() for o in backbone(image)).backward()
        grads.append({n: p.grad for n, p in backbone.named_parameters()})
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, msg=name)


@pytest.mark.parametrize("variant", [dict(share_tree=True), dict(metric="euclidean", root="first"),
                                     dict(scan="raster"), dict(layer_scale=1.0, post_norm=True)])
def test_variants_run(variant):
    backbone = GrootVBackbone(**TINY, **variant)
    outs = backbone(torch.randn(1, 3, 32, 32))
    assert [o.shape[1] for o in outs] == [8, 16, 32, 64] and all(torch.isfinite(o).all() for o in outs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(out_indices=(0, 4)), "out_indices"),
    (dict(out_indices=(2, 1)), "out_indices"),
    (dict(out_indices=()), "out_indices"),
    (dict(frozen_stages=5), "frozen_stages"),
    (dict(frozen_stages=True), "frozen_stages"),
    (dict(metric="cosin"), "metric"),
    (dict(channels=0), "channels"),
    (dict(init_cfg=dict(type="Pretrained")), "checkpoint"),
    (dict(init_cfg=dict(type="Pretrained", checkpoint="x.pth", prefix="backbone.")), "unknown"),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GrootVBackbone(**dict(TINY, **kwargs))


def test_images_must_be_4d():
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        GrootVBackbone(**TINY)(torch.randn(3, 32, 32))
