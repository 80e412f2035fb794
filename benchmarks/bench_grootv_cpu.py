"""GrootV-T on the CPU: inference beside timm's ConvNeXt-T (same FLOPs class), training, memory.

    python benchmarks/bench_grootv_cpu.py            # batch 8 at 224², the issue's target
    python benchmarks/bench_grootv_cpu.py --quick    # a smoke run: fewer repetitions, batch 2

Prints one table. Inference is timed under ``torch.inference_mode`` (median of the timed
runs after warm-up); a training step is forward + backward + AdamW step on random labels.
Peak memory is the growth of the process's peak resident set over the resident set
before the first step (model and data allocated; the optimiser state counts, it is
created by the first step), each measurement in a fresh process so that earlier peaks
do not hide later ones. The
target (issue 3): GrootV-T inference time <= 1.5 x ConvNeXt-T's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import timm
import torch

import grootv  # noqa: F401  (registers the grootv_* models with timm)
import tree_scan

# name in the table: (timm model, extra model arguments)
MODELS = {
    "convnext_tiny": ("convnext_tiny", {}),
    "grootv_tiny": ("grootv_tiny", {}),
    "grootv_tiny* (tree per stage)": ("grootv_tiny", {"share_tree": True}),
}


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # KiB on Linux


# Every model in inference, and GrootV-T and its peer in training (the ratio column needs both).
PLAN = [(name, "inference") for name in MODELS] + [("grootv_tiny", "training"), ("convnext_tiny", "training")]


def table(rows: list[dict]) -> list[str]:
    """The printed table; adds ``vs_convnext_tiny`` to each row (None when ConvNeXt-T was not
    measured in that mode, printed as "-")."""
    reference = {r["mode"]: r["seconds"] for r in rows if r["model"] == "convnext_tiny"}
    header = f"{'model':32s} {'mode':10s} {'ms/batch':>10s} {'img/s':>8s} {'x ConvNeXt-T':>13s} {'peak MB':>8s}"
    lines = [header, "-" * len(header)]
    for row in rows:
        ratio = row["seconds"] / reference[row["mode"]] if row["mode"] in reference else None
        row["vs_convnext_tiny"] = ratio
        shown = f"{ratio:13.2f}" if ratio is not None else f"{'-':>13s}"
        lines.append(f"{row['model']:32s} {row['mode']:10s} {row['seconds'] * 1e3:10.1f} "
                     f"{row['images_per_s']:8.1f} {shown} {row['peak_mb']:8.0f}")
    return lines


def measure(model_name: str, model_args: dict, mode: str, batch: int, size: int, warmup: int, runs: int) -> dict:
    """One measurement, in this process: median seconds per batch, images/s, peak memory growth."""
    torch.manual_seed(0)
    model = timm.create_model(model_name, **model_args)
    images = torch.randn(batch, 3, size, size)
    labels = torch.randint(0, 1000, (batch,))
    if mode == "inference":
        model.eval()

        def step():
            with torch.inference_mode():
                model(images)
    else:
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step():
            optimizer.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(images), labels).backward()
            optimizer.step()

    before = _rss_mb()
    for _ in range(warmup):
        step()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    return {"seconds": seconds, "images_per_s": batch / seconds, "peak_mb": max(0.0, _peak_rss_mb() - before)}


def measure_in_subprocess(*args, threads: int | None = None) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(args)]
    command += ["--threads", str(threads)] if threads else []
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"measurement {args} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def profile_grootv(batch: int, size: int) -> None:
    """The operators that take GrootV-T's inference time (tree_scan::* are the tree's own)."""
    model = timm.create_model("grootv_tiny").eval()
    images = torch.randn(batch, 3, size, size)
    with torch.inference_mode():
        model(images)
        with torch.profiler.profile() as profiler:
            model(images)
    print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="batch 2, 1 warm-up, 2 timed runs")
    parser.add_argument("--batch", type=int, help="default 8 (2 with --quick)")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--runs", type=int, help="timed runs (default 5; 2 with --quick)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's); 1 gives steadier numbers "
                        "on a machine shared with other jobs")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--profile", action="store_true", help="also print where GrootV-T's inference time goes")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(measure(*json.loads(args.worker))))
        return

    batch = args.batch or (2 if args.quick else 8)
    runs = args.runs or (2 if args.quick else 5)
    warmup = 1 if args.quick else 2  # the first also allocates the optimiser state
    if batch < 1 or runs < 1 or args.img_size < 32:
        raise ValueError(f"--batch and --runs must be >= 1 and --img-size >= 32; got {batch}, {runs}, {args.img_size}")
    print(f"torch {torch.__version__}, timm {timm.__version__}, tree_scan backend {tree_scan.BACKEND}, "
          f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
          f"batch {batch} at {args.img_size}², median of {runs} runs")

    rows = []
    for name, mode in PLAN:
        model_name, model_args = MODELS[name]
        result = measure_in_subprocess(model_name, model_args, mode, batch, args.img_size, warmup, runs,
                                       threads=args.threads)
        rows.append({"model": name, "mode": mode, **result})
        print(f"  measured {name} {mode}", file=sys.stderr)

    for line in table(rows):
        print(line)
    grootv_row = next(r for r in rows if r["model"] == "grootv_tiny" and r["mode"] == "inference")
    verdict = "met" if grootv_row["vs_convnext_tiny"] <= 1.5 else "NOT met"
    print(f"target GrootV-T inference <= 1.5 x ConvNeXt-T: {grootv_row['vs_convnext_tiny']:.2f} x ({verdict})")
    if args.profile:
        profile_grootv(batch, args.img_size)
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"batch": batch, "img_size": args.img_size, "runs": runs, "rows": rows}, out, indent=2)


if __name__ == "__main__":
    main()
