"""The GrootL snippets and commands of README.md and docs/grootl.md run as written, offline:
with the stand-in model they tell how to make (grootl.testing.save_tiny_checkpoint)."""

import importlib
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from grootl.testing import save_tiny_checkpoint

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

REPOSITORY = Path(__file__).resolve().parents[1]


def section(path, heading):
    """The lines of ``path`` after ``heading`` up to the next heading of its level or above
    (lines starting with ``#`` inside code blocks are comments, not headings)."""
    lines = (REPOSITORY / path).read_text(encoding="utf-8").splitlines()
    level = len(heading.split(" ")[0])
    start = lines.index(heading) + 1
    in_code = False
    for end in range(start, len(lines)):
        in_code ^= lines[end].startswith("```")
        if not in_code and re.match(r"#{1,%d} " % level, lines[end]):
            return "\n".join(lines[start:end]) + "\n"
    return "\n".join(lines[start:]) + "\n"


def code_blocks(text, language):
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.S | re.M)


def run_shell_line(line, monkeypatch):
    """Runs ``[NAME=value ...] python -m grootl.X ...`` or ``python -c CODE`` in this process."""
    words = shlex.split(line)
    while re.fullmatch(r"[A-Z_]+=.*", words[0]):
        name, value = words.pop(0).split("=", 1)
        monkeypatch.setenv(name, value)
    assert words[0] == "python", line
    if words[1] == "-c":
        exec(words[2], {})
    else:
        assert words[1] == "-m" and words[2].startswith("grootl."), line
        importlib.import_module(words[2]).main(words[3:])


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_readme_snippet_runs_with_the_stand_in_it_tells_how_to_make(in_tmp, monkeypatch):
    text = section("README.md", "## GrootL: language")
    (snippet,) = code_blocks(text, "python")
    (make_stand_in,) = re.findall(r"`(python -c \"from grootl.testing import save_tiny_checkpoint.*?\")`", text)
    run_shell_line(make_stand_in, monkeypatch)
    assert (in_tmp / "tiny-mamba" / "config.json").is_file() and (in_tmp / "tiny-mamba" / "tokenizer.json").is_file()
    assert '`path = "tiny-mamba"`' in text
    names = {}
    exec(snippet.replace('"state-spaces/mamba-130m-hf"', '"tiny-mamba"'), names)
    assert names["logits"].shape == (1, names["prompt_len"], len(names["tokenizer"]))
    assert names["out"].shape == (1, names["prompt_len"] + 32)


def test_the_docs_snippet_runs(in_tmp):
    save_tiny_checkpoint(in_tmp / "mamba-130m-hf")
    (snippet,) = code_blocks(section("docs/grootl.md", "## Using the model"), "python")
    names = {}
    exec(snippet, names)
    assert names["logits"].shape[:2] == names["ids"].shape
    prompt = names["tokenizer"]("Question: 2+2?\nAnswer:").input_ids
    assert names["prompt_len"] == len(prompt) and names["ids"][0, : len(prompt)].tolist() == prompt
    assert torch.equal(names["out"][:, : names["prompts"].input_ids.shape[1]], names["prompts"].input_ids)


def test_the_offline_recipe_of_the_docs_runs_as_written(in_tmp, monkeypatch, capsys):
    (in_tmp / "configs").symlink_to(REPOSITORY / "configs")  # the recipe runs from the repository root
    (recipe,) = code_blocks(section("docs/grootl.md", "## Trying it offline"), "bash")
    lines = recipe.strip().splitlines()
    assert len(lines) == 4
    for line in lines:
        run_shell_line(line, monkeypatch)
    assert (in_tmp / "out" / "tiny" / "adapter_model.safetensors").is_file()
    assert (in_tmp / "out" / "tiny-merged" / "config.json").is_file()
    assert "| GrootL (paper) |" in capsys.readouterr().out
    assert (in_tmp / "out" / "tiny-results.json").is_file()


def test_the_readme_evaluate_command_offline_points_to_the_recipe(tmp_path):
    """The README's evaluation, offline: one line that names the recipe, not retries and a traceback."""
    (command,) = [line for line in code_blocks(section("README.md", "## GrootL: language"), "bash")[0].splitlines()
                  if "grootl.evaluate" in line]  # fmt: skip
    save_tiny_checkpoint(tmp_path / "out" / "grootl-merged")
    words = shlex.split(command)
    assert words[:3] == ["python", "-m", "grootl.evaluate"]
    result = subprocess.run(
        [sys.executable, *words[1:]],
        cwd=tmp_path,
        env=dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "docs/grootl.md" in last and "Offline" in last, last
    assert "Traceback" not in result.stderr
    assert "(docs/grootl.md#offline)" in section("README.md", "## GrootL: language")
