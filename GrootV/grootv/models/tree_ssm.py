"""Tree_SSM: GrootV's token mixer, a state space model scanned along a tree (SPEC §3).

A Mamba-style block whose recurrence runs along a tree of the image instead of a
sequence. Per pixel and channel, with ``x`` the activations after the depth-wise conv:

    Δ = softplus(dt_proj(x_proj(x)) + dt_bias),  u = Δ·B·x,  Ā = exp(Δ·A)
    h = tree_scan(u, Ā, tree)          tree = minimum spanning tree of the pixel grid,
                                              weighted by how different neighbouring x are
    y = out_norm(C·h_norm(h) + D·x) · SiLU(z),  then out_proj

``forward`` reads in that order: projections -> tree (``build_tree``) -> scan -> norms
-> gate. Parameter names and shapes are those of the original release, so its
checkpoints load with ``strict=True``; the state dimension is 1, as the release builds it.

The variants of the paper's ablations are switches: ``metric`` (Table 5), ``root``
(Table 6) and ``scan`` (Table 4); ``forward(x, tree=...)`` takes a tree built by another
block, which is how a stage shares one tree (Table 7, GrootV-T*).
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from timm.layers import register_notrace_module
from torch import nn

import tree_scan
from tree_scan import TreeOrder

__all__ = ["METRICS", "ROOTS", "SCANS", "Tree_SSM", "check_choice", "raster_chain"]

METRICS = tree_scan.METRICS
# "all": every pixel is a root (the release); "first"/"last": one root, at the first or
# last pixel in raster order, scanned from the leaves towards it (the paper's Table 6).
ROOTS = ("all", "first", "last")
# "tree": the minimum spanning tree of the grid (the release); "raster": the chain of
# pixels in raster order, the sequence a plain Mamba would scan (the paper's Table 4).
SCANS = ("tree", "raster")


def check_choice(name: str, value, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {choices}; got {value!r}")
    return value


def raster_chain(batch: int, height: int, width: int, device=None) -> torch.Tensor:
    """``(B, H*W - 1, 2)`` the chain ``(i, i+1)`` over the pixels in raster order, as a tree."""
    pixel = torch.arange(height * width, device=device)
    return torch.stack([pixel[:-1], pixel[1:]], dim=1).expand(batch, -1, -1)


def _layer_norm(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    # In the dtype of x (the scan's float32 at least), even when the module's weights
    # were cast (model.half()/bfloat16()), which the plain module call would reject.
    weight = None if norm.weight is None else norm.weight.to(x.dtype)
    bias = None if norm.bias is None else norm.bias.to(x.dtype)
    return F.layer_norm(x, norm.normalized_shape, weight, bias, norm.eps)


# A leaf for torch.fx (timm's FX feature extraction and tests trace with timm's leaf
# registry): the tree is built from tensor values, which symbolic tracing cannot follow.
@register_notrace_module
class Tree_SSM(nn.Module):
    """The tree-scan SSM mixer on channels-last features ``(B, H, W, d_model)``.

    Args:
        d_model: input and output channels.
        ssm_ratio: inner width ``d_inner = ssm_ratio * d_model`` (the release: 2).
        dt_rank: rank of the Δ projection; "auto" = ``ceil(d_model / 16)``.
        act_layer: activation of both branches (the release: SiLU).
        d_conv: kernel of the depth-wise conv, odd (the release: 3; < 2 means none).
        conv_bias, bias: biases of the conv and of in_proj/out_proj (the release: none).
        dropout: after out_proj.
        dt_min, dt_max, dt_init, dt_scale, dt_init_floor: Δ initialisation, as in Mamba.
        metric: tree edge weight, "cosine" (release), "euclidean" or "manhattan".
        root: "all" (release), "first" or "last".
        scan: "tree" (release) or "raster".
        device, dtype: where and in which dtype the parameters are created (timm's factory
            arguments); None: PyTorch's defaults.
    """

    def __init__(
        self,
        d_model: int,
        ssm_ratio: float = 2.0,
        dt_rank: int | str = "auto",
        act_layer: type[nn.Module] = nn.SiLU,
        d_conv: int = 3,
        conv_bias: bool = False,
        bias: bool = False,
        dropout: float = 0.0,
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init: str = "random",
        dt_scale: float = 1.0,
        dt_init_floor: float = 1e-4,
        metric: str = "cosine",
        root: str = "all",
        scan: str = "tree",
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        if isinstance(d_model, bool) or not isinstance(d_model, int) or d_model < 1:
            raise ValueError(f"`d_model` must be a positive int, got {d_model!r}")
        if dt_rank != "auto" and (isinstance(dt_rank, bool) or not isinstance(dt_rank, int) or dt_rank < 1):
            raise ValueError(f"`dt_rank` must be 'auto' or a positive int, got {dt_rank!r}")
        # An even kernel cannot pad to the same size: the map would shrink by a pixel.
        if isinstance(d_conv, bool) or not isinstance(d_conv, int) or (d_conv >= 2 and d_conv % 2 == 0):
            raise ValueError(f"`d_conv` must be an odd int (or < 2 for no conv), got {d_conv!r}")
        check_choice("dt_init", dt_init, ("random", "constant"))
        self.metric = check_choice("metric", metric, METRICS)
        self.root = check_choice("root", root, ROOTS)
        self.scan = check_choice("scan", scan, SCANS)
        d_inner = int(ssm_ratio * d_model)
        if d_inner < 1:
            raise ValueError(f"`ssm_ratio` * `d_model` must be at least 1, got {ssm_ratio} * {d_model}")
        self.d_model = d_model
        self.d_inner = d_inner
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else dt_rank
        self.d_state = 1
        self.d_conv = d_conv

        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=bias, **dd)
        self.act = act_layer()
        if d_conv > 1:
            self.conv2d = nn.Conv2d(d_inner, d_inner, d_conv, padding=(d_conv - 1) // 2, groups=d_inner,
                                    bias=conv_bias, **dd)
        # (1, rank + 2, d_inner): the release keeps a leading axis of size K = 1 (its number
        # of scan directions); x_proj produces Δ (rank), B (1) and C (1) per pixel.
        self.x_proj_weight = nn.Parameter(torch.empty(1, self.dt_rank + 2 * self.d_state, d_inner, **dd))
        self.dt_projs_weight = nn.Parameter(torch.empty(1, d_inner, self.dt_rank, **dd))
        self.dt_projs_bias = nn.Parameter(torch.empty(1, d_inner, **dd))
        self.A_logs = nn.Parameter(torch.empty(d_inner, self.d_state, **dd))
        self.Ds = nn.Parameter(torch.empty(d_inner, **dd))
        self.h_norm = nn.LayerNorm(d_inner, **dd)
        self.out_norm = nn.LayerNorm(d_inner, **dd)
        self.out_proj = nn.Linear(d_inner, d_model, bias=bias, **dd)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        # Optimisers that honour this flag (the release's, ours) skip weight decay here.
        self.A_logs._no_weight_decay = True
        self.Ds._no_weight_decay = True
        self._init_ssm_parameters(dt_min, dt_max, dt_init, dt_scale, dt_init_floor)

    @torch.no_grad()
    def _init_ssm_parameters(self, dt_min, dt_max, dt_init, dt_scale, dt_init_floor) -> None:
        """Mamba's initialisation, with the distributions the release uses."""
        # The release creates x_proj as an nn.Linear and keeps its default weights: U(±1/sqrt(fan_in)).
        bound = self.d_inner**-0.5
        self.x_proj_weight.uniform_(-bound, bound)
        # Δ's projection keeps the variance of its input; its bias starts softplus(bias)
        # log-uniform in [dt_min, dt_max], so every channel starts with its own time scale.
        std = self.dt_rank**-0.5 * dt_scale
        if dt_init == "constant":
            self.dt_projs_weight.fill_(std)
        else:
            self.dt_projs_weight.uniform_(-std, std)
        dt = torch.exp(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        self.dt_projs_bias.copy_((dt + torch.log(-torch.expm1(-dt))).unsqueeze(0))  # softplus⁻¹(dt)
        # S4D-real: A = -1 for the single state; D starts as an identity skip.
        self.A_logs.copy_(torch.log(torch.arange(1, self.d_state + 1, dtype=torch.float32)).expand(self.d_inner, -1))
        self.Ds.fill_(1.0)

    def build_tree(self, guide: torch.Tensor) -> TreeOrder:
        """The tree this block scans along, from ``guide (B, d_inner, H, W)``, rooted as set.

        "tree": the minimum spanning tree of the 4-connected grid weighted by ``metric``
        between neighbouring guide features; "raster": the raster-order chain.
        """
        batch, _, height, width = guide.shape
        if self.scan == "tree":
            edges = tree_scan.grid_mst(guide, self.metric)
        elif self.root != "last":
            # The chain rooted at its first pixel: made once per size, no tree walk.
            return tree_scan.chain(batch, height * width, guide.device)
        else:
            edges = raster_chain(batch, height, width, guide.device)
        return self.order(edges, height * width)

    def order(self, edges: torch.Tensor, length: int) -> TreeOrder:
        """The spanning tree ``edges (B, length - 1, 2)`` rooted at this block's root, ready to scan."""
        root = length - 1 if self.root == "last" else 0
        # validate=False: the edges are a spanning tree by construction (grid_mst, raster_chain).
        return tree_scan.prepare(edges, length, root=root, validate=False)

    def scan_along(self, u: torch.Tensor, decay: torch.Tensor, tree: TreeOrder) -> torch.Tensor:
        """``h`` from the scan input ``u`` and per-pixel decay ``Ā``, both ``(B, d_inner, L)``."""
        if self.root == "all":
            return tree_scan.tree_scan(u, decay, tree)
        return tree_scan.tree_scan_causal(u, decay, tree)

    def forward(self, x: torch.Tensor, tree: TreeOrder | None = None) -> tuple[torch.Tensor, TreeOrder]:
        """``x (B, H, W, d_model)`` -> ``(out (B, H, W, d_model), tree)``.

        ``tree``: a :class:`tree_scan.TreeOrder` over the ``H*W`` pixels to scan along
        instead of building one (a stage sharing one tree); the tree used is returned.
        """
        if x.dim() != 4 or x.shape[-1] != self.d_model:
            raise ValueError(f"`x` must be (B, H, W, C) channels-last with C = d_model = {self.d_model}; "
                             f"got shape {tuple(x.shape)}")
        batch, height, width, _ = x.shape
        length = height * width

        # Projections. The conv runs on a channels-first view of the channels-last
        # tensor, so the (B, L, d_inner) view below needs no copy.
        x, z = self.in_proj(x).chunk(2, dim=-1)
        z = self.act(z)
        x = x.permute(0, 3, 1, 2)
        if self.d_conv > 1:
            x = self.conv2d(x)
        x = self.act(x)
        xs = x.permute(0, 2, 3, 1).reshape(batch, length, self.d_inner)
        dt, b, c = F.linear(xs, self.x_proj_weight[0]).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.linear(dt, self.dt_projs_weight[0])

        # From here to out_norm: float32 at least (as the release), under autocast too.
        # Devices without autocast (meta: shape-only runs) have none to switch off.
        acc = torch.promote_types(x.dtype, torch.float32)
        no_autocast = (torch.autocast(device_type=x.device.type, enabled=False)
                       if torch.amp.is_autocast_available(x.device.type) else contextlib.nullcontext())
        with no_autocast:
            xs, dt, b, c = xs.to(acc), dt.to(acc), b.to(acc), c.to(acc)
            delta = F.softplus(dt + self.dt_projs_bias[0].to(acc))
            a = -torch.exp(self.A_logs.to(acc)[:, 0])
            u = delta * b * xs
            decay = torch.exp(delta * a)

            # Tree: built here from the scan's own input features (unless one was given).
            if tree is None:
                tree = self.build_tree(xs.transpose(1, 2).view(batch, self.d_inner, height, width))

            # Scan, over (B, d_inner, L) views of the (B, L, d_inner) tensors.
            h = self.scan_along(u.transpose(1, 2), decay.transpose(1, 2), tree).transpose(1, 2)

            # Norms: h_norm before the C read-out, out_norm after the D skip.
            y = c * _layer_norm(self.h_norm, h) + self.Ds.to(acc) * xs
            y = _layer_norm(self.out_norm, y)

        # Gate.
        y = y.to(x.dtype).view(batch, height, width, self.d_inner) * z
        return self.dropout(self.out_proj(y)), tree

    def __prepare_scriptable__(self):
        # torch.jit.script calls this on every submodule before compiling: say why it cannot
        # work instead of failing deep inside the compiler.
        raise RuntimeError(
            "Tree_SSM (and so GrootV) cannot be compiled with torch.jit.script: the tree operators take and "
            "return Python structures (tree_scan.TreeOrder) and check their arguments in Python, which TorchScript "
            "cannot compile, and PyTorch has deprecated TorchScript. Use torch.export.export(model, (images,)) "
            "or torch.compile instead."
        )
