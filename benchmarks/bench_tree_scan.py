"""Tree-operator benchmark at the shapes GrootV-T meets, with a memory floor in the same run.

For every stage of GrootV-T (channels 160/320/640/1280 at 56²/28²/14²/7²) and batch
sizes 8 and 128, it times the grid edge weights, the MST, the BFS, the all-roots scan
forward, and forward+backward, for each implementation present: the plain-PyTorch
reference, the compiled CPU kernels and (where a GPU is present) the CUDA kernels.
Scans are timed on channels-last inputs ("cl": (B, L, C) in memory, as GrootV and
GrootL pass them) and on plain (B, C, L) ones.

The floor of an operator is the time to copy as many bytes as it must at least move
(each input read once, each output written once), measured now on the same device:
``x floor`` says how far the operator is from memory bandwidth.

    python benchmarks/bench_tree_scan.py                 # the whole table
    python benchmarks/bench_tree_scan.py --quick         # B=8 only, fewer repeats
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import tree_scan
from tree_scan import reference

STAGES = [(160, 56), (320, 28), (640, 14), (1280, 7)]


def timed(fn, device: str, repeats: int) -> float:
    """Median seconds per call, after a warm-up call (medians: this machine's timings jitter)."""
    fn()
    samples = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def copy_floor(num_bytes: int, device: str, repeats: int) -> float:
    """Seconds to copy a buffer so that reads + writes move ``num_bytes``."""
    elements = max(num_bytes // 2 // 4, 1)
    src = torch.rand(elements, device=device)
    dst = torch.empty_like(src)
    return timed(lambda: dst.copy_(src), device, repeats)


class Implementation:
    """The operators of one implementation, called the way the models call them."""

    def __init__(self, name: str, device: str):
        self.name, self.device = name, device
        ops = torch.ops.tree_scan
        if name == "reference":
            self.mst, self.bfs = reference.minimum_spanning_tree, reference.bfs
            self.scan, self.scan_backward = reference.scan_all_roots, reference.scan_all_roots_backward
        else:
            self.mst, self.bfs = ops.minimum_spanning_tree, ops.bfs
            self.scan, self.scan_backward = ops.scan_all_roots, ops.scan_all_roots_backward


def rows_for(impl: Implementation, batch: int, channels: int, side: int, repeats: int, floors: dict):
    device = impl.device
    length = side * side
    generator = torch.Generator().manual_seed(0)
    guide = torch.randn(batch, channels, side, side, generator=generator).to(device)
    # The models hand the scans (B, L, C) tensors seen as (B, C, L) ("channels-last");
    # plain (B, C, L) tensors ("planar") are timed too.
    x = torch.randn(batch, channels, length, generator=generator).to(device)
    weight = torch.rand(batch, channels, length, generator=generator).to(device)
    grad = torch.randn(batch, channels, length, generator=generator).to(device)
    x_cl, weight_cl, grad_cl = (t.transpose(1, 2).contiguous().transpose(1, 2) for t in (x, weight, grad))
    edges = tree_scan.grid_edges(side, side, device).expand(batch, -1, -1)
    edge_weights = tree_scan.grid_edge_weights(guide)
    tree = impl.mst(edges, edge_weights, length)
    order, parent = impl.bfs(tree, length, 0)
    num_edges = edges.shape[1]
    n = batch * channels * length * 4  # bytes of one (B, C, L) float32 tensor

    cases = [
        # name, call, bytes it must move
        ("grid weights", lambda: tree_scan.grid_edge_weights(guide), n + batch * num_edges * 4),
        ("mst", lambda: impl.mst(edges, edge_weights, length), batch * num_edges * 4 + batch * (length - 1) * 16),
        ("bfs", lambda: impl.bfs(tree, length, 0), batch * (length - 1) * 16 + batch * length * 16),
        ("scan fwd cl", lambda: impl.scan(x_cl, weight_cl, order, parent), 3 * n),
        ("scan fwd+bwd cl", lambda: (impl.scan(x_cl, weight_cl, order, parent),
                                     impl.scan_backward(grad_cl, x_cl, weight_cl, order, parent)), 8 * n),
        ("scan fwd", lambda: impl.scan(x, weight, order, parent), 3 * n),
        ("scan fwd+bwd", lambda: (impl.scan(x, weight, order, parent),
                                  impl.scan_backward(grad, x, weight, order, parent)), 8 * n),
    ]
    for name, call, num_bytes in cases:
        if impl.name == "reference" and (name == "grid weights" or name.endswith(" cl")):
            continue  # not a different computation for the reference
        key = (device, num_bytes)
        if key not in floors:
            floors[key] = copy_floor(num_bytes, device, repeats)
        seconds = timed(call, device, repeats)
        yield name, seconds, floors[key]


def per_image_tree_time(side: int, repeats: int) -> float:
    """MST + BFS of one 56x56 image on one CPU thread, milliseconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        guide = torch.randn(1, 160, side, side)
        edges = tree_scan.grid_edges(side, side).expand(1, -1, -1)
        weights = tree_scan.grid_edge_weights(guide)

        def build():
            tree = torch.ops.tree_scan.minimum_spanning_tree(edges, weights, side * side)
            return torch.ops.tree_scan.bfs(tree, side * side, 0)

        return timed(build, "cpu", repeats) * 1e3
    finally:
        torch.set_num_threads(threads)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, nargs="+", default=[8, 128])
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--quick", action="store_true", help="B=8 only, 5 repeats")
    parser.add_argument("--reference-batch", type=int, default=8,
                        help="largest batch the (slow) reference runs at; 0 skips it")
    args = parser.parse_args()
    if args.quick:
        args.batch, args.repeats = [8], 5

    implementations = []
    if args.reference_batch > 0:
        implementations.append(Implementation("reference", "cpu"))
    if tree_scan.BACKEND != "reference":
        implementations.append(Implementation("cpu", "cpu"))
        if torch.cuda.is_available() and tree_scan.BACKEND == "cuda":
            implementations.append(Implementation("cuda", "cuda"))

    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, kernels: {tree_scan.BACKEND}"
          + (f", GPU: {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""))
    header = f"| {'op':<15} | {'B':>3} | {'C':>4} | {'H×W':>5} | {'impl':<9} | {'ms':>9} | {'floor ms':>8} | {'× floor':>7} | {'× faster than ref':>17} |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    floors: dict = {}
    reference_ms: dict = {}
    for batch in args.batch:
        for channels, side in STAGES:
            for impl in implementations:
                if impl.name == "reference" and batch > args.reference_batch:
                    continue
                for name, seconds, floor in rows_for(impl, batch, channels, side, args.repeats, floors):
                    key = (name.removesuffix(" cl"), batch, channels)  # one reference for both layouts
                    if impl.name == "reference":
                        reference_ms[key] = seconds
                    speedup = f"{reference_ms[key] / seconds:.1f}" if key in reference_ms and impl.name != "reference" else ""
                    print(f"| {name:<15} | {batch:>3} | {channels:>4} | {side}²{'':<{4 - len(str(side))}}| {impl.name:<9} | "
                          f"{seconds * 1e3:>9.3f} | {floor * 1e3:>8.3f} | {seconds / floor:>7.1f} | {speedup:>17} |", flush=True)
    if tree_scan.BACKEND != "reference":
        print(f"\nMST + BFS of one 56×56 image on one CPU thread: {per_image_tree_time(56, args.repeats):.3f} ms")


if __name__ == "__main__":
    main()
