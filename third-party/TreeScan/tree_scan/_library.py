"""Registration of the ``torch.ops.tree_scan`` operators.

The schemas, the CPU kernels and the CUDA kernels of the grid weights, the MST and the
BFS come from the compiled extension ``tree_scan._C`` (``csrc/``). The scans on CUDA
tensors are the Triton kernels of ``triton_scan.py``, registered here for these operators
(the public functions call them through their own ops, with the tree's plan). This module
also adds what torch needs from Python: fake implementations (so ``torch.compile`` and
meta tensors work) and the autograd formulas, which call the backward operators.

Importing never fails because a compiled piece is missing. Without ``_C`` the same
schemas are defined here and served by ``tree_scan.reference`` on every device; with a
``_C`` built without CUDA, CUDA tensors are served by the reference (the scans: by
Triton). Either way a warning says so once.
"""

from __future__ import annotations

import warnings

import torch

from . import heavy_paths, reference

# Must equal the schemas in csrc/ops.cpp (tests/test_tree_scan_library.py checks).
SCHEMAS = {
    "grid_edge_weights": "grid_edge_weights(Tensor guide, str metric) -> Tensor",
    "minimum_spanning_tree": "minimum_spanning_tree(Tensor edge_index, Tensor edge_weight, int num_vertices) -> Tensor",
    "bfs": "bfs(Tensor tree, int num_vertices, int root) -> (Tensor order, Tensor parent)",
    "scan_all_roots": "scan_all_roots(Tensor x, Tensor edge_weight, Tensor order, Tensor parent) -> Tensor",
    "scan_all_roots_backward": (
        "scan_all_roots_backward(Tensor grad_out, Tensor x, Tensor edge_weight, Tensor order, Tensor parent)"
        " -> (Tensor grad_x, Tensor grad_edge_weight)"
    ),
    "scan_causal": "scan_causal(Tensor x, Tensor edge_weight, Tensor order, Tensor parent) -> Tensor",
    "scan_causal_backward": (
        "scan_causal_backward(Tensor grad_out, Tensor x, Tensor edge_weight, Tensor order, Tensor parent)"
        " -> (Tensor grad_x, Tensor grad_edge_weight)"
    ),
}

REFERENCE_KERNELS = {
    "grid_edge_weights": reference.grid_edge_weights,
    "minimum_spanning_tree": reference.minimum_spanning_tree,
    "bfs": reference.bfs,
    "scan_all_roots": reference.scan_all_roots,
    "scan_all_roots_backward": reference.scan_all_roots_backward,
    "scan_causal": reference.scan_causal,
    "scan_causal_backward": reference.scan_causal_backward,
}

# Kept alive for as long as the process: dropping a Library object unregisters it.
_python_libraries: list[torch.library.Library] = []


def define_reference_operators(namespace: str, schemas: dict[str, str], kernels: dict) -> None:
    """Defines ``namespace``'s operators from Python, each served by its plain-PyTorch kernel
    on every device: what stands in for a compiled library that is missing."""
    definitions = torch.library.Library(namespace, "DEF")
    _python_libraries.append(definitions)
    for name, schema in schemas.items():
        definitions.define(schema)
        definitions.impl(name, kernels[name], "CompositeExplicitAutograd")


def _load_compiled() -> str | None:
    """Imports ``_C``; returns why it could not be imported, or None."""
    try:
        from . import _C  # noqa: F401  (registers the operators)
    except ImportError as error:
        return str(error)
    return None


def _has_kernel(name: str, dispatch_key: str) -> bool:
    return torch._C._dispatch_has_kernel_for_dispatch_key(f"tree_scan::{name}", dispatch_key)


_compile_error = _load_compiled()
if _compile_error is not None:
    warnings.warn(
        "tree_scan: the compiled kernels (tree_scan._C) could not be loaded, so the operators run the "
        f"plain-PyTorch reference, which is much slower ({_compile_error}). Rebuild with "
        "`pip install --no-build-isolation -e .` from the repository root.",
        RuntimeWarning,
        stacklevel=2,
    )
    define_reference_operators("tree_scan", SCHEMAS, REFERENCE_KERNELS)
    BACKEND = "reference"
else:
    BACKEND = "cuda" if _has_kernel("bfs", "CUDA") else "cpu"
    if BACKEND == "cpu":
        _cuda_fallback = torch.library.Library("tree_scan", "IMPL")
        _python_libraries.append(_cuda_fallback)
        for _name in ("grid_edge_weights", "minimum_spanning_tree", "bfs"):
            _cuda_fallback.impl(_name, REFERENCE_KERNELS[_name], "CUDA")
        if torch.cuda.is_available():
            warnings.warn(
                "tree_scan: the kernels were compiled without CUDA, so on CUDA tensors the grid weights, MST and "
                "BFS use the plain-PyTorch reference. Rebuild with FORCE_CUDA=1 for their CUDA kernels.",
                RuntimeWarning,
                stacklevel=2,
            )

