"""The three GrootL command lines: usage lines that name the command, a --help with defaults,
one-line errors (exit status 2) for what the user can fix, tracebacks only for bugs, and no
waiting on a Hugging Face Hub that is off or does not answer."""

import os
import sys

import pytest
import torch

from grootl import evaluate, hub, merge, train
from grootl.testing import save_tiny_checkpoint, write_alpaca_json
from grootl_helpers import one_line_error, run_training

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

LOCAL_TASKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "lm_eval")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli") / "base"
    save_tiny_checkpoint(folder, seed=3)
    return folder


def help_text(module, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [module.__file__])  # what `python -m grootl.<name>` gives argparse
    monkeypatch.setenv("COLUMNS", "150")
    with pytest.raises(SystemExit) as stop:
        module.main(["--help"])
    assert stop.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("module", [train, merge, evaluate], ids=["train", "merge", "evaluate"])
def test_usage_names_the_command_to_type(module, monkeypatch, capsys):
    assert help_text(module, monkeypatch, capsys).startswith(f"usage: {'python -m ' + module.__name__} ")


def test_evaluate_help_shows_the_defaults_and_where_the_results_go(monkeypatch, capsys):
    text = " ".join(help_text(evaluate, monkeypatch, capsys).split())
    assert "--output_path OUTPUT_PATH the results JSON" in text
    assert "relative to the current directory (default: grootl_results.json)" in text
    assert "requests per forward (default: 16)" in text and "(default: cpu)" in text
    assert "(default: piqa,arc_easy,sst2,winogrande,lambada_openai,race,openbookqa)" in text
    assert "trust_checkpoint=True" in text


def test_user_errors_are_one_line(base, tmp_path, capsys):
    missing = tmp_path / "no-such-model"
    one_line_error(
        capsys,
        lambda: merge.main(["--base_model", str(missing), "--peft_model", str(base),
                            "--save_path", str(tmp_path / "m")]),  # fmt: skip
        f"`base_model` {str(missing)!r} is not a directory",
    )
    write_alpaca_json(tmp_path / "data.json", count=4)
    one_line_error(
        capsys,
        lambda: run_training(missing, tmp_path / "data.json", tmp_path / "run", 1),
        f"--model_name_or_path {str(missing)!r}: no such folder",
    )
    data, output = tmp_path / "data.json", tmp_path / "run"
    one_line_error(capsys, lambda: run_training(base, data, output, 1, "--no_such_flag", "3"),
                   "invalid training arguments", "--no_such_flag")  # fmt: skip
    one_line_error(capsys, lambda: run_training(base, data, output, 1, "--fp16", "True", "--bf16", "True"),
                   "invalid training arguments: At most one of fp16 and bf16 can be True")  # fmt: skip
    one_line_error(
        capsys,
        lambda: evaluate.main(["--model_args", f"pretrained={missing}", "--tasks", "grootl_local_mc",
                               "--include_path", LOCAL_TASKS]),  # fmt: skip
        f"`pretrained` {str(missing)!r}: no such folder",
    )
    one_line_error(
        capsys,
        lambda: evaluate.main(["--model_args", f"pretrained={base}", "--tasks", "grootl_local_mc,no_such_task",
                               "--include_path", LOCAL_TASKS]),  # fmt: skip
        "unknown lm-eval task(s) ['no_such_task']",
    )
    one_line_error(
        capsys,
        lambda: evaluate.main(["--model_args", f"pretrained={base},dtpye=float32", "--tasks", "grootl_local_mc",
                               "--include_path", LOCAL_TASKS]),  # fmt: skip
        "unknown `model_args` key(s) ['dtpye']",
    )
    if not torch.cuda.is_available():
        one_line_error(
            capsys,
            lambda: evaluate.main(["--model_args", f"pretrained={base}", "--tasks", "grootl_local_mc",
                                   "--include_path", LOCAL_TASKS, "--device", "cuda"]),  # fmt: skip
            "no CUDA device is available here",
        )


@pytest.mark.skipif(torch.cuda.is_available() and torch.cuda.is_bf16_supported(), reason="bf16 is supported here")
def test_bf16_without_support_is_a_one_line_error(base, tmp_path, capsys):
    write_alpaca_json(tmp_path / "data.json", count=4)
    command = ["--model_name_or_path", str(base), "--data_path", str(tmp_path / "data.json"),
               "--output_dir", str(tmp_path / "run"), "--bf16", "True"]  # fmt: skip
    one_line_error(capsys, lambda: train.main(command), "--bf16 True needs a GPU with bf16 support", "BF16=False")



def test_bugs_keep_their_traceback(base, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug, not the user's doing")

    monkeypatch.setattr(merge, "merge", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        merge.main(["--base_model", str(base), "--peft_model", str(base), "--save_path", str(tmp_path / "m")])


def test_evaluate_does_not_wait_for_a_hub_that_does_not_answer(base, tmp_path, monkeypatch, capsys):
    asked = []

    class NoNetwork:
        def head(self, url, timeout):
            asked.append((url, timeout))
            raise ConnectionError("[Errno -2] Name or service not known")

    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(hub, "get_session", NoNetwork)
    loaded = []
    monkeypatch.setattr(evaluate, "get_model", lambda name: loaded.append(name))
    one_line_error(
        capsys,
        lambda: evaluate.main(["--model_args", f"pretrained={base}", "--tasks", "piqa,arc_easy",
                               "--include_path", LOCAL_TASKS]),  # fmt: skip
        "the data of the tasks piqa, arc_easy come from the Hugging Face Hub",
        "does not answer (ConnectionError",
        "docs/grootl.md",
        "HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1",
    )
    assert len(asked) == 1 and asked[0][1] <= 5 and not loaded  # one short question, no model loaded
    one_line_error(
        capsys,
        lambda: run_training("state-spaces/mamba-130m-hf", tmp_path / "data.json", tmp_path / "run", 1),
        "--model_name_or_path 'state-spaces/mamba-130m-hf' is not a local folder, so its files would come from the "
        "Hugging Face Hub",
    )
