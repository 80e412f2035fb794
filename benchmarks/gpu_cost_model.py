"""The GPU scans on paper: launches, dependent steps and bytes, before any GPU times them.

For each shape that matters (GrootV-T's four stages at B = 128, Mask R-CNN's and
UperNet's stage 1, GrootL-130m), this builds real trees on the CPU (grid MSTs of random
and of smooth guides; GrootL's chain and language trees), plans them with
``tree_scan.heavy_paths`` exactly as a GPU would, and counts per scan:

  * kernel launches: the Triton scan is one kernel (forward) or one (backward); the
    plan (``triton_plan``, what a GPU runs; here in Triton's interpreter) is counted as
    launched: its Triton kernels and torch's operations (sorts, prefix sums, fills);
  * dependent steps: what one program of the kernel must do one after the other — per
    round, one prefix scan of log2(BLOCK_N) steps and one carry per chunk of BLOCK_N
    elements — against the old CUDA kernel's one thread per (image, channel) walking all
    V vertices four times (all-roots forward; three times causal);
  * bytes: what the kernel reads and writes in device memory (inputs, scratch, outputs,
    the plan once per image: its other channel blocks find it in L2), from the plan's
    actual element counts, against the floor (inputs read once, output written once) and
    the time that floor takes at the H200's 4.3 TB/s.

The tile sizes are those ``triton_scan.tile_sizes`` picks on an H200 (132 multiprocessors).

    python benchmarks/gpu_cost_model.py            # prints the markdown tables
"""

from __future__ import annotations

import argparse
import math
import os
from collections import Counter

os.environ.setdefault("TRITON_INTERPRET", "1")  # the GPU plan's kernels, run on the CPU to count them

import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode

import tree_scan  # noqa: E402
import tree_scan_lan  # noqa: E402
from tree_scan import heavy_paths, triton_plan, triton_scan  # noqa: E402
from tree_scan.heavy_paths import ENTRY, HEAD, KIND, PATH_VERTEX  # noqa: E402

HBM_BYTES_PER_SECOND = 4.3e12  # measured on the lent H200 (device library, H200.md)
H200_MULTIPROCESSORS = 132
FLOAT = 4

# name, batch, channels, height, width (vision: all-roots scans of grid MSTs)
VISION = [
    ("GrootV-T stage 1", 128, 160, 56, 56),
    ("GrootV-T stage 2", 128, 320, 28, 28),
    ("GrootV-T stage 3", 128, 640, 14, 14),
    ("GrootV-T stage 4", 128, 1280, 7, 7),
    ("UperNet stage 1 (512²)", 2, 160, 128, 128),
    ("Mask R-CNN stage 1 (800×1344)", 2, 160, 200, 336),
]
GROOTL = ("GrootL-130m", 8, 1536 * 16, 512)  # name, batch, d_inner * d_state channels, tokens


class CountLaunches(TorchDispatchMode):
    """Counts the tensor operations that would launch a kernel (views and allocations launch
    none) and the bytes they touch (inputs read, outputs written; an upper bound: caches
    are ignored)."""

    NO_LAUNCH = {"view", "expand", "unsqueeze", "squeeze", "permute", "transpose", "slice", "select", "_unsafe_view",
             "alias", "detach", "t", "as_strided", "unbind", "split", "split_with_sizes", "reshape", "flatten",
             "empty", "empty_like", "new_empty", "empty_strided", "lift_fresh"}

    def __init__(self):
        super().__init__()
        self.ops, self.bytes, self.paused = Counter(), 0, False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        if name not in self.NO_LAUNCH and not self.paused:
            self.ops[name] += 1
            tensors = [a for a in list(args) + list((kwargs or {}).values()) if isinstance(a, torch.Tensor)]
            outputs = out if isinstance(out, (tuple, list)) else [out]
            self.bytes += sum(t.numel() * t.element_size() for t in tensors + [o for o in outputs
                                                                                  if isinstance(o, torch.Tensor)])
        return out


