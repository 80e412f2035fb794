"""timm's auto-augment policies, with a posterize that keeps working when no bit is kept.

timm's posterize ops pass Pillow the number of bits to keep per channel, and two of the
level scalings reach 0: ``PosterizeIncreasing`` (the release's ``rand-m9-mstd0.5-inc1``)
at magnitude 10, which a draw of the magnitude around 9 (std 0.5) is clipped to about
2 % of the time, and ``Posterize`` (timm's plain ``rand``/``v0`` policies) near
magnitude 0. Keeping no bit maps every value to 0, a black image: what the TensorFlow
policies these ops follow compute, and what Pillow computed until it began to refuse
``bits`` outside 1..8 with a ValueError (Pillow 13, in this project's lock file). That
refusal stopped ImageNet training in its first epoch.

:func:`with_zero_bit_posterize` swaps the function behind those ops for :func:`posterize`;
every op keeps its name, probability, magnitude and magnitude noise, so the policy is
exactly the one configured.
"""

from __future__ import annotations

from collections.abc import Iterator

from PIL import Image, ImageOps
from timm.data import auto_augment

__all__ = ["augment_ops", "posterize", "with_zero_bit_posterize"]


def posterize(image: Image.Image, bits_to_keep: int, **_) -> Image.Image:
    """Keep the ``bits_to_keep`` most significant bits of every channel; 0 keeps none (black)."""
    bits = int(bits_to_keep)
    if bits >= 8:
        return image
    if bits <= 0:
        return image.point([0] * 256 * len(image.getbands()))
    return ImageOps.posterize(image, bits)


def augment_ops(transform) -> Iterator[auto_augment.AugmentOp]:
    """Every op of the auto-augment policies (RandAugment, AutoAugment, AugMix) in ``transform``."""
    for step in getattr(transform, "transforms", [transform]):
        if isinstance(step, (auto_augment.RandAugment, auto_augment.AugMixAugment)):
            yield from step.ops
        elif isinstance(step, auto_augment.AutoAugment):
            for sub_policy in step.policy:
                yield from sub_policy


def with_zero_bit_posterize(transform):
    """``transform`` (changed in place) with its policies' posterize ops computed by :func:`posterize`."""
    for op in augment_ops(transform):
        if op.aug_fn is auto_augment.posterize:
            op.aug_fn = posterize
    return transform
