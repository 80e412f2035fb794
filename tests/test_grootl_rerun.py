"""Same command, same result: --seed fixes the LoRA initialisation too, and re-running a
finished run does nothing (and says so) instead of training past max_steps."""

import os

import pytest
import torch
from safetensors.torch import load_file

from grootl.testing import save_tiny_checkpoint, write_alpaca_json
from grootl_helpers import checkpoints, losses, run_training

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("rerun")
    save_tiny_checkpoint(root / "base", seed=2)
    write_alpaca_json(root / "data.json", count=8, seed=2)
    return root


def adapters(output):
    return load_file(output / "adapter_model.safetensors")


def test_the_same_seed_gives_the_same_adapters_and_losses(workspace, tmp_path):
    base, data = workspace / "base", workspace / "data.json"
    # Something random between the runs, as in any process that does more than one thing.
    torch.rand(1000)
    run_training(base, data, tmp_path / "first", 3, "--seed", "11")
    torch.rand(77)
    run_training(base, data, tmp_path / "second", 3, "--seed", "11")
    run_training(base, data, tmp_path / "other_seed", 3, "--seed", "12")

    first, second, other = (adapters(tmp_path / name) for name in ("first", "second", "other_seed"))
    assert first.keys() == second.keys()
    for key in first:
        torch.testing.assert_close(first[key], second[key], atol=0, rtol=0)
    assert losses(tmp_path / "first") == losses(tmp_path / "second") and len(losses(tmp_path / "first")) == 3
    # lora_A is drawn at random from the seed (lora_B starts at zero, so its values tell little).
    assert any(not torch.equal(first[key], other[key]) for key in first if "lora_A" in key)


def test_a_finished_run_rerun_does_nothing_and_says_so(workspace, tmp_path, capsys):
    base, data, output = workspace / "base", workspace / "data.json", tmp_path / "run"
    run_training(base, data, output, 4)
    names = ("adapter_model.safetensors", "metrics.jsonl", "trainer_state.json")
    before = {name: (output / name).read_bytes() for name in names}
    stamps = {name: (output / name).stat().st_mtime_ns for name in before}
    capsys.readouterr()

    run_training(base, data, output, 4)
    assert "already holds the final model of this run (step 4, max_steps 4): nothing to do" in capsys.readouterr().out
    for name, content in before.items():
        assert (output / name).read_bytes() == content and (output / name).stat().st_mtime_ns == stamps[name], name
    assert checkpoints(output) == ["checkpoint-2", "checkpoint-4"]

    # More steps asked for: the run goes on from its last checkpoint.
    run_training(base, data, output, 6)
    assert [step for step, _ in losses(output)] == [1, 2, 3, 4, 5, 6]
    assert checkpoints(output) == ["checkpoint-4", "checkpoint-6"]
