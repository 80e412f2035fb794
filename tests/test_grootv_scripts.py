"""GrootV/scripts/*.sh run the project's environment (.venv) from a new shell, without activation."""

import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = {
    "bash_cls_train.sh": ([], "-m grootv.classification.main --cfg GrootV/classification/config/grootv_t_1k_224.yaml"),
    "dist_train.sh": (["configs/x.py", "2"], "--nproc_per_node 2 --master_addr 127.0.0.1 --master_port 29500 "
                      "-m grootv.mm.train configs/x.py --launcher pytorch"),
    "dist_test.sh": (["configs/x.py", "x.pth", "2"], "-m grootv.mm.test configs/x.py x.pth --launcher pytorch"),
}


@pytest.fixture
def checkout(tmp_path):
    """A copy of the scripts in a checkout whose .venv/bin/python only says how it was called."""
    shutil.copytree(os.path.join(ROOT, "GrootV", "scripts"), tmp_path / "GrootV" / "scripts")
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text('#!/bin/sh\necho "venv python $*"\n')
    python.chmod(0o755)
    return tmp_path


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_scripts_use_the_checkouts_venv_in_a_new_shell(checkout, script):
    args, expected = SCRIPTS[script]
    env = {"PATH": "/usr/bin:/bin", "DATA_PATH": "/data", "NPROC_PER_NODE": "1"}
    done = subprocess.run(["bash", str(checkout / "GrootV" / "scripts" / script), *args], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("venv python -m torch.distributed.run ") and expected in done.stdout

    other = checkout / "other_python"
    other.write_text('#!/bin/sh\necho "other python $*"\n')
    other.chmod(0o755)
    done = subprocess.run(["bash", str(checkout / "GrootV" / "scripts" / script), *args],
                          env={**env, "PYTHON": str(other)}, capture_output=True, text=True, timeout=60)
    assert done.stdout.startswith("other python -m torch.distributed.run ")  # PYTHON still wins
