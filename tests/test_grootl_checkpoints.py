"""Kills at the risky moments of saving: every ``checkpoint-N`` folder left is complete (or
absent), the rerun resumes from a complete one and finishes as an uninterrupted run would, and
no temporary folder is left behind. A kill is simulated by an exception at that moment."""

import os
import shutil

import pytest
from safetensors.torch import load_file

from grootl import atomic
from grootl.checkpointing import AtomicCheckpointTrainer
from grootl.atomic import remove_directory, remove_leftovers
from grootl.checkpointing import STAGING_DIR, newest_complete_checkpoint
from grootl.testing import save_tiny_checkpoint, write_alpaca_json
from grootl_helpers import assert_complete, checkpoints, losses, run_training

os.environ.setdefault("HF_HUB_OFFLINE", "1")


class Killed(BaseException):
    """Raised where the process would have been killed (not an Exception: nothing catches it)."""


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("kills")
    save_tiny_checkpoint(root / "base", seed=1)
    write_alpaca_json(root / "data.json", count=8, seed=1)
    return root


@pytest.fixture(scope="module")
def uninterrupted(workspace):
    """The reference: four steps without a kill."""
    output = workspace / "uninterrupted"
    run_training(workspace / "base", workspace / "data.json", output, 4, "--save_steps", "1")
    return output


def assert_like_uninterrupted(output, uninterrupted):
    assert checkpoints(output) == checkpoints(uninterrupted) == ["checkpoint-3", "checkpoint-4"]
    for name in checkpoints(output):
        assert_complete(output / name)
    assert [step for step, _ in losses(output)] == [1, 2, 3, 4]
    assert [loss for _, loss in losses(output)] == pytest.approx([loss for _, loss in losses(uninterrupted)], abs=1e-5)
    final = load_file(output / "adapter_model.safetensors")
    reference = load_file(uninterrupted / "adapter_model.safetensors")
    assert final.keys() == reference.keys()
    for key in final:
        assert (final[key] - reference[key]).abs().max() < 1e-5, key
    assert sorted(p for p in os.listdir(output) if p.startswith(".")) == []  # no staging or temporary leftovers


def test_remove_directory_leaves_no_partial_folder_in_place(tmp_path, monkeypatch):
    folder = tmp_path / "checkpoint-1"
    folder.mkdir()
    for name in "abc":
        (folder / name).write_text(name)
    real_rmtree = shutil.rmtree

    def killed_while_deleting(path, *args, **kwargs):
        os.remove(os.path.join(path, "checkpoint-1", "a"))
        raise Killed

    monkeypatch.setattr(shutil, "rmtree", killed_while_deleting)
    with pytest.raises(Killed):
        remove_directory(folder)
    monkeypatch.setattr(shutil, "rmtree", real_rmtree)
    assert not folder.exists()
    (leftover,) = os.listdir(tmp_path)
    assert leftover.startswith(".checkpoint-1.deleted-")
    assert remove_leftovers(folder) == [leftover] and os.listdir(tmp_path) == []


def test_a_kill_while_rotating_leaves_only_complete_checkpoints(workspace, uninterrupted, tmp_path, monkeypatch):
    """Rotation deletes checkpoint-1 when checkpoint-3 is saved; a kill halfway through the
    deletion once left checkpoint-1 with missing files."""
    output = tmp_path / "run"
    real_rmtree = shutil.rmtree

    def killed_while_deleting_checkpoint_1(path, *args, **kwargs):
        if "checkpoint-1" not in os.fspath(path):
            return real_rmtree(path, *args, **kwargs)
        for root, _, files in os.walk(path):
            if "optimizer.pt" in files:
                os.remove(os.path.join(root, "optimizer.pt"))
        raise Killed

    monkeypatch.setattr(shutil, "rmtree", killed_while_deleting_checkpoint_1)
    with pytest.raises(Killed):
        run_training(workspace / "base", workspace / "data.json", output, 4, "--save_steps", "1")
    monkeypatch.setattr(shutil, "rmtree", real_rmtree)
    for name in checkpoints(output):
        assert_complete(output / name)
    assert checkpoints(output) == ["checkpoint-2", "checkpoint-3"]

    run_training(workspace / "base", workspace / "data.json", output, 4, "--save_steps", "1")
    assert_like_uninterrupted(output, uninterrupted)


