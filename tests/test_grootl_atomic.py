"""grootl.atomic: files and folders replaced whole, temporary copies removed when writing fails."""

import os

import pytest

from grootl.atomic import atomic_directory, atomic_write, move_into_place


def plain_modes(tmp_path):
    """The permissions a plain open() and mkdir() give under the current umask."""
    (tmp_path / "plain-file").write_text("")
    (tmp_path / "plain-dir").mkdir()
    modes = (tmp_path / "plain-file").stat().st_mode & 0o777, (tmp_path / "plain-dir").stat().st_mode & 0o777
    (tmp_path / "plain-file").unlink()
    (tmp_path / "plain-dir").rmdir()
    return modes


def test_atomic_write_replaces_the_file_or_leaves_it(tmp_path):
    file_mode, _ = plain_modes(tmp_path)
    path = tmp_path / "results.json"
    with atomic_write(path) as f:
        f.write("first")
    assert path.read_text() == "first"
    assert path.stat().st_mode & 0o777 == file_mode  # not mkstemp's private 0600
    with atomic_write(path) as f:
        f.write("second, é")
    assert path.read_text(encoding="utf-8") == "second, é"

    with pytest.raises(RuntimeError, match="killed"):
        with atomic_write(path) as f:
            f.write("half of a third")
            raise RuntimeError("killed")
    assert path.read_text(encoding="utf-8") == "second, é"
    assert os.listdir(tmp_path) == ["results.json"]


def test_atomic_directory_replaces_the_folder_or_leaves_it(tmp_path):
    _, dir_mode = plain_modes(tmp_path)
    path = tmp_path / "merged"
    with atomic_directory(path) as staging:
        assert staging.parent == tmp_path and not path.exists()
        (staging / "a").write_text("old")
        (staging / "sub").mkdir()
        (staging / "sub" / "b").write_text("old")
    assert path.stat().st_mode & 0o777 == dir_mode  # not mkdtemp's private 0700

    with pytest.raises(RuntimeError, match="killed"):
        with atomic_directory(path) as staging:
            (staging / "a").write_text("new")
            raise RuntimeError("killed")
    assert (path / "a").read_text() == "old" and os.listdir(tmp_path) == ["merged"]

    with atomic_directory(path) as staging:
        (staging / "c").write_text("new")
    assert sorted(os.listdir(path)) == ["c"]  # nothing of the old folder is left in the new one
    assert os.listdir(tmp_path) == ["merged"]


def test_move_into_place_puts_the_old_folder_back_when_the_rename_fails(tmp_path, monkeypatch):
    (tmp_path / "target").mkdir()
    (tmp_path / "target" / "old").write_text("old")
    (tmp_path / "staged").mkdir()
    real_replace = os.replace

    def failing_replace(source, destination):
        if os.path.basename(source) == "staged":
            raise OSError("disk gone")
        real_replace(source, destination)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk gone"):
        move_into_place(tmp_path / "staged", tmp_path / "target")
    assert sorted(os.listdir(tmp_path)) == ["staged", "target"]
    assert os.listdir(tmp_path / "target") == ["old"]

    monkeypatch.setattr(os, "replace", real_replace)
    move_into_place(tmp_path / "staged", tmp_path / "target")
    assert os.listdir(tmp_path) == ["target"] and os.listdir(tmp_path / "target") == []
