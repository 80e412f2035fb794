"""GrootL on CPU: the targets of the GrootL issues, each printed as a table.

Target 1 (goal: ratio <= 0.5): forward + backward of a 4-layer slice of mamba-130m (hidden 768,
state 16, expand 2; batch 1, 256 tokens) with GrootL's mixer (chain + tree scans) against
transformers' own Mamba torch path (a Python loop over the tokens), same weights and input.
The floor row is a same-size copy of the float32 scan inputs (u and A_bar, 4 layers): no
implementation that materialises them can beat it.

Target 2 (goals: >= 4x on the tiny model; >= 1.5x on the 130m slice with the fused scan):
lm-eval loglikelihood throughput (requests/s) of the ``grootl`` model, batched versus batch
size 1, on the tests' tiny model with a tokenizer trained on the spot and on the 4-layer slice,
with the fused scan (the default) and the unfused one. Batching gives every row its own context
length, so the scores must not change; the table shows the largest difference.

Target 3 (the fused selective tree scan; goals: fused <= 0.25x unfused in peak added memory,
<= 1.25x in time): forward + backward, fused (``fused_scan=True``) against unfused, of the
4-layer 130m slice at batch 2 and 8 x 512 tokens (all parameters trained), and of
mamba-1.4b-shaped layers (hidden 2048, d_inner 4096, state 16; parameters frozen, as under
LoRA) at batch 1 x 2048 tokens, 1 and 2 layers: the difference is what one more layer adds,
from which the 48 layers of mamba-1.4b are extrapolated. Every measurement runs in a fresh
process: the time is the median of ``--repeats`` steps after a warm-up step; the peak added
memory is the process's peak resident memory during one further step (the kernel's counter,
reset just before it) minus its resident memory before it, with glibc told to return every
allocation above 64 KiB to the system on free, so that resident memory follows the live
tensors. The floor column is the size of one (B, L, d_inner, d_state) float32 tensor per layer.

    python benchmarks/bench_grootl_cpu.py [--target 1|2|3|all] [--repeats 3] [--threads 2]

Timings depend on the machine and on what else runs on it; read the ratios, not the seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from transformers import MambaConfig  # noqa: E402
from transformers.models.mamba.modeling_mamba import MambaBlock  # noqa: E402

from grootl.configuration import GrootLMambaConfig  # noqa: E402
from grootl.lm_eval_model import GrootLEvalModel  # noqa: E402
from grootl.modeling import GrootLMambaBlock, GrootLMambaForCausalLM  # noqa: E402
from grootl.testing import tiny_corpus, tiny_mamba_config, train_tokenizer  # noqa: E402

SLICE = dict(hidden_size=768, state_size=16, expand=2, conv_kernel=4, num_hidden_layers=4)


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up: first-call allocations and kernel dispatch
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def mixer_target(repeats: int, seq_len: int, prompt_len: int) -> None:
    torch.manual_seed(0)
    config = GrootLMambaConfig(vocab_size=1024, **SLICE)
    grootl = torch.nn.ModuleList([GrootLMambaBlock(config, i) for i in range(config.num_hidden_layers)])
    for block in grootl:
        block.mixer.init_mamba_weights()
    stock_config = MambaConfig(vocab_size=1024, **SLICE)
    stock = torch.nn.ModuleList([MambaBlock(stock_config, i) for i in range(config.num_hidden_layers)])
    stock.load_state_dict(grootl.state_dict())
    grootl.train()
    stock.train()
    hidden = torch.randn(1, seq_len, config.hidden_size) * 0.5

    def run(blocks, **kwargs):
        def step():
            x = hidden.clone().requires_grad_(True)
            out = x
            for block in blocks:
                out = block(out, **kwargs)
            out.float().square().mean().backward()
            blocks.zero_grad(set_to_none=True)

        return step

    channels = config.intermediate_size * config.state_size
    u = torch.randn(2 * config.num_hidden_layers, seq_len, channels)

    def floor():
        u.clone()

    t_stock = _median_time(run(stock), repeats)
    config.use_tree = True
    t_tree = _median_time(run(grootl, contex_len=prompt_len), repeats)
    config.fused_scan = False
    t_unfused = _median_time(run(grootl, contex_len=prompt_len), repeats)
    config.fused_scan = True
    config.use_tree = False
    t_chain = _median_time(run(grootl), repeats)
    t_floor = _median_time(floor, repeats)

    print(f"\nTarget 1: 4-layer slice of mamba-130m, batch 1 x {seq_len} tokens, forward + backward "
          f"(contex_len {prompt_len}), {torch.get_num_threads()} threads")
    print("| path | seconds | ratio to transformers |")
    print("|---|---|---|")
    print(f"| transformers Mamba (torch path, token loop) | {t_stock:.3f} | 1.00 |")
    print(f"| GrootL mixer, chain + tree, fused scan (default) | {t_tree:.3f} | {t_tree / t_stock:.2f} |")
    print(f"| GrootL mixer, chain + tree, unfused scan | {t_unfused:.3f} | {t_unfused / t_stock:.2f} |")
    print(f"| GrootL mixer, tree off (chain only), fused scan | {t_chain:.3f} | {t_chain / t_stock:.2f} |")
    print(f"| floor: copy of u and A_bar, 4 layers | {t_floor:.3f} | {t_floor / t_stock:.2f} |")
    verdict = "met" if t_tree / t_stock <= 0.5 else "NOT met"
    print(f"goal ratio <= 0.5: {verdict} ({t_tree / t_stock:.2f})")


def _requests(tokenizer, count: int, seed: int = 0) -> list[tuple[list[int], list[int]]]:
    """Multiple-choice-like pairs: contexts of varied length, short continuations."""
    rng = random.Random(seed)
    corpus = tiny_corpus(200, seed=seed)
    pairs = []
    for _ in range(count):
        context = " ".join(rng.choice(corpus) for _ in range(rng.randint(2, 6))) + "\nAnswer:"
        continuation = " " + rng.choice(corpus)
        ids = tokenizer.encode(context + continuation)
        split = len(tokenizer.encode(context))
        pairs.append((ids[:split], ids[split:] or ids[-1:]))
    return pairs


def throughput_target(repeats: int, count: int, batch_size: int) -> None:
    tokenizer = train_tokenizer(1024)
    pairs = _requests(tokenizer, count)
    lengths = [len(c) + len(x) for c, x in pairs]
    models = {
        "tiny (the tests' model: hidden 32, state 4, 2 layers)": tiny_mamba_config(len(tokenizer)),
        "4-layer slice of mamba-130m": MambaConfig(vocab_size=len(tokenizer), **SLICE),
    }
    print(f"\nTarget 2: lm-eval loglikelihood, {count} requests of {min(lengths)}-{max(lengths)} tokens, "
          f"batch size 1 vs {batch_size}, {torch.get_num_threads()} threads")
    print("| model | scan | requests/s, batch 1 | requests/s, batched | speed-up (median of rounds) "
          "| largest score difference |")
    print("|---|---|---|---|---|---|")
    speedups, scores = {}, {}
    for label, config in models.items():
        torch.manual_seed(0)
        model = GrootLMambaForCausalLM(GrootLMambaConfig.from_dict(config.to_dict())).eval()
        for fused in (True, False):
            model.config.fused_scan = fused
            lms = {size: GrootLEvalModel(model, tokenizer=tokenizer, batch_size=size) for size in (1, batch_size)}
            for size, lm in lms.items():
                scores[label, fused, size] = lm.score_tokens(pairs)  # warm-up
            # Batch 1 and batched alternate, and the speed-up is the median of the rounds' ratios:
            # on a shared machine the load changes between rounds, less within one.
            seconds = {size: [] for size in lms}
            for _ in range(repeats):
                for size, lm in lms.items():
                    start = time.perf_counter()
                    lm.score_tokens(pairs)
                    seconds[size].append(time.perf_counter() - start)
            rates = {size: count / statistics.median(seconds[size]) for size in lms}
            speedups[label, fused] = statistics.median(a / b for a, b in zip(seconds[1], seconds[batch_size]))
            worst = max(abs(a[0] - b[0]) for a, b in zip(scores[label, fused, 1], scores[label, fused, batch_size]))
            scan = "fused" if fused else "unfused"
            print(f"| {label} | {scan} | {rates[1]:.1f} | {rates[batch_size]:.1f} | "
                  f"{speedups[label, fused]:.2f} | {worst:.1e} |")
    tiny, sliced = models
    fused_vs_unfused = max(
        abs(a[0] - b[0]) for label in models for a, b in zip(scores[label, True, 1], scores[label, False, 1])
    )
    print(f"largest score difference fused vs unfused (batch 1, both models): {fused_vs_unfused:.1e}")
    print(f"goal speed-up >= 4 on the tiny model: {_verdict(speedups[tiny, True] >= 4)} ({speedups[tiny, True]:.2f})")
    print(f"goal speed-up >= 1.5 on the 130m slice, fused: {_verdict(speedups[sliced, True] >= 1.5)} "
          f"({speedups[sliced, True]:.2f})")


def _verdict(met: bool) -> str:
    return "met" if met else "NOT met"


# ---------------------------------------------------------------------------------------
# Target 3: the fused selective tree scan against the unfused one, memory and time.

MAMBA_1P4B = dict(hidden_size=2048, state_size=16, expand=2, conv_kernel=4, time_step_rank=128)
MAMBA_1P4B_LAYERS = 48
MAMBA_1P4B_VOCAB = 50280
GIB = 2**30


def _resident_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.M).group(1)) * 1024


def memory_and_time_worker(spec: dict) -> dict:
    """One measurement (run in a fresh process): the seconds of a forward + backward, or its
    peak added resident memory (``spec["measure"]``)."""
    torch.manual_seed(0)
    config = GrootLMambaConfig(vocab_size=1024, num_hidden_layers=spec["layers"], fused_scan=spec["fused"],
                               **spec["shape"])
    blocks = torch.nn.ModuleList([GrootLMambaBlock(config, i) for i in range(spec["layers"])])
    for block in blocks:
        block.mixer.init_mamba_weights()
    blocks.train()
    blocks.requires_grad_(spec["train_weights"])
    hidden = torch.randn(spec["batch"], spec["seq_len"], config.hidden_size) * 0.5
    prompt = spec["seq_len"] // 2

    def step():
        x = hidden.clone().requires_grad_(True)
        out = x
        for block in blocks:
            out = block(out, contex_len=prompt)
        out.float().square().mean().backward()
        blocks.zero_grad(set_to_none=True)

    if spec["measure"] == "seconds":
        return {"seconds": _median_time(step, spec["repeats"])}
    step()  # warm-up: one-time allocations (thread pools, kernels' kept scratch)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets the peak resident size (VmHWM) to the current one
    before = _resident_bytes("VmRSS")
    step()
    return {"peak_added_bytes": _resident_bytes("VmHWM") - before}


def _measure(spec: dict, threads: int | None) -> dict:
    env = dict(os.environ)
    if spec["measure"] == "memory":
        # Without this glibc keeps freed memory of up to 32 MB per allocation for reuse, and the
        # resident size would follow its heap rather than the live tensors.
        env.update(MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    command = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)]
    if threads is not None:
        command += ["--threads", str(threads)]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"benchmark worker {spec} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _fused_vs_unfused(shape: dict, layers: int, batch: int, seq_len: int, repeats: int, train_weights: bool,
                      threads: int | None) -> dict:
    results = {}
    for fused in (True, False):
        spec = dict(shape=shape, layers=layers, batch=batch, seq_len=seq_len, fused=fused, repeats=repeats,
                    train_weights=train_weights)
        results[fused] = {
            **_measure({**spec, "measure": "memory"}, threads),
            **_measure({**spec, "measure": "seconds"}, threads),
        }
    return results


def _state_tensor_mb(shape: dict, batch: int, seq_len: int) -> float:
    return batch * seq_len * shape["expand"] * shape["hidden_size"] * shape["state_size"] * 4 / 1e6


def fused_scan_target(repeats: int, threads: int | None) -> None:
    print(f"\nTarget 3: fused vs unfused selective tree scan, forward + backward, "
          f"{threads or torch.get_num_threads()} threads; peak added memory and time per step")
    print("| model | layers | batch x tokens | one B·L·d·N tensor MB | unfused MB | fused MB | memory ratio "
          "| unfused s | fused s | time ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|")

    def row(label, shape, layers, batch, seq_len, results):
        mb = {fused: results[fused]["peak_added_bytes"] / 1e6 for fused in results}
        sec = {fused: results[fused]["seconds"] for fused in results}
        print(f"| {label} | {layers} | {batch} x {seq_len} | {_state_tensor_mb(shape, batch, seq_len):.0f} "
              f"| {mb[False]:.0f} | {mb[True]:.0f} | {mb[True] / mb[False]:.3f} "
              f"| {sec[False]:.2f} | {sec[True]:.2f} | {sec[True] / sec[False]:.2f} |")
        return mb, sec

    slice_shape = {key: SLICE[key] for key in ("hidden_size", "state_size", "expand", "conv_kernel")}
    verdicts = []
    for batch in (2, 8):
        results = _fused_vs_unfused(slice_shape, 4, batch, 512, repeats, True, threads)
        mb, sec = row("mamba-130m slice (weights trained)", slice_shape, 4, batch, 512, results)
        if batch == 2:
            verdicts.append(f"130m slice, batch 2: memory <= 0.25x {_verdict(mb[True] <= 0.25 * mb[False])} "
                            f"({mb[True] / mb[False]:.3f}); time <= 1.25x {_verdict(sec[True] <= 1.25 * sec[False])} "
                            f"({sec[True] / sec[False]:.2f})")

    per_layer, one_layer = {}, {}
    measured = {}
    for layers in (1, 2):
        measured[layers] = _fused_vs_unfused(MAMBA_1P4B, layers, 1, 2048, 1, False, threads)
        row("mamba-1.4b shape (weights frozen)", MAMBA_1P4B, layers, 1, 2048, measured[layers])
    for fused in (True, False):
        one_layer[fused] = measured[1][fused]["peak_added_bytes"]
        per_layer[fused] = measured[2][fused]["peak_added_bytes"] - one_layer[fused]
    ratio = per_layer[True] / per_layer[False]
    verdicts.append(f"1.4b shape, batch 1 x 2048: added per layer <= 0.25x {_verdict(ratio <= 0.25)} "
                    f"(fused {per_layer[True] / 1e6:.0f} MB, unfused {per_layer[False] / 1e6:.0f} MB: {ratio:.3f})")
    print("\n".join(verdicts))

    # What a full mamba-1.4b LoRA step at batch 1 x 2048 would need, from the per-layer figures.
    config = GrootLMambaConfig(vocab_size=MAMBA_1P4B_VOCAB, num_hidden_layers=MAMBA_1P4B_LAYERS, **MAMBA_1P4B)
    with torch.device("meta"):
        parameters = sum(p.numel() for p in GrootLMambaForCausalLM(config).parameters())
    weights = parameters * 4
    logits = 3 * 2048 * MAMBA_1P4B_VOCAB * 4  # logits, their log-softmax and their gradient, float32
    print(f"\nmamba-1.4b LoRA step at batch 1 x 2048 (float32 weights, {parameters / 1e9:.3f} B parameters):")
    print("| | unfused | fused |")
    print("|---|---|---|")
    totals = {}
    layers_mb = {f: (one_layer[f] + (MAMBA_1P4B_LAYERS - 1) * per_layer[f]) for f in (True, False)}
    for f in (True, False):
        totals[f] = weights + logits + layers_mb[f]
    print(f"| 48 layers: first layer + 47 x added per layer | {layers_mb[False] / GIB:.1f} GiB "
          f"| {layers_mb[True] / GIB:.1f} GiB |")
    print(f"| weights (float32) | {weights / GIB:.1f} GiB | {weights / GIB:.1f} GiB |")
    print(f"| logits, log-softmax, their gradient (float32) | {logits / GIB:.1f} GiB | {logits / GIB:.1f} GiB |")
    print(f"| total (LoRA adapters and their optimiser state: a few MB) | {totals[False] / GIB:.1f} GiB "
          f"| {totals[True] / GIB:.1f} GiB |")
    print(f"fits in 24 GiB: unfused {'yes' if totals[False] <= 24 * GIB else 'no'}, "
          f"fused {'yes' if totals[True] <= 24 * GIB else 'no'}")


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = re.search(r"^model name\s*:\s*(.+)$", f.read(), re.M).group(1)
    except (OSError, AttributeError):
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, torch {torch.__version__}, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seq_len", type=int, default=256)
    parser.add_argument("--contex_len", type=int, default=128)
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--target", choices=["1", "2", "3", "all"], default="all")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # one target-3 measurement, as JSON
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.worker is not None:
        print(json.dumps(memory_and_time_worker(json.loads(args.worker))))
        return
    print(_machine())
    if args.target in ("1", "all"):
        mixer_target(args.repeats, args.seq_len, args.contex_len)
    if args.target in ("2", "all"):
        throughput_target(args.repeats, args.requests, args.batch_size)
    if args.target in ("3", "all"):
        fused_scan_target(args.repeats, args.threads)


if __name__ == "__main__":
    main()