def test_a_kill_while_writing_or_replacing_a_checkpoint(workspace, uninterrupted, tmp_path, monkeypatch):
    output = tmp_path / "run"
    base, data = workspace / "base", workspace / "data.json"

    # Killed while the optimizer state of checkpoint-3 is being written.
    real_save = AtomicCheckpointTrainer._save_optimizer_and_scheduler

    def killed_at_step_3(self, output_dir):
        if self.state.global_step == 3:
            raise Killed
        real_save(self, output_dir)

    monkeypatch.setattr(AtomicCheckpointTrainer, "_save_optimizer_and_scheduler", killed_at_step_3)
    with pytest.raises(Killed):
        run_training(base, data, output, 4, "--save_steps", "1")
    monkeypatch.undo()
    assert checkpoints(output) == ["checkpoint-1", "checkpoint-2"]
    for name in checkpoints(output):
        assert_complete(output / name)

    # Resumed from checkpoint-2, killed while checkpoint-3 is renamed into place, between the
    # renames that put an existing copy aside and the new one in.
    (output / "checkpoint-3").mkdir()  # a copy of step 3 to be replaced (as a resumed run replaces one)
    (output / "checkpoint-3" / "stale").write_text("older copy")
    real_replace = os.replace

    def killed_between_renames(source, destination):
        real_replace(source, destination)
        if os.path.basename(os.fspath(source)) == "checkpoint-3" and STAGING_DIR not in os.fspath(source):
            raise Killed  # the old checkpoint-3 is aside, the new one not yet in place

    monkeypatch.setattr(os, "replace", killed_between_renames)
    with pytest.raises(Killed):
        run_training(base, data, output, 4, "--save_steps", "1")
    monkeypatch.undo()
    assert "checkpoint-3" not in checkpoints(output)
    for name in checkpoints(output):
        assert_complete(output / name)

    run_training(base, data, output, 4, "--save_steps", "1")
    assert_like_uninterrupted(output, uninterrupted)


def test_a_kill_during_the_final_save_is_completed_by_the_rerun(workspace, uninterrupted, tmp_path, monkeypatch):
    output = tmp_path / "run"
    real_move = atomic.move_into_place
    moved = []

    def killed_after_one_file(staged, path, *args, **kwargs):
        real_move(staged, path, *args, **kwargs)
        if os.path.basename(os.fspath(os.path.dirname(staged))) == "final":
            moved.append(path)
            raise Killed

    monkeypatch.setattr("grootl.checkpointing.move_into_place", killed_after_one_file)
    with pytest.raises(Killed):
        run_training(workspace / "base", workspace / "data.json", output, 4, "--save_steps", "1")
    monkeypatch.undo()
    assert len(moved) == 1 and not (output / "trainer_state.json").exists()
    metrics = (output / "metrics.jsonl").read_text()

    run_training(workspace / "base", workspace / "data.json", output, 4, "--save_steps", "1")
    assert (output / "metrics.jsonl").read_text() == metrics  # nothing trained again
    assert (output / "trainer_state.json").is_file()
    assert_like_uninterrupted(output, uninterrupted)


def test_resume_skips_an_incomplete_checkpoint_folder(workspace, uninterrupted, tmp_path, caplog):
    """Folders this code writes are complete; one copied in part (or by other tools) is skipped."""
    output = tmp_path / "run"
    shutil.copytree(uninterrupted, output)
    (output / "checkpoint-9").mkdir()
    (output / "checkpoint-9" / "adapter_model.safetensors").write_text("half a copy")
    assert newest_complete_checkpoint(output) == str(output / "checkpoint-4")
    run_training(workspace / "base", workspace / "data.json", output, 6, "--save_steps", "1")
    assert "checkpoint-9 is incomplete" in caplog.text
    assert [step for step, _ in losses(output)] == [1, 2, 3, 4, 5, 6]  # resumed from checkpoint-4
