"""Zero-shot evaluation with lm-evaluation-harness (``python -m grootl.evaluate``).

    python -m grootl.evaluate --model_args pretrained=grootl-130m-hf --batch_size 16 \
        --output_path results/grootl-130m.json

Runs the paper's tasks (piqa, arc_easy, sst2, winogrande, lambada_openai, race, openbookqa)
unless ``--tasks`` says otherwise, writes a JSON file and prints the results in the column
order of the paper's Table 3 with the paper's numbers beside them (accuracies in %, LAMBADA as
perplexity; the average is over the six accuracy columns, as the paper's 47.2 and 46.1 are).

Offline: the default tasks download their datasets from the Hugging Face Hub. Without a
network, point ``--include_path`` at task YAML files that read local data files (see
``configs/lm_eval/``) and name those tasks in ``--tasks``; set ``HF_DATASETS_OFFLINE=1``.
When a task or a model has to come from the Hub and the Hub does not answer (or
``HF_HUB_OFFLINE``/``HF_DATASETS_OFFLINE`` is set and the data are not in the cache), the
command stops at once with a one-line error that points to this recipe (docs/grootl.md).
"""

from __future__ import annotations

import argparse
import functools
import inspect
import json
import math
import sys
from pathlib import Path

from lm_eval import simple_evaluate
from lm_eval.api.registry import get_model
from lm_eval.tasks import TaskManager
from lm_eval.utils import simple_parse_args_string

from .atomic import atomic_write, remove_leftovers
from .errors import GrootLError, HubUnreachableError, run_command
from .hub import OFFLINE_RECIPE, require_hub
from .lm_eval_model import GrootLEvalModel

__all__ = ["PAPER_COLUMNS", "PAPER_TABLE3", "DEFAULT_TASKS", "paper_row", "format_table", "evaluate", "run", "main"]

# (lm-eval task, column in the paper's Table 3, lm-eval metric)
PAPER_COLUMNS = (
    ("piqa", "PIQA", "acc"),
    ("arc_easy", "ARC-E", "acc"),
    ("sst2", "SST", "acc"),
    ("winogrande", "WinoGrande", "acc"),
    ("lambada_openai", "LAMBADA ppl", "perplexity"),
    ("race", "RACE", "acc"),
    ("openbookqa", "OpenbookQA", "acc"),
)
# Mamba-130m fine-tuned on Alpaca, zero-shot (paper Table 3): the columns above, then the average.
PAPER_TABLE3 = {
    "GrootL (paper)": (65.0, 49.8, 69.5, 51.1, 15.9, 28.9, 19.2, 47.2),
    "Mamba + LoRA (paper)": (64.7, 48.3, 65.1, 52.2, 17.7, 28.6, 17.8, 46.1),
}
DEFAULT_TASKS = tuple(task for task, _, _ in PAPER_COLUMNS)


def _metric(task_results: dict, metric: str) -> float | None:
    for key, value in task_results.items():
        if key == metric or key.startswith(metric + ","):
            return float(value)
    return None


def paper_row(results: dict) -> list[float | None]:
    """The Table 3 columns (plus the average) from lm-eval's ``results["results"]``; None where missing."""
    row = []
    for task, _, metric in PAPER_COLUMNS:
        value = _metric(results.get(task, {}), metric)
        row.append(None if value is None else (value if metric == "perplexity" else 100.0 * value))
    accuracies = [v for (_, _, metric), v in zip(PAPER_COLUMNS, row) if metric != "perplexity"]
    row.append(sum(accuracies) / len(accuracies) if all(v is not None for v in accuracies) else None)
    return row


def _cell(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.1f}"