def grid_trees(batch: int, height: int, width: int, generator) -> torch.Tensor:
    """Half random guides, half smooth ones (features blurred over the image)."""
    guide = torch.randn(batch, 8, height, width, generator=generator)
    smooth = torch.nn.functional.avg_pool2d(guide, 9, stride=1, padding=4)
    guide[batch // 2:] = smooth[batch // 2:]
    return tree_scan.grid_mst(guide)


def depth(parent: torch.Tensor) -> int:
    """Levels of the deepest tree (what a level-by-level BFS or scan steps through)."""
    level = torch.zeros_like(parent)
    ancestor = parent.clone()
    while bool((ancestor >= 0).any()):
        level += (ancestor >= 0).long()
        ancestor = torch.where(ancestor >= 0, parent.gather(1, ancestor.clamp(min=0)), -1)
    return int(level.max()) + 1


def plan_statistics(tree: torch.Tensor, num_vertices: int) -> dict:
    """The plan of ``tree`` as a GPU makes it, with its launches and the bytes they touch."""
    counter, kernels = CountLaunches(), []
    launch = triton_plan._launch

    def counted(kernel, grid):
        run = launch(kernel, grid)

        def call(*args, **kwargs):  # bytes: every tensor argument read or written once
            kernels.append(sum(a.numel() * a.element_size() for a in args if isinstance(a, torch.Tensor)))
            counter.paused = True  # the interpreter's own tensor operations are no launches
            try:
                return run(*args, **kwargs)
            finally:
                counter.paused = False

        return call

    triton_plan._launch = counted
    try:
        preferred = torch.zeros(tree.shape[0], num_vertices, dtype=torch.bool)
        preferred[:, 0] = True
        with counter:
            _, parent, layout = triton_plan.plan(tree, num_vertices, preferred)
    finally:
        triton_plan._launch = launch
    kinds = layout.elements[:, KIND]
    rounds = layout.rounds.long()
    per_round = rounds[:, 1:] - rounds[:, :-1]
    return {
        "parent": parent,
        "elements": int((kinds != heavy_paths.PADDING).sum(1).max()),
        "entries": int((kinds == ENTRY).sum(1).float().mean()),
        "heads": int((kinds == HEAD).sum(1).float().mean()),
        "path_vertices": int((kinds == PATH_VERTEX).sum(1).float().mean()),
        "rounds_used": int((per_round > 0).sum(1).max()),
        "per_round": per_round,
        "plan_launches": len(kernels) + sum(counter.ops.values()),
        "plan_bytes_per_image": (sum(kernels) + counter.bytes) / tree.shape[0],
    }


def scan_costs(stats: dict, batch: int, channels: int, length: int, all_roots: bool) -> dict:
    block_c, block_n = triton_scan.tile_sizes(batch, channels, H200_MULTIPROCESSORS)
    # Sequential steps of one program: per round and chunk a prefix scan and a carry; going
    # up (and down for the all-roots scan). The heaviest image sets the pace.
    chunks = torch.ceil(stats["per_round"].double() / block_n).sum(1).max().item()
    sweeps = 2 if all_roots else 1
    steps = sweeps * chunks * (math.log2(block_n) + 1)
    programs = batch * math.ceil(channels / block_c)
    values = batch * channels * FLOAT  # bytes of one value per vertex, over the batch
    entries, heads, path = stats["entries"], stats["heads"], stats["path_vertices"]
    up = values * (length + path + 2 * entries)  # x; w of the next vertex; an entry's w and subtree
    up += values * (length if all_roots else heads)  # scratch: every vertex, or the heads (causal)
    up += 0 if all_roots else values * length  # causal: the output
    down = values * (length + length + heads + entries + length) if all_roots else 0  # w, a, parents, kept, out
    # The plan: 4 int32 rows (and the next element's kind and vertex) per element, read from
    # memory once per image; every further channel block of the image reads it from L2.
    plan = batch * stats["elements"] * 6 * 4
    floor = 3 * values * length
    return {"block": f"{block_c}×{block_n}", "programs": programs, "steps": steps,
            "bytes": up + down + plan, "floor": floor}


def old_kernel_costs(batch: int, channels: int, length: int, all_roots: bool) -> dict:
    """csrc/cuda/scan.cu (deleted): a thread per (image, channel), 256 to a block, walking
    every vertex in BFS order: load, up, (down), store."""
    threads = batch * channels
    values = batch * channels * FLOAT * length
    # load x (read, write scratch); up: w, a_k, a_p read, a_p written; down: w, a_k, a_p read,
    # a_k written; store: a read, out written; plus the order and parent positions (int64/int32).
    touches = 2 + 4 + (4 if all_roots else 0) + 2
    return {"launches": 3, "steps": (4 if all_roots else 3) * length, "threads": threads,
            "bytes": touches * values + batch * length * (8 + 4)}


def fused_selective_costs(batch: int, length: int, inner: int, state: int, stats: dict) -> str:
    """GrootL's fused selective tree scan (tree_scan_lan.triton_selective), forward, float32:
    the device-memory bytes of its two passes (chain, tree) against the floor, and against the
    unfused path, which forms u, the decays and the states (B, L, d, N) per scan."""
    from tree_scan_lan import triton_selective

    block_d, padded, block_n = triton_selective._tiles(state, torch.device("cuda"))
    per_d = batch * length * inner * FLOAT  # one (B, L, d) float32 tensor
    per_n = batch * length * state * FLOAT
    # chain: x, delta read, y written; tree: x, delta read again, y read and written; y to its dtype
    fused = 2 * per_d + per_d + 2 * per_d + 2 * per_d + per_d + 2 * per_n
    floor = 3 * per_d + 2 * per_n  # x, delta, B, C read once, y written once
    full = batch * length * inner * state * FLOAT
    # unfused: u and the decays formed (2 writes), each scan reads them and writes its states
    # (2 x 3), the sum and the read-out read the states (3)
    unfused = 2 * full + 6 * full + 3 * full
    chunks = math.ceil(length / block_n) + torch.ceil(stats["per_round"].double() / block_n).sum(1).max().item()
    steps = chunks * (math.log2(block_n) + 1)
    return (f"| GrootL, B = {batch}, L = {length:,}, d_inner = {inner:,}, N = {state} | {block_d}×{padded}×{block_n} "
            f"| {steps:,.0f} | {human_bytes(fused)} | {human_bytes(floor)} | {microseconds(floor)} "
            f"| {fused / floor:.1f}× | {human_bytes(unfused)} |")


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def microseconds(num_bytes: float) -> str:
    return f"{num_bytes / HBM_BYTES_PER_SECOND * 1e6:.0f} µs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=4, help="trees planned per shape (half smooth guides)")
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    torch.set_num_threads(max(torch.get_num_threads(), 1))

    rows, building = [], []
    shapes = [(name, batch, channels, h * w, lambda h=h, w=w: grid_trees(args.samples, h, w, generator), True)
              for name, batch, channels, h, w in VISION]
    name, batch, channels, tokens = GROOTL
    features = torch.randn(args.samples, 64, tokens, generator=generator)
    language = tree_scan_lan.language_tree(features, torch.randint(tokens // 4, tokens, (args.samples,),
                                                                   generator=generator))
    shapes.append((f"{name} chain (tree_scan.chain: planned once per length)", batch, channels, tokens,
                   lambda: tree_scan_lan.chain_tree(args.samples, tokens), False))
    shapes.append((f"{name} tree", batch, channels, tokens, lambda: language, False))

    for name, batch, channels, length, make, all_roots in shapes:
        tree = make()
        stats = plan_statistics(tree, length)
        new = scan_costs(stats, batch, channels, length, all_roots)
        old = old_kernel_costs(batch, channels, length, all_roots)
        levels = depth(stats["parent"])
        rows.append(
            f"| {name} | {'all-roots' if all_roots else 'causal'} | {batch} × {channels} × {length:,} "
            f"| {stats['rounds_used']} of {length.bit_length()} | {stats['elements']:,} | {new['block']} "
            f"| {new['programs']:,} | 1 / {old['launches']} | {new['steps']:,.0f} / {old['steps']:,} "
            f"| {human_bytes(new['bytes'])} / {human_bytes(old['bytes'])} | {human_bytes(new['floor'])} "
            f"| {microseconds(new['floor'])} | {new['bytes'] / new['floor']:.2f}× |"
        )
        pointer_jumps = heavy_paths._doubling_rounds(2 * length)
        building.append(
            f"| {name} | {levels:,} | {pointer_jumps} | {stats['plan_launches']} "
            f"| {human_bytes(stats['plan_bytes_per_image'] * batch)} "
            f"| {microseconds(stats['plan_bytes_per_image'] * batch)} |"
        )

    print("| shape | scan | B × C × V | rounds used (of room) | elements | tile C×N | programs "
          "| launches new / old | dependent steps new / old | bytes new / old | floor | floor at 4.3 TB/s "
          "| new ÷ floor |")
    print("|" + "---|" * 13)
    print("\n".join(rows))
    print()
    print("| shape | tree depth (BFS levels, old scan steps ∝) | pointer-jumping rounds of the plan "
          "| plan: launches | plan: bytes touched, batch | at 4.3 TB/s |")
    print("|" + "---|" * 6)
    print("\n".join(building))
    print()
    print("| fused selective tree scan, forward | tile d×N×tokens | sequential steps of a program | bytes "
          "| floor | floor at 4.3 TB/s | ÷ floor | unfused path's bytes |")
    print("|" + "---|" * 8)
    for inner, length, batch in ((1536, 512, 8), (4096, 2048, 1)):
        features = torch.randn(args.samples, 64, length, generator=generator)
        tree = tree_scan_lan.language_tree(features, torch.full((args.samples,), length // 2))
        print(fused_selective_costs(batch, length, inner, 16, plan_statistics(tree, length)))


if __name__ == "__main__":
    main()
