"""Draw what one GrootV block's tree scan connects a pixel to (the paper's Fig. 4).

For an image and a pixel, the affinity of every other pixel j is S(i, j): the product,
averaged over channels, of the block's per-pixel decays Ā = exp(ΔA) along the path from
i to j — the weight with which x_j enters the scan's output at i. It is drawn twice:
along the block's tree (a minimum spanning tree of its features, which follows the
image's structure) and along the raster-order chain a plain sequence scan would use,
with the same decays. Both use the block's own scan: with root "all" every pixel
reaches i; with root "first"/"last" only those below i in the tree rooted there do.
A second PNG draws the tree itself over the image.

    python scripts/visualize_affinity.py --image photo.jpg --pixel 120 100 --out assets/affinity
    python scripts/visualize_affinity.py --image photo.jpg --checkpoint grootv_t_1k_224.pth --ema

writes ``<out>_affinity.png`` and ``<out>_tree.png``. Without --checkpoint the model has
random weights (seeded): the tree still follows the image, the decays are their
initial values. With --checkpoint the model is the one the checkpoint describes: the
config that this project's training and the release record (widths, depths, variants,
image size and normalisation), or for a bare state_dict the shapes of its weights; the
number of classes is that of its head. --model (and --num-classes) override it. The file is
read as weights only (tensors, plain values, the release's yacs config); --trusted lets
it unpickle anything else.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import timm
import torch
from PIL import Image

import grootv
import tree_scan
from grootv.checkpoint import extract_state_dict, read_checkpoint
from grootv.classification.errors import PipelineError
from grootv.classification.model import model_for_checkpoint
from grootv.models.tree_ssm import raster_chain

# Without a checkpoint (or one that records no config): timm's grootv_tiny and its view.
DEFAULT_MODEL = "grootv_tiny"


def load_image(path: str, size: int, crop_pct: float, mean, std) -> tuple[torch.Tensor, np.ndarray]:
    """The model's evaluation view of an image: resize to size / crop_pct, centre crop.

    Returns the normalised ``(1, 3, size, size)`` tensor and the crop as uint8 RGB.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--image not found: {path!r}")
    image = Image.open(path).convert("RGB")
    scale = int(round(size / crop_pct)) / min(image.size)
    image = image.resize((max(size, round(image.width * scale)), max(size, round(image.height * scale))),
                         Image.BICUBIC)
    left, top = (image.width - size) // 2, (image.height - size) // 2
    crop = np.array(image.crop((left, top, left + size, top + size)))
    tensor = torch.from_numpy(crop).permute(2, 0, 1).float().div(255)
    tensor = (tensor - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    return tensor.unsqueeze(0), crop


def capture_block(model, image: torch.Tensor, level: int, block: int):
    """Run the model; return the decays ``(D, H*W)``, tree and grid ``(H, W)`` of one block's scan."""
    if not 0 <= level < len(model.levels):
        raise ValueError(f"--level must be in [0, {len(model.levels)}), got {level}")
    if not 0 <= block < len(model.levels[level].blocks):
        raise ValueError(f"--block must be in [0, {len(model.levels[level].blocks)}) at level {level}, got {block}")
    ssm = model.levels[level].blocks[block].TreeSSM
    seen = {}
    scan_along = ssm.scan_along

    # An instance attribute shadows the method for this one block: the scan's own
    # inputs are recorded without a second copy of the block's arithmetic.
    def recording_scan(u, decay, tree):
        seen.update(decay=decay[0].detach(), tree=tree)
        return scan_along(u, decay, tree)

    ssm.scan_along = recording_scan
    grid = ssm.register_forward_pre_hook(lambda module, args: seen.update(grid=tuple(args[0].shape[1:3])))
    try:
        with torch.no_grad():
            model(image)
    finally:
        del ssm.scan_along
        grid.remove()
    return seen["decay"], seen["tree"], seen["grid"]


def affinity(decay: torch.Tensor, order: tree_scan.TreeOrder, pixel: int, scan) -> torch.Tensor:
    """``S(pixel, j)`` for every j, averaged over channels, of ``scan(u, decay, order)``
    (a mixer's ``scan_along``).

    The scan is linear in ``u``, so ``S(pixel, j)`` is the derivative of its output at
    ``pixel`` by ``u_j``: one backward pass gives every j, for the symmetric all-roots
    scan and for the one-way causal scan alike.
    """
    u = torch.zeros_like(decay).unsqueeze(0).requires_grad_()
    with torch.enable_grad():
        out = scan(u, decay.unsqueeze(0), order)
        (grad,) = torch.autograd.grad(out[0, :, pixel].sum(), u)
    return grad[0].mean(0)


def affinity_maps(ssm, decay: torch.Tensor, tree: tree_scan.TreeOrder, grid, pixel: int) -> dict[str, np.ndarray]:
    """The block's scan along its own tree and along the raster chain (rooted as the block roots)."""
    chain = ssm.order(raster_chain(1, *grid), grid[0] * grid[1])
    name = "tree" if ssm.scan == "tree" else "raster (the model's)"
    roots = "" if ssm.root == "all" else f", root {ssm.root}"
    return {f"{name} scan affinity{roots}": affinity(decay, tree, pixel, ssm.scan_along).numpy(),
            f"raster scan affinity{roots}": affinity(decay, chain, pixel, ssm.scan_along).numpy()}


def first_tree(order: tree_scan.TreeOrder) -> tree_scan.TreeOrder:
    return tree_scan.TreeOrder(order.order[:1], order.parent[:1])


def draw(crop: np.ndarray, pixel_xy, maps: dict[str, np.ndarray], tree_edges: np.ndarray, grid, stride: float,
         prefix: str, title: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    size = crop.shape[0]
    extent = (0, size, size, 0)
    grey = crop.mean(axis=2)
    figure, axes = plt.subplots(1, 1 + len(maps), figsize=(3.2 * (1 + len(maps)), 3.5))
    axes[0].imshow(crop)
    axes[0].set_title("input")
    for axis, (name, values) in zip(axes[1:], maps.items()):
        axis.imshow(grey, cmap="gray", extent=extent)
        axis.imshow(values.reshape(grid), cmap="jet", alpha=0.6, extent=extent, vmin=0, vmax=values.max())
        axis.set_title(name)
    for axis in axes:
        axis.plot(*pixel_xy, marker="*", color="white", markeredgecolor="black", markersize=14)
        axis.axis("off")
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    affinity_png = f"{prefix}_affinity.png"
    figure.savefig(affinity_png, dpi=100)
    plt.close(figure)

    # Tree edges between cell centres, in image coordinates.
    rows, cols = np.divmod(tree_edges, grid[1])
    segments = np.stack([(cols + 0.5) * stride, (rows + 0.5) * stride], axis=-1)
    figure, axis = plt.subplots(figsize=(5, 5))
    axis.imshow(crop)
    axis.add_collection(LineCollection(segments, colors="cyan", linewidths=0.8, alpha=0.9))
    axis.plot(*pixel_xy, marker="*", color="white", markeredgecolor="black", markersize=14)
    axis.set_xlim(0, size)
    axis.set_ylim(size, 0)
    axis.axis("off")
    axis.set_title(f"the scan's tree ({grid[0]}x{grid[1]} grid)", fontsize=9)
    figure.tight_layout()
    tree_png = f"{prefix}_tree.png"
    figure.savefig(tree_png, dpi=100)
    plt.close(figure)
    return [affinity_png, tree_png]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", required=True, help="an image file (any size; centre-cropped)")
    parser.add_argument("--pixel", type=int, nargs=2, metavar=("ROW", "COL"),
                        help="in the img-size crop; default: its centre")
    parser.add_argument("--model", help=f"timm name (default: what --checkpoint describes, else {DEFAULT_MODEL})")
    parser.add_argument("--checkpoint", help="weights (the release's files or ours); default: random, seeded")
    parser.add_argument("--num-classes", type=int,
                        help="classes of --model's head (default: the checkpoint's, else 1000)")
    parser.add_argument("--ema", action="store_true", help="take the checkpoint's model_ema entry")
    parser.add_argument("--trusted", action="store_true",
                        help="let the checkpoint file unpickle any object (only for files you trust)")
    parser.add_argument("--level", type=int, default=0, help="stage of the block (0 = stride 4)")
    parser.add_argument("--block", type=int, default=0, help="block within the stage")
    parser.add_argument("--img-size", type=int,
                        help="crop size (default: the size the checkpoint was trained at, else 224)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="affinity", help="output prefix (default ./affinity)")
    return parser.parse_args(argv)


def build_model(args: argparse.Namespace, checkpoint) -> tuple[torch.nn.Module, str, dict]:
    """The model to draw, its name, and how it sees an image (size, crop_pct, mean, std)."""
    use_ema = True if args.ema else None
    if checkpoint is not None and args.model is None:
        try:
            model, config = model_for_checkpoint(checkpoint, args.checkpoint, use_ema)
        except PipelineError as error:
            raise ValueError(str(error)) from None
        name = config.MODEL.TYPE if config.MODEL.TYPE != "grootv" else (
            f"GrootV ({config.MODEL.GROOTV.CHANNELS} channels, depths {list(config.MODEL.GROOTV.DEPTHS)})")
        # The pipeline's evaluation view: short side resized to the size, centre crop.
        view = {"size": config.DATA.IMG_SIZE, "crop_pct": 1.0, "mean": config.AUG.MEAN, "std": config.AUG.STD}
    else:
        name = args.model or DEFAULT_MODEL
        num_classes = args.num_classes
        if num_classes is None:
            head = extract_state_dict(checkpoint, use_ema).get("head.weight") if checkpoint is not None else None
            num_classes = 1000 if head is None else head.shape[0]
        model = timm.create_model(name, num_classes=num_classes)
        cfg = model.pretrained_cfg
        view = {"size": cfg["input_size"][-1], "crop_pct": cfg["crop_pct"], "mean": cfg["mean"], "std": cfg["std"]}
    if not hasattr(model, "levels"):
        raise ValueError(f"{name} is not a GrootV model: there are no tree scans to draw")
    if checkpoint is not None:
        grootv.load_checkpoint(model, checkpoint, use_ema=use_ema)
    if args.img_size is not None:
        view["size"] = args.img_size
    return model.eval(), name, view


def main(argv=None) -> list[str]:
    args = parse_args(argv)
    if args.img_size is not None and args.img_size < 32:
        raise ValueError(f"--img-size must be at least 32, got {args.img_size}")
    torch.manual_seed(args.seed)
    checkpoint = None
    if args.checkpoint:
        checkpoint = read_checkpoint(args.checkpoint, trusted=args.trusted, trust_hint="add --trusted")
    model, model_name, view = build_model(args, checkpoint)
    size = view["size"]
    image, crop = load_image(args.image, size, view["crop_pct"], view["mean"], view["std"])
    row, col = args.pixel if args.pixel else (size // 2, size // 2)
    if not (0 <= row < size and 0 <= col < size):
        raise ValueError(f"--pixel must lie in the {size}x{size} crop, got {row} {col}")

    decay, tree, grid = capture_block(model, image, args.level, args.block)
    stride = size / grid[0]
    pixel = min(int(row / stride), grid[0] - 1) * grid[1] + min(int(col / stride), grid[1] - 1)
    tree = first_tree(tree)
    ssm = model.levels[args.level].blocks[args.block].TreeSSM
    maps = affinity_maps(ssm, decay, tree, grid, pixel)
    children = torch.nonzero(tree.parent[0] >= 0).squeeze(1)
    edges = torch.stack([children, tree.parent[0, children]], 1).numpy()
    weights = (f"checkpoint {os.path.basename(args.checkpoint)}" if args.checkpoint
               else f"random weights, seed {args.seed}")
    title = f"{model_name}, level {args.level} block {args.block}, {weights}"
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    paths = draw(crop, (col, row), maps, edges, grid, stride, args.out, title)
    for path in paths:
        print(path)
    return paths


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