def format_table(results: dict, label: str = "this run") -> str:
    """Markdown table: this run and the paper's rows in Table 3 order; other tasks below it."""
    header = ["model"] + [column for _, column, _ in PAPER_COLUMNS] + ["Avg"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, values in [(label, paper_row(results))] + [(k, list(v)) for k, v in PAPER_TABLE3.items()]:
        lines.append("| " + " | ".join([name] + [_cell(v) for v in values]) + " |")
    others = sorted(set(results) - set(DEFAULT_TASKS))
    if others:
        lines += ["", "| task | metric | value |", "|---|---|---|"]
        for task in others:
            for key, value in sorted(results[task].items()):
                # lm-eval names metrics "metric,filter"; other keys (alias, sample_len) are not scores.
                if "," in key and "_stderr" not in key and isinstance(value, (int, float)):
                    lines.append(f"| {task} | {key} | {value:.4f} |")
    return "\n".join(lines)


@functools.lru_cache(maxsize=4)
def _full_task_manager(include_path: str | None) -> TaskManager:
    """lm-eval's task index (plus ``include_path``), built once per process: it reads thousands of files."""
    return TaskManager(include_path=include_path)


def _task_manager(include_path: str | None, tasks) -> tuple[TaskManager, list[str]]:
    """The task manager, and the requested tasks that are lm-eval's own (their data come from
    the Hub). Indexing lm-eval's thousands of built-in task files takes seconds; it is skipped
    when every requested task is one of the ``include_path`` files."""
    local_tasks = set()
    if include_path:
        if not Path(include_path).is_dir():
            raise GrootLError(f"`include_path` {include_path!r} is not a folder of task YAML files")
        local = TaskManager(include_path=include_path, include_defaults=False)
        local_tasks = set(local.all_tasks)
        if set(tasks) <= local_tasks:
            return local, []
    manager = _full_task_manager(include_path)
    unknown = [task for task in tasks if not manager.match_tasks([task])]
    if unknown:
        raise GrootLError(
            f"unknown lm-eval task(s) {unknown}: name lm-eval's tasks (`lm_eval ls tasks` lists them) or "
            "tasks of the --include_path folder"
        )
    return manager, [task for task in tasks if task not in local_tasks]


def evaluate(
    model_args: dict | str | GrootLEvalModel,
    tasks: list[str] | tuple[str, ...] = DEFAULT_TASKS,
    model: str = "grootl",
    batch_size: int = 16,
    device: str = "cpu",
    include_path: str | None = None,
    limit: float | None = None,
    num_fewshot: int | None = None,
    output_path: str | Path | None = None,
    seed: int = 0,
) -> dict:
    """Runs lm-eval; returns ``{"results", "table", "paper_row", ...}`` (also written to ``output_path``).

    ``model_args`` is lm-eval's argument string or dict for the registered ``model`` (``grootl``
    or its alias ``mamba``), or a ready :class:`GrootLEvalModel`.
    """
    if not tasks:
        raise GrootLError("`tasks` must name at least one task")
    # Everything that can fail fast does, before the model is loaded.
    task_manager, hub_tasks = _task_manager(include_path, tasks)
    if hub_tasks:
        require_hub(f"the data of the tasks {', '.join(hub_tasks)}", for_datasets=True)
    if isinstance(model_args, GrootLEvalModel):
        lm = model_args
    else:
        arguments = simple_parse_args_string(model_args) if isinstance(model_args, str) else dict(model_args)
        if "pretrained" not in arguments:
            raise GrootLError("`model_args` must name the checkpoint: pretrained=<directory>")
        known = set(inspect.signature(GrootLEvalModel.__init__).parameters) - {"self"}
        unknown = sorted(set(arguments) - known)
        if unknown:
            raise GrootLError(f"unknown `model_args` key(s) {unknown}; the model takes {sorted(known)}")
        arguments.setdefault("batch_size", batch_size)
        arguments.setdefault("device", device)
        lm = get_model(model)(**arguments)
    try:
        output = simple_evaluate(
            model=lm,
            tasks=list(tasks),
            num_fewshot=num_fewshot,
            limit=limit,
            task_manager=task_manager,
            log_samples=False,
            random_seed=seed,
            numpy_random_seed=seed,
            torch_random_seed=seed,
            fewshot_random_seed=seed,
        )
    except ConnectionError as error:  # datasets' "Couldn't reach '...' on the Hub" (offline, not in the cache)
        raise HubUnreachableError(f"{error}; to evaluate offline see {OFFLINE_RECIPE}") from None
    summary = {
        "results": output["results"],
        "versions": output.get("versions", {}),
        "n-shot": output.get("n-shot", {}),
        "paper_columns": [column for _, column, _ in PAPER_COLUMNS] + ["Avg"],
        "paper_row": paper_row(output["results"]),
        "paper_table3": PAPER_TABLE3,
        "table": format_table(output["results"]),
    }
    if output_path is not None:
        path = Path(output_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_leftovers(path)  # of an earlier run killed while writing it
        with atomic_write(path) as f:
            json.dump(summary, f, indent=2, default=str)
    return summary


def run(argv: list[str] | None = None) -> dict:
    """The command line; errors the user can fix are raised as :class:`~grootl.errors.GrootLError`."""
    parser = argparse.ArgumentParser(
        prog="python -m grootl.evaluate",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--model", default="grootl", choices=["grootl", "mamba"], help="registered name (one model)")
    parser.add_argument(
        "--model_args",
        required=True,
        help="pretrained=<dir>[,tokenizer=<dir>,peft=<adapter dir>,dtype=float32|bfloat16|float16,max_length=N,"
        "use_tree=...,tree_scale=...,contex_len_mode=...,trust_checkpoint=True (unpickle .bin files you trust)]",
    )
    parser.add_argument("--tasks", default=",".join(DEFAULT_TASKS), help="comma-separated lm-eval task names")
    parser.add_argument("--batch_size", type=int, default=16, help="requests per forward")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument(
        "--include_path", default=None, help="a folder of extra task YAML files (offline use: see configs/lm_eval/)"
    )
    parser.add_argument("--limit", type=float, default=None, help="examples per task (testing only)")
    parser.add_argument("--num_fewshot", type=int, default=None, help="few-shot examples (default: the task's)")
    parser.add_argument(
        "--output_path",
        default="grootl_results.json",
        help="the results JSON (results, the paper's table); a relative path is relative to the current directory",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of lm-eval's sampling and few-shot choice")
    args = parser.parse_args(argv)
    summary = evaluate(
        args.model_args,
        [t.strip() for t in args.tasks.split(",") if t.strip()],
        model=args.model,
        batch_size=args.batch_size,
        device=args.device,
        include_path=args.include_path,
        limit=args.limit,
        num_fewshot=args.num_fewshot,
        output_path=args.output_path,
        seed=args.seed,
    )
    print(summary["table"])
    print(f"\nresults written to {args.output_path}")
    return summary


def main(argv: list[str] | None = None) -> dict:
    """``python -m grootl.evaluate``: a user error is one line on stderr and exit status 2."""
    return run_command(run, argv)


if __name__ == "__main__":
    main(sys.argv[1:])
