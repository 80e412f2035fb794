"""Registration of the ``torch.ops.tree_scan_lan`` operators: GrootL's fused selective tree scan.

The schemas and the CPU kernel come from the compiled extension ``tree_scan._C``
(``csrc/lan_ops.cpp``, ``csrc/cpu/selective_scan.cpp``). This module adds what torch needs
from Python: fake implementations (``torch.compile``, meta tensors) and the autograd formula,
which calls the backward operator.

CUDA tensors are served by the Triton kernels of :mod:`tree_scan_lan.triton_selective`.

Importing never fails because a compiled piece is missing. Without ``_C`` (or with a ``_C``
built before these operators existed) the same schemas are defined here and served by
:mod:`tree_scan_lan.selective_reference` on the CPU (and on CUDA where Triton is missing).
A warning says so once.
"""

from __future__ import annotations

import warnings

import torch
from tree_scan import _library as _tree_scan_library  # loads tree_scan._C, which defines these operators

from . import selective_reference, triton_selective

# Must equal the schemas in csrc/lan_ops.cpp (tests/test_grootl_selective_scan.py checks).
SCHEMAS = {
    "selective_tree_scan": (
        "selective_tree_scan(Tensor x, Tensor delta, Tensor A, Tensor B, Tensor C, Tensor D, Tensor? tree_order,"
        " Tensor? tree_parent, float tree_scale, Tensor[]? tree_plan=None) -> (Tensor y, Tensor final_state)"
    ),
    "selective_tree_scan_backward": (
        "selective_tree_scan_backward(Tensor grad_y, Tensor? grad_final_state, Tensor x, Tensor delta, Tensor A,"
        " Tensor B, Tensor C, Tensor D, Tensor? tree_order, Tensor? tree_parent, float tree_scale,"
        " Tensor[]? tree_plan=None)"
        " -> (Tensor grad_x, Tensor grad_delta, Tensor grad_A, Tensor grad_B, Tensor grad_C, Tensor grad_D)"
    ),
}

REFERENCE_KERNELS = {
    "selective_tree_scan": selective_reference.selective_tree_scan,
    "selective_tree_scan_backward": selective_reference.selective_tree_scan_backward,
}

# Kept alive for as long as the process: dropping a Library object unregisters it.
_python_libraries: list[torch.library.Library] = []


def _compiled() -> bool:
    return hasattr(torch.ops.tree_scan_lan, "selective_tree_scan") and torch._C._dispatch_has_kernel_for_dispatch_key(
        "tree_scan_lan::selective_tree_scan", "CPU"
    )


if not _compiled():
    if _tree_scan_library.BACKEND != "reference":
        warnings.warn(
            "tree_scan_lan: the compiled kernels (tree_scan._C) predate the fused selective tree scan, so it runs "
            "the plain-PyTorch reference, which keeps B x L x d x N tensors. Rebuild with "
            "`pip install --no-build-isolation -e .` from the repository root.",
            RuntimeWarning,
            stacklevel=2,
        )
    _tree_scan_library.define_reference_operators("tree_scan_lan", SCHEMAS, REFERENCE_KERNELS)
    BACKEND = "reference"
else:
    BACKEND = "cpu"

# CUDA tensors: the Triton kernels (triton_selective.py); where Triton is missing, the reference.
_cuda_kernels = torch.library.Library("tree_scan_lan", "IMPL")
_python_libraries.append(_cuda_kernels)
if triton_selective.AVAILABLE:
    _cuda_kernels.impl("selective_tree_scan", triton_selective.selective_tree_scan, "CUDA")
    _cuda_kernels.impl("selective_tree_scan_backward", triton_selective.selective_tree_scan_backward, "CUDA")
elif BACKEND != "reference":
    for _name in SCHEMAS:
        _cuda_kernels.impl(_name, REFERENCE_KERNELS[_name], "CUDA")


# ---------------------------------------------------------------------------------------
# Fake implementations: the kernels return contiguous tensors; the final state and the
# gradients of A and D are in the accumulation dtype, which is A's.


@torch.library.register_fake("tree_scan_lan::selective_tree_scan")
def _(x, delta, A, B, C, D, tree_order, tree_parent, tree_scale, tree_plan=None):
    return x.new_empty(x.shape), A.new_empty((x.shape[0], x.shape[2], A.shape[1]))


@torch.library.register_fake("tree_scan_lan::selective_tree_scan_backward")
def _(grad_y, grad_final_state, x, delta, A, B, C, D, tree_order, tree_parent, tree_scale, tree_plan=None):
    return tuple(t.new_empty(t.shape) for t in (x, delta, A, B, C, D))


# ---------------------------------------------------------------------------------------
# Autograd: differentiable in x, delta, A, B, C and D; the tree is integer data. The
# backward operator recomputes the scans instead of keeping them, so only the inputs are saved.

_INPUTS = ("x", "delta", "A", "B", "C", "D", "tree_order", "tree_parent")


def _save_inputs(ctx, inputs, output):
    *tensors, tree_scale, tree_plan = inputs
    plan = list(tree_plan) if tree_plan is not None else []
    ctx.save_for_backward(*tensors, *plan)
    ctx.tree_scale = tree_scale
    ctx.has_plan = tree_plan is not None


def _backward(ctx, grad_y, grad_final_state):
    saved = ctx.saved_tensors
    tensors, plan = saved[: len(_INPUTS)], list(saved[len(_INPUTS) :])
    grads = torch.ops.tree_scan_lan.selective_tree_scan_backward(
        grad_y, grad_final_state, *tensors, ctx.tree_scale, plan if ctx.has_plan else None
    )
    # One entry per argument the operator received, shaped like it: the dispatcher drops a
    # trailing tree_plan=None, and a tree_plan list gets a list.
    not_differentiable = (None, None, None, [None] * len(plan) if ctx.has_plan else None)
    return (*grads, *not_differentiable)[: len(ctx.needs_input_grad)]


def _no_double_backward(ctx, *grads):
    raise RuntimeError(
        "tree_scan_lan: the selective tree scan has first derivatives only; differentiating its backward "
        "(double backward, Hessians, gradient penalties through the scan) is not supported"
    )


def _keep_nothing(ctx, inputs, output):
    pass


# Without this, autograd would treat the backward operator as a constant and silently give
# zero second derivatives.
torch.library.register_autograd(
    "tree_scan_lan::selective_tree_scan_backward", _no_double_backward, setup_context=_keep_nothing
)
torch.library.register_autograd("tree_scan_lan::selective_tree_scan", _backward, setup_context=_save_inputs)
