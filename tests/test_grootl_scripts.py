"""The release-style entry scripts end to end on a tiny model: st_train.sh (DDP over two CPU
processes through torchrun), merge.sh, eval.sh on a local task file. Offline."""

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from grootl.testing import save_tiny_checkpoint, write_alpaca_json

REPOSITORY = Path(__file__).resolve().parents[1]


def run_script(script, env, *args):
    result = subprocess.run(
        ["bash", str(REPOSITORY / "GrootL" / script), *args],
        cwd=REPOSITORY,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_st_train_requires_data_path(tmp_path):
    # A stand-in torchrun shows whether the script got as far as launching the training.
    torchrun = tmp_path / "bin" / "torchrun"
    torchrun.parent.mkdir()
    torchrun.write_text(f"#!/bin/sh\ntouch {tmp_path / 'launched'}\n")
    torchrun.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "DATA_PATH"}
    env["PATH"] = f"{torchrun.parent}{os.pathsep}{env.get('PATH', '')}"
    result = subprocess.run(
        ["bash", str(REPOSITORY / "GrootL" / "st_train.sh")], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode != 0 and "set DATA_PATH to an Alpaca-format JSON file" in result.stderr
    assert not (tmp_path / "launched").exists()


@pytest.mark.parametrize("bf16", [None, "True", "False"])
def test_st_train_uses_bf16_only_where_it_is_supported(tmp_path, bf16):
    """The release's --bf16 True fails on a machine without a GPU; BF16 defaults to what the machine supports."""
    torchrun = tmp_path / "bin" / "torchrun"
    torchrun.parent.mkdir()
    torchrun.write_text(f'#!/bin/sh\necho "$@" > {tmp_path / "arguments"}\n')
    torchrun.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "BF16"}
    path = os.pathsep.join([str(torchrun.parent), str(Path(sys.executable).parent), env["PATH"]])
    env.update(DATA_PATH="data.json", PATH=path)
    if bf16 is not None:
        env["BF16"] = bf16
    subprocess.run(["bash", str(REPOSITORY / "GrootL" / "st_train.sh")], cwd=tmp_path, env=env, check=True, timeout=120)
    arguments = (tmp_path / "arguments").read_text().split()
    supported = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    assert arguments[arguments.index("--bf16") + 1] == (bf16 if bf16 is not None else str(supported))


@pytest.mark.slow
def test_train_merge_evaluate_with_the_scripts(tmp_path):
    save_tiny_checkpoint(tmp_path / "base", seed=2)
    write_alpaca_json(tmp_path / "data.json", count=8)
    env = dict(
        os.environ,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        OMP_NUM_THREADS="1",
        MODEL_PATH=str(tmp_path / "base"),
        DATA_PATH=str(tmp_path / "data.json"),
        OUTPUT_DIR=str(tmp_path / "run"),
        NPROC="2",
        MASTER_PORT=str(random.randint(20000, 40000)),
    )
    run_script(
        "st_train.sh", env,
        "--max_steps", "2", "--save_steps", "2", "--use_cpu", "True",
        "--model_max_length", "64", "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "1",
        "--disable_tqdm", "True",
    )  # fmt: skip
    state = json.loads((tmp_path / "run" / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    assert (tmp_path / "run" / "checkpoint-2" / "adapter_model.safetensors").is_file()

    env.update(BASE_MODEL=str(tmp_path / "base"), PEFT_MODEL=str(tmp_path / "run"), SAVE_PATH=str(tmp_path / "merged"))
    run_script("merge.sh", env)
    assert json.loads((tmp_path / "merged" / "config.json").read_text())["architectures"] == ["MambaForCausalLM"]

    env.update(
        MODEL_PATH=str(tmp_path / "merged"),
        TASKS="grootl_local_mc",
        INCLUDE_PATH="configs/lm_eval",
        DEVICE="cpu",
        BATCH_SIZE="4",
        OUTPUT=str(tmp_path / "results.json"),
    )
    printed = run_script("eval.sh", env, "--limit", "4")
    assert "| GrootL (paper) |" in printed
    assert "acc,none" in json.loads((tmp_path / "results.json").read_text())["results"]["grootl_local_mc"]
