"""GPU tables: the tree operators against a copy floor, GrootV and GrootL against their peers.

Every row is measured in this run, on this GPU, with CUDA events (median of repeats after a
warm-up); every ratio's peer or floor comes from the same run:

  1. operators at GrootV-T's four stages (B = 128), UperNet's and Mask R-CNN's stage 1
     (B = 2) and GrootL-130m (B = 8, 512 tokens, 24,576 channels): grid weights, MST, BFS,
     the GPU plan (tree_scan.prepare), the scans forward and forward + backward, each scan
     beside a device-to-device copy of the bytes it must move (inputs read once, outputs
     written once);
  2. GrootV-T, GrootV-T* (one tree per stage), GrootV-S and GrootV-B inference at 224²,
     B = 128, float32 and bfloat16 (autocast), img/s and peak memory, beside timm's
     ConvNeXt-T (4.5 GFLOPs); GrootV-T training img/s (forward, backward, AdamW step);
     the share of GrootV-T's forward spent building trees (GPU time between events
     around every Tree_SSM.build_tree);
  3. GrootL's mixer, forward + backward on a 4-layer mamba-130m slice (B = 8, 512 tokens),
     fused and unfused, beside transformers' Mamba on the same GPU.

    python benchmarks/bench_gpu.py --out DIR          # writes DIR/gpu_tables.md too
    python benchmarks/bench_gpu.py --tiny --device cpu  # a dry run of the script itself
                                                        # (CPU, TRITON_INTERPRET=1, tiny shapes)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time

import torch

import tree_scan

HBM_BYTES_PER_SECOND = 4.3e12  # the lent H200's measured device-to-device copy rate
GROOTV_T_STAGES = [(160, 56), (320, 28), (640, 14), (1280, 7)]


class Timer:
    """Median time of a callable: CUDA events on a GPU, the host clock elsewhere."""

    def __init__(self, device: torch.device, repeats: int):
        self.device, self.repeats = device, repeats

    def __call__(self, fn, warmup: int = 2) -> float:
        for _ in range(warmup):
            fn()
        samples = []
        for _ in range(self.repeats):
            if self.device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                samples.append(start.elapsed_time(end) / 1e3)
            else:
                begin = time.perf_counter()
                fn()
                samples.append(time.perf_counter() - begin)
        return statistics.median(samples)


def copy_floor(timer: Timer, num_bytes: int, device: torch.device) -> float:
    """Seconds for a device-to-device copy whose reads + writes move ``num_bytes``."""
    source = torch.rand(max(num_bytes // 8, 1), device=device)
    target = torch.empty_like(source)
    return timer(lambda: target.copy_(source))


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f}"


def operator_rows(timer: Timer, device: torch.device, tiny: bool) -> list[str]:
    generator = torch.Generator(device=device).manual_seed(0)
    shapes = [(f"GrootV-T stage {i + 1}", 128, channels, side, side) for i, (channels, side) in
              enumerate(GROOTV_T_STAGES)]
    shapes += [("UperNet stage 1 (512²)", 2, 160, 128, 128), ("Mask R-CNN stage 1 (800×1344)", 2, 160, 200, 336)]
    if tiny:
        shapes = [(name, 2, 4, 5, 6) for name, *_ in shapes[:2]]
    rows = []
    for name, batch, channels, height, width in shapes:
        length = height * width
        guide = torch.randn(batch, height, width, channels, device=device, generator=generator).permute(0, 3, 1, 2)
        x = torch.randn(batch, length, channels, device=device, generator=generator).transpose(1, 2)
        w = torch.rand(batch, length, channels, device=device, generator=generator).transpose(1, 2)
        x.requires_grad_(), w.requires_grad_()
        tree = tree_scan.grid_mst(guide)
        order = tree_scan.prepare(tree)
        grad = torch.randn_like(x)
        scan_bytes = 3 * x.numel() * x.element_size()
        timings = {
            "grid weights": timer(lambda: tree_scan.grid_edge_weights(guide)),
            "MST": timer(lambda: tree_scan.grid_mst(guide)),
            "BFS (breadth-first, level by level)": timer(lambda: tree_scan.bfs(tree)),
            "prepare (Euler tour + plan)": timer(lambda: tree_scan.prepare(tree)),
        }
        for label, seconds in timings.items():
            rows.append(f"| {name} | {label} | {batch}×{channels}×{length:,} | {ms(seconds)} | | | |")
        forward = timer(lambda: tree_scan.tree_scan(x, w, order))
        backward = timer(lambda: torch.autograd.grad(tree_scan.tree_scan(x, w, order), (x, w), grad))
        for label, seconds, num_bytes in (("scan fwd", forward, scan_bytes),
                                          ("scan fwd+bwd", backward, scan_bytes + 5 * x.numel() * x.element_size())):
            floor = copy_floor(timer, num_bytes, device)
            rows.append(f"| {name} | {label} | {batch}×{channels}×{length:,} | {ms(seconds)} | {ms(floor)} "
                        f"| {seconds / floor:.2f} | {seconds / (num_bytes / HBM_BYTES_PER_SECOND):.2f} |")
    rows += grootl_scan_rows(timer, device, tiny)
    return rows


def grootl_scan_rows(timer: Timer, device: torch.device, tiny: bool) -> list[str]:
    import tree_scan_lan

    batch, channels, length = (2, 8, 16) if tiny else (8, 1536 * 16, 512)
    generator = torch.Generator(device=device).manual_seed(1)
    x = torch.randn(batch, length, channels, device=device, generator=generator).transpose(1, 2)
    w = torch.rand(batch, length, channels, device=device, generator=generator).transpose(1, 2)
    x.requires_grad_(), w.requires_grad_()
    grad = torch.randn_like(x)
    features = torch.randn(batch, 64, length, device=device, generator=generator)
    lengths = torch.full((batch,), length // 2, device=device)
    trees = {"chain": tree_scan_lan.chain(batch, length, device),
             "language tree": tree_scan_lan.prepare(tree_scan_lan.language_tree(features, lengths))}
    rows = [f"| GrootL-130m | language tree + plan | {batch}×{channels}×{length} "
            f"| {ms(timer(lambda: tree_scan_lan.prepare(tree_scan_lan.language_tree(features, lengths))))} | | | |"]
    scan_bytes = 3 * x.numel() * x.element_size()
    for name, order in trees.items():
        forward = timer(lambda: tree_scan.tree_scan_causal(x, w, order))
        backward = timer(lambda: torch.autograd.grad(tree_scan.tree_scan_causal(x, w, order), (x, w), grad))
        for label, seconds, num_bytes in ((f"causal scan fwd, {name}", forward, scan_bytes),
                                          (f"causal scan fwd+bwd, {name}", backward,
                                           scan_bytes + 5 * x.numel() * x.element_size())):
            floor = copy_floor(timer, num_bytes, device)
            rows.append(f"| GrootL-130m | {label} | {batch}×{channels}×{length} | {ms(seconds)} | {ms(floor)} "
                        f"| {seconds / floor:.2f} | {seconds / (num_bytes / HBM_BYTES_PER_SECOND):.2f} |")
    return rows


@contextlib.contextmanager
def tree_building_timer(device: torch.device):
    """GPU time of every Tree_SSM.build_tree in the block, from events recorded around them."""
    from grootv.models.tree_ssm import Tree_SSM

    original, spans = Tree_SSM.build_tree, []

    def timed(self, guide):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        tree = original(self, guide)
        end.record()
        spans.append((start, end))
        return tree

    Tree_SSM.build_tree = timed if device.type == "cuda" else original
    try:
        yield spans
    finally:
        Tree_SSM.build_tree = original


def model_rows(timer: Timer, device: torch.device, tiny: bool) -> tuple[list[str], list[str]]:
    import timm

    import grootv  # noqa: F401  (registers the models)

    batch, size = (2, 32) if tiny else (128, 224)
    images = torch.randn(batch, 3, size, size, device=device)
    models = {"ConvNeXt-T (timm)": ("convnext_tiny", {}), "GrootV-T": ("grootv_tiny", {}),
              "GrootV-T* (tree per stage)": ("grootv_tiny", {"share_tree": True}),
              "GrootV-S": ("grootv_small", {}), "GrootV-B": ("grootv_base", {})}
    if tiny:
        models = {k: v for k, v in models.items() if k in ("ConvNeXt-T (timm)", "GrootV-T")}
    rows, peer = [], {}
    for dtype in (torch.float32, torch.bfloat16):
        for label, (name, kwargs) in models.items():
            model = timm.create_model(name, **kwargs).to(device).eval()
            autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)

            def infer():
                with torch.no_grad(), autocast:
                    model(images)

            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            seconds = timer(infer)
            peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
            throughput = batch / seconds
            peer.setdefault(dtype, throughput)
            rows.append(f"| {label} | {str(dtype).replace('torch.', '')} | {batch} | {throughput:,.0f} "
                        f"| {throughput / peer[dtype]:.2f} | {peak:,.0f} |")
            del model
    notes = []
    model = timm.create_model("grootv_tiny").to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    labels = torch.randint(0, 1000, (batch,), device=device)

    def step():
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    notes.append(f"GrootV-T training (forward, backward, AdamW step), float32, B = {batch}: "
                 f"{batch / timer(step, warmup=1):,.0f} img/s")
    if device.type == "cuda":
        model.eval()
        with torch.no_grad(), tree_building_timer(device) as spans:
            timer(lambda: model(images), warmup=1)
            spans.clear()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            model(images)
            end.record()
            end.synchronize()
        building = sum(s.elapsed_time(e) for s, e in spans)
        notes.append(f"GrootV-T inference, float32, B = {batch}: {building:.2f} ms of {start.elapsed_time(end):.2f} ms "
                     f"building trees ({100 * building / start.elapsed_time(end):.1f} %; the original: about 28 % on a "
                     "V100)")
    return rows, notes


def grootl_rows(timer: Timer, device: torch.device, tiny: bool) -> list[str]:
    from transformers import MambaConfig
    from transformers.models.mamba.modeling_mamba import MambaBlock

    from grootl.configuration import GrootLMambaConfig
    from grootl.modeling import GrootLMambaBlock

    shape = dict(hidden_size=64, state_size=16, expand=2, conv_kernel=4, num_hidden_layers=2) if tiny else \
        dict(hidden_size=768, state_size=16, expand=2, conv_kernel=4, num_hidden_layers=4)
    batch, length = (2, 16) if tiny else (8, 512)
    hidden = torch.randn(batch, length, shape["hidden_size"], device=device)
    rows = []
    stock = torch.nn.ModuleList([MambaBlock(MambaConfig(vocab_size=1024, **shape), i)
                                 for i in range(shape["num_hidden_layers"])]).to(device)
    variants = {"transformers' Mamba": stock}
    for fused in (True, False):
        config = GrootLMambaConfig(vocab_size=1024, fused_scan=fused, **shape)
        blocks = torch.nn.ModuleList([GrootLMambaBlock(config, i) for i in range(shape["num_hidden_layers"])])
        blocks.load_state_dict(stock.state_dict())
        variants[f"GrootL mixer, {'fused' if fused else 'unfused'}"] = blocks.to(device)
    peer = None
    for label, blocks in variants.items():
        def step():
            out = hidden.requires_grad_()
            for block in blocks:
                out = block(out)
            out.sum().backward()

        try:
            seconds = timer(step, warmup=1)
        except (RuntimeError, NotImplementedError) as error:  # e.g. an implementation missing on this device
            rows.append(f"| {label} | n/a: {str(error).splitlines()[0][:100]} | |")
            continue
        peer = peer or seconds
        rows.append(f"| {label} | {ms(seconds)} | {seconds / peer:.2f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", help="folder for gpu_tables.md")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--tiny", action="store_true", help="tiny shapes: a dry run of the script")
    parser.add_argument("--only", choices=["operators", "models", "grootl"], action="append",
                        help="run these parts only (default: all)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("[bench-gpu] no GPU here: nothing to measure")
        return
    timer = Timer(device, 1 if args.tiny else args.repeats)
    parts = args.only or ["operators", "models", "grootl"]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (dry run)"
    lines = [f"GPU: {name}; torch {torch.__version__}; triton "
             f"{getattr(sys.modules.get('triton'), '__version__', 'absent')}", ""]
    if "operators" in parts:
        lines += ["| shape | operator | B×C×V | ms | copy floor ms | × copy floor | × HBM floor (4.3 TB/s) |",
                  "|---|---|---|---|---|---|---|", *operator_rows(timer, device, args.tiny), ""]
    if "models" in parts:
        rows, notes = model_rows(timer, device, args.tiny)
        lines += ["| model | dtype | batch | img/s | × ConvNeXt-T | peak MB |", "|---|---|---|---|---|---|", *rows, ""]
        lines += [f"- {note}" for note in notes] + [""]
    if "grootl" in parts:
        lines += ["| 4-layer mamba-130m slice, fwd+bwd | ms | × transformers' Mamba |", "|---|---|---|",
                  *grootl_rows(timer, device, args.tiny), ""]
    text = "\n".join(lines)
    print(text)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "gpu_tables.md"), "w") as handle:
            handle.write(text + "\n")


if __name__ == "__main__":
    main()
