"""GrootL on CPU: the two targets of the GrootL issue, each printed as a table.

Target 1 (goal: ratio <= 0.5): forward + backward of a 4-layer slice of mamba-130m (hidden 768,
state 16, expand 2; batch 1, 256 tokens) with GrootL's mixer (chain + tree scans) against
transformers' own Mamba torch path (a Python loop over the tokens), same weights and input.
The floor row is a same-size copy of the float32 scan inputs (u and A_bar, 4 layers): no
implementation that materialises them can beat it.

Target 2 (goal: >= 4x): lm-eval loglikelihood throughput (requests/s) of the ``grootl`` model,
batched versus batch size 1, on the tests' tiny model with a tokenizer trained on the spot; the
4-layer slice is shown too. Batching gives every row its own context length, so the scores must
not change; the table shows the largest difference.

    python benchmarks/bench_grootl_cpu.py [--repeats 3] [--requests 64] [--batch_size 16] [--threads 1]

Timings depend on the machine and on what else runs on it; read the ratios, not the seconds.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
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
    config.use_tree = False
    t_chain = _median_time(run(grootl), repeats)
    t_floor = _median_time(floor, repeats)

    print(f"\nTarget 1: 4-layer slice of mamba-130m, batch 1 x {seq_len} tokens, forward + backward "
          f"(contex_len {prompt_len}), {torch.get_num_threads()} threads")
    print("| path | seconds | ratio to transformers |")
    print("|---|---|---|")
    print(f"| transformers Mamba (torch path, token loop) | {t_stock:.3f} | 1.00 |")
    print(f"| GrootL mixer, chain + tree | {t_tree:.3f} | {t_tree / t_stock:.2f} |")
    print(f"| GrootL mixer, tree off (chain only) | {t_chain:.3f} | {t_chain / t_stock:.2f} |")
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
    print("| model | requests/s, batch 1 | requests/s, batched | speed-up | largest score difference |")
    print("|---|---|---|---|---|")
    speedups = {}
    for label, config in models.items():
        torch.manual_seed(0)
        model = GrootLMambaForCausalLM(GrootLMambaConfig.from_dict(config.to_dict())).eval()
        rates, scores = {}, {}
        for size in (1, batch_size):
            lm = GrootLEvalModel(model, tokenizer=tokenizer, batch_size=size)
            out = []
            rates[size] = count / _median_time(lambda: out.append(lm.score_tokens(pairs)), repeats)
            scores[size] = out[-1]
        worst = max(abs(a[0] - b[0]) for a, b in zip(scores[1], scores[batch_size]))
        speedups[label] = rates[batch_size] / rates[1]
        print(f"| {label} | {rates[1]:.1f} | {rates[batch_size]:.1f} | {speedups[label]:.2f} | {worst:.1e} |")
    tiny = next(iter(speedups.values()))
    print(f"goal speed-up >= 4 on the tiny model: {'met' if tiny >= 4 else 'NOT met'} ({tiny:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seq_len", type=int, default=256)
    parser.add_argument("--contex_len", type=int, default=128)
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--target", choices=["1", "2", "both"], default="both")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.target in ("1", "both"):
        mixer_target(args.repeats, args.seq_len, args.contex_len)
    if args.target in ("2", "both"):
        throughput_target(args.repeats, args.requests, args.batch_size)


if __name__ == "__main__":
    main()
