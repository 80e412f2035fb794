"""Files from elsewhere are data: every GrootL loader refuses pickles that would run code, names
the file and the trust switch, and with the switch reads them in full. safetensors and pickles
of plain tensors load as always."""

import json
import os
import shutil

import pytest
import torch
from safetensors.torch import load_file

from grootl import GrootLMambaForCausalLM
from grootl import evaluate as evaluate_cli
from grootl import merge as merge_cli
from grootl import train as train_cli
from grootl.errors import UntrustedFileError
from grootl.lora import add_lora, load_lora
from grootl.testing import save_tiny_checkpoint, write_alpaca_json
from grootl_helpers import one_line_error, train_args

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

LOCAL_TASKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "lm_eval")


def code_running_object(marker, result="None"):
    """An object whose unpickling creates ``marker`` (standing for any code) and evaluates to ``result``."""

    class Payload:
        def __reduce__(self):
            return (eval, (f"(open({str(marker)!r}, 'w').close(), {result})[1]",))

    return Payload()


def pickle_the_weights(folder, marker=None):
    """Replaces ``folder/model.safetensors`` by a ``pytorch_model.bin`` of the same tensors; with
    ``marker``, the final norm's weight (ones) comes from an object whose unpickling runs code."""
    state_dict = load_file(folder / "model.safetensors")
    os.remove(folder / "model.safetensors")
    if marker is not None:
        numel = state_dict["backbone.norm_f.weight"].numel()
        state_dict["backbone.norm_f.weight"] = code_running_object(marker, f"__import__('torch').ones({numel})")
    torch.save(state_dict, folder / "pytorch_model.bin")


def pickled_adapter(base, folder, marker=None):
    """An adapter saved as ``adapter_model.bin``; with ``marker``, one of its entries runs code."""
    peft = add_lora(GrootLMambaForCausalLM.from_pretrained(base))
    peft.save_pretrained(folder, safe_serialization=False)
    if marker is not None:
        weights = torch.load(folder / "adapter_model.bin", weights_only=True)
        name = next(iter(weights))
        weights[name] = code_running_object(marker, f"__import__('torch').zeros({list(weights[name].shape)})")
        torch.save(weights, folder / "adapter_model.bin")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    folder = tmp_path_factory.mktemp("untrusted") / "base"
    save_tiny_checkpoint(folder, seed=7)
    return folder


def test_from_pretrained_refuses_code_and_weights_only_false_allows_it(base, tmp_path):
    reference = GrootLMambaForCausalLM.from_pretrained(base)  # safetensors, as always
    plain = tmp_path / "plain"
    shutil.copytree(base, plain)
    pickle_the_weights(plain)  # a pickle of plain tensors (the release's format) needs no trust
    for name, value in GrootLMambaForCausalLM.from_pretrained(plain).state_dict().items():
        torch.testing.assert_close(value, reference.state_dict()[name], atol=0, rtol=0)

    evil, marker = tmp_path / "evil", tmp_path / "code-ran"
    shutil.copytree(base, evil)
    pickle_the_weights(evil, marker)
    with pytest.raises(UntrustedFileError) as refusal:
        GrootLMambaForCausalLM.from_pretrained(evil)
    assert str(evil / "pytorch_model.bin") in str(refusal.value)
    assert "weights_only=False" in str(refusal.value) and "Unsupported global: GLOBAL eval" in str(refusal.value)
    assert not marker.exists()

    trusted = GrootLMambaForCausalLM.from_pretrained(evil, weights_only=False)
    assert marker.exists()  # the switch does what it says: the file's code ran
    torch.testing.assert_close(trusted.backbone.norm_f.weight, torch.ones(32), atol=0, rtol=0)


def test_load_lora_refuses_a_pickled_adapter_that_runs_code(base, tmp_path):
    pickled_adapter(base, tmp_path / "plain")
    load_lora(GrootLMambaForCausalLM.from_pretrained(base), str(tmp_path / "plain"))  # plain tensors: fine

    marker = tmp_path / "code-ran"
    pickled_adapter(base, tmp_path / "evil", marker)
    with pytest.raises(UntrustedFileError, match=r"adapter_model\.bin.*trusted=True"):
        load_lora(GrootLMambaForCausalLM.from_pretrained(base), str(tmp_path / "evil"))
    assert not marker.exists()
    load_lora(GrootLMambaForCausalLM.from_pretrained(base), str(tmp_path / "evil"), trusted=True)
    assert marker.exists()


def test_merge_refuses_pickled_code_in_the_base_and_in_the_adapter(base, tmp_path, capsys):
    marker = tmp_path / "code-ran"
    evil_base = tmp_path / "evil-base"
    shutil.copytree(base, evil_base)
    pickle_the_weights(evil_base, marker)
    pickled_adapter(base, tmp_path / "adapter")
    pickled_adapter(base, tmp_path / "evil-adapter", marker)

    def merge(base_model, adapter, *extra):
        args = ["--base_model", str(base_model), "--peft_model", str(adapter), "--save_path", str(tmp_path / "out")]
        return lambda: merge_cli.main([*args, *extra])

    evil_file = str(evil_base / "pytorch_model.bin")
    one_line_error(capsys, merge(evil_base, tmp_path / "adapter"), evil_file, "--trust_checkpoint")
    evil_adapter = "evil-adapter/adapter_model.bin"
    one_line_error(capsys, merge(base, tmp_path / "evil-adapter"), evil_adapter, "--trust_checkpoint")
    assert not marker.exists() and not (tmp_path / "out").exists()

    merge(evil_base, tmp_path / "adapter", "--trust_checkpoint")()
    assert marker.exists() and (tmp_path / "out" / "config.json").is_file()