# The scans on CUDA tensors: the Triton kernels (imported only now, once the namespace exists).
from . import triton_scan  # noqa: E402


def _triton_scan_kernel(all_roots: bool):
    def scan(x, edge_weight, order, parent):
        layout = heavy_paths.layout_from_parent(parent)
        return triton_scan.forward(x, edge_weight, layout.elements, layout.rounds, all_roots)

    def backward(grad_out, x, edge_weight, order, parent):
        layout = heavy_paths.layout_from_parent(parent)
        return triton_scan.backward(grad_out, x, edge_weight, layout.elements, layout.rounds, all_roots)

    return scan, backward


if BACKEND != "reference" and triton_scan.AVAILABLE:
    _triton_scans = torch.library.Library("tree_scan", "IMPL")
    _python_libraries.append(_triton_scans)
    for _all_roots, _name in ((True, "scan_all_roots"), (False, "scan_causal")):
        _forward_kernel, _backward_kernel = _triton_scan_kernel(_all_roots)
        _triton_scans.impl(_name, _forward_kernel, "CUDA")
        _triton_scans.impl(f"{_name}_backward", _backward_kernel, "CUDA")


# ---------------------------------------------------------------------------------------
# Fake implementations: output shapes, dtypes and strides without computing anything.
# They mirror the kernels, which allocate outputs with empty_like (same strides as the
# input when it is dense).


@torch.library.register_fake("tree_scan::grid_edge_weights")
def _(guide, metric):
    batch, _, height, width = guide.shape
    dtype = torch.float64 if guide.dtype == torch.float64 else torch.float32
    return guide.new_empty((batch, max((height - 1) * width + height * (width - 1), 0)), dtype=dtype)


@torch.library.register_fake("tree_scan::minimum_spanning_tree")
def _(edge_index, edge_weight, num_vertices):
    return edge_index.new_empty((edge_index.shape[0], num_vertices - 1, 2), dtype=torch.long)


@torch.library.register_fake("tree_scan::bfs")
def _(tree, num_vertices, root):
    shape = (tree.shape[0], num_vertices)
    return tree.new_empty(shape, dtype=torch.long), tree.new_empty(shape, dtype=torch.long)


def _fake_scan(x, edge_weight, order, parent):
    return torch.empty_like(x)


def _fake_scan_backward(grad_out, x, edge_weight, order, parent):
    return torch.empty_like(x), torch.empty_like(edge_weight)


for _name in ("scan_all_roots", "scan_causal"):
    torch.library.register_fake(f"tree_scan::{_name}", _fake_scan)
    torch.library.register_fake(f"tree_scan::{_name}_backward", _fake_scan_backward)


# ---------------------------------------------------------------------------------------
# Autograd: the scans are differentiable in x and edge_weight; the tree and its order
# are integer data. The backward operators recompute the forward sweeps in float32
# instead of keeping them, so only the inputs are saved.


def _save_scan_inputs(ctx, inputs, output):
    x, edge_weight, order, parent = inputs
    ctx.save_for_backward(x, edge_weight, order, parent)


def _make_scan_backward(backward_op):
    def backward(ctx, grad_out):
        x, edge_weight, order, parent = ctx.saved_tensors
        grad_x, grad_edge_weight = backward_op(grad_out, x, edge_weight, order, parent)
        return grad_x, grad_edge_weight, None, None

    return backward


def _no_double_backward(ctx, grad_x, grad_edge_weight):
    raise RuntimeError(
        "tree_scan: the scans have first derivatives only; differentiating their backward "
        "(double backward, Hessians, gradient penalties through a tree scan) is not supported"
    )


def _keep_nothing(ctx, inputs, output):
    pass


# Without these, autograd would treat the backward operators as constants and silently give
# zero second derivatives.
for _name in ("scan_all_roots_backward", "scan_causal_backward"):
    torch.library.register_autograd(f"tree_scan::{_name}", _no_double_backward, setup_context=_keep_nothing)

torch.library.register_autograd(
    "tree_scan::scan_all_roots",
    _make_scan_backward(torch.ops.tree_scan.scan_all_roots_backward),
    setup_context=_save_scan_inputs,
)
torch.library.register_autograd(
    "tree_scan::scan_causal",
    _make_scan_backward(torch.ops.tree_scan.scan_causal_backward),
    setup_context=_save_scan_inputs,
)
