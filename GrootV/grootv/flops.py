"""FLOPs of a GrootV model, counted as fvcore counts them (one multiply-add = one FLOP).

fvcore counts the matrix products, convolutions and norms of a traced forward pass and
no elementwise work (activations, softplus, exp, products). To that we add the tree
scan's own work, per element of its ``(B, d_inner, H*W)`` input:

  * all-roots scan (the release): 4 multiply-adds — 1 on the way up
    (``a_p += w_v a_v``) and 3 on the way down (``w_v²``, ``(1 - w_v²) a_v``,
    ``+ w_v out_p``);
  * single-root (causal) scan: 1 multiply-add (the way up only).

Building the tree is not counted, in keeping with fvcore: its edge weights are
elementwise products and sums over channels, the MST and the breadth-first order are
comparisons and index work. At 224² this gives 4.786 / 8.532 / 15.105 G for GrootV-T/S/B
(paper: 4.8 / 8.5 / 15.1), of which the scan is 0.011 / 0.016 / 0.021 G.
"""

from __future__ import annotations

import contextlib
import math
import warnings

import torch
from torch import nn

from .models.tree_ssm import Tree_SSM

__all__ = ["SCAN_FLOPS_PER_ELEMENT", "count_flops"]

SCAN_FLOPS_PER_ELEMENT = {"tree_scan::scan_all_roots": 4, "tree_scan::scan_causal": 1}


def _scan_handle(per_element: int):
    def handle(inputs, outputs) -> int:
        from fvcore.nn.jit_handles import get_shape

        return per_element * math.prod(get_shape(inputs[0]))

    return handle


@contextlib.contextmanager
def _removed_after(handles: list):
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def count_flops(model: nn.Module, img_size: int | tuple[int, int] = 224, in_chans: int = 3) -> int:
    """fvcore-style FLOPs of one ``in_chans x img_size`` image through ``model``.

    Works on any model built from :class:`grootv.models.Tree_SSM` blocks (every variant).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fvcore scripts helpers with torch.jit at import
        from fvcore.nn import FlopCountAnalysis

    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be an nn.Module, got {type(model).__name__}")
    size = (img_size, img_size) if isinstance(img_size, int) and not isinstance(img_size, bool) else img_size
    if (not isinstance(size, (tuple, list)) or len(size) != 2
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)):
        raise ValueError(f"`img_size` must be a positive int or a (height, width) pair, got {img_size!r}")
    if isinstance(in_chans, bool) or not isinstance(in_chans, int) or in_chans < 1:
        raise ValueError(f"`in_chans` must be a positive int, got {in_chans!r}")
    parameter = next(model.parameters(), torch.zeros(()))
    image = torch.randn(1, in_chans, *size, generator=torch.Generator().manual_seed(0))
    image = image.to(parameter.device, parameter.dtype)
    mixers = {name: module for name, module in model.named_modules() if isinstance(module, Tree_SSM)}

    # The trace cannot run the tree construction (TreeScan's argument checks want Python
    # ints where a trace has tensors), and fvcore would count none of it anyway: every
    # mixer gets the tree it built in an ordinary forward pass as an input.
    trees = {}
    was_training = model.training
    model.eval()
    try:
        def record(name):
            return lambda module, args, output: trees.__setitem__(name, output[1])

        def inject(name):
            return lambda module, args, kwargs: ((args[0],), {"tree": trees[name]})

        with torch.no_grad(), _removed_after([m.register_forward_hook(record(n)) for n, m in mixers.items()]):
            model(image)
        injections = [m.register_forward_pre_hook(inject(n), with_kwargs=True) for n, m in mixers.items()]
        with _removed_after(injections), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about shapes turned into constants
            analysis = FlopCountAnalysis(model, image)
            analysis.set_op_handle(**{op: _scan_handle(n) for op, n in SCAN_FLOPS_PER_ELEMENT.items()})
            analysis.unsupported_ops_warnings(False)
            analysis.uncalled_modules_warnings(False)
            return int(analysis.total())
    finally:
        model.train(was_training)