def test_evaluate_refuses_pickled_code_in_the_model_and_in_peft(base, tmp_path, capsys):
    marker = tmp_path / "code-ran"
    evil_base = tmp_path / "evil-base"
    shutil.copytree(base, evil_base)
    pickle_the_weights(evil_base, marker)
    pickled_adapter(base, tmp_path / "evil-adapter", marker)

    def evaluate(model_args):
        args = ["--model_args", model_args, "--tasks", "grootl_local_mc", "--include_path", LOCAL_TASKS,
                "--output_path", str(tmp_path / "results.json")]  # fmt: skip
        return lambda: evaluate_cli.main(args)

    one_line_error(capsys, evaluate(f"pretrained={evil_base}"), "pytorch_model.bin", "trust_checkpoint=True")
    with_peft = f"pretrained={base},peft={tmp_path / 'evil-adapter'}"
    one_line_error(capsys, evaluate(with_peft), "adapter_model.bin", "trust_checkpoint=True")
    assert not marker.exists() and not (tmp_path / "results.json").exists()


@pytest.fixture(scope="module")
def finished_run(base, tmp_path_factory):
    """A run of two steps, its checkpoint-2 holding every file a Trainer checkpoint has."""
    root = tmp_path_factory.mktemp("run")
    write_alpaca_json(root / "data.json", count=8)
    train_cli.main(train_args(base, root / "data.json", root / "run", 2))
    checkpoint = root / "run" / "checkpoint-2"
    for name in ("rng_state.pth", "optimizer.pt", "scheduler.pt", "training_args.bin", "adapter_model.safetensors"):
        assert (checkpoint / name).is_file()
    return root


def poison(checkpoint, name, marker):
    """Replaces the checkpoint's file ``name`` by a pickle that runs code (the adapter: as a .bin)."""
    if name == "adapter_model.bin":
        os.remove(checkpoint / "adapter_model.safetensors")
    torch.save({"state": code_running_object(marker)}, checkpoint / name)


@pytest.mark.parametrize("name", ["rng_state.pth", "optimizer.pt", "scheduler.pt", "adapter_model.bin"])
def test_resuming_refuses_a_checkpoint_file_that_runs_code(finished_run, base, tmp_path, capsys, name):
    output, marker = tmp_path / "run", tmp_path / "code-ran"
    shutil.copytree(finished_run / "run", output)
    poison(output / "checkpoint-2", name, marker)
    command = train_args(base, finished_run / "data.json", output, 4)
    one_line_error(capsys, lambda: train_cli.main(command), str(output / "checkpoint-2" / name), "--trust_checkpoint")
    assert not marker.exists()

    # The same with the checkpoint named explicitly, from elsewhere.
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(output / "checkpoint-2", elsewhere)
    command = train_args(base, finished_run / "data.json", tmp_path / "other", 4,
                         "--resume_from_checkpoint", str(elsewhere))  # fmt: skip
    one_line_error(capsys, lambda: train_cli.main(command), str(elsewhere / name), "--trust_checkpoint")
    assert not marker.exists()


def test_training_args_bin_is_never_unpickled_and_trust_reaches_every_loader(finished_run, base, tmp_path):
    output, marker = tmp_path / "run", tmp_path / "code-ran"
    shutil.copytree(finished_run / "run", output)
    poison(output / "checkpoint-2", "training_args.bin", marker)
    train_cli.main(train_args(base, finished_run / "data.json", output, 3))
    assert not marker.exists() and (output / "checkpoint-3").is_dir()

    # With the switch, a pickled scheduler state with an extra (code-running) entry is read in full.
    shutil.rmtree(output)
    shutil.copytree(finished_run / "run", output)
    scheduler = torch.load(output / "checkpoint-2" / "scheduler.pt", weights_only=True)
    torch.save({**scheduler, "note": code_running_object(marker)}, output / "checkpoint-2" / "scheduler.pt")
    train_cli.main(train_args(base, finished_run / "data.json", output, 3, "--trust_checkpoint"))
    assert marker.exists() and (output / "checkpoint-3").is_dir()

    # ... and so is the base model's.
    marker.unlink()
    evil_base = tmp_path / "evil-base"
    shutil.copytree(base, evil_base)
    pickle_the_weights(evil_base, marker)
    train_cli.main(train_args(evil_base, finished_run / "data.json", tmp_path / "fresh", 1, "--trust_checkpoint"))
    assert marker.exists()


def test_a_trainer_state_that_is_a_pickle_is_not_resumed_from(finished_run, base, tmp_path, capsys):
    """trainer_state.json is read as JSON, never unpickled: auto-resume skips such a checkpoint,
    naming it explicitly is a one-line error."""
    output, marker = tmp_path / "run", tmp_path / "code-ran"
    shutil.copytree(finished_run / "run", output)
    os.remove(output / "trainer_state.json")  # not finished: the rerun looks for a checkpoint
    poison(output / "checkpoint-2", "trainer_state.json", marker)
    train_cli.main(train_args(base, finished_run / "data.json", output, 1))  # starts over, from step 0
    assert not marker.exists() and json.loads((output / "trainer_state.json").read_text())["global_step"] == 1

    command = train_args(base, finished_run / "data.json", tmp_path / "other", 4,
                         "--resume_from_checkpoint", str(output / "checkpoint-2"))  # fmt: skip
    one_line_error(capsys, lambda: train_cli.main(command), "checkpoint-2", "trainer_state.json")
    assert not marker.exists()
