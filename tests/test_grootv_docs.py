"""What a new user reads first: the GrootV parts of README.md and docs/ say how to enter the
environment before any command, and where the release's weights and repository are."""

import os
import re
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ORIGINAL_REPOSITORY = "https://github.com/EasonXiao-888/GrootVL"
ACTIVATE = "source .venv/bin/activate"


def read(path: str) -> str:
    with open(os.path.join(ROOT, path)) as f:
        return f.read()


def section(markdown: str, title: str) -> str:
    start = markdown.index(f"## {title}")
    end = markdown.find("\n## ", start + 1)
    return markdown[start:end if end >= 0 else None]


def first_command(markdown: str) -> int:
    """Where the first shell command running the project's Python (python -m, torchrun) is."""
    blocks = [m for m in re.finditer(r"```bash\n(.*?)```", markdown, re.S)
              if re.search(r"^\s*(python|torchrun|bash GrootV/scripts)", m.group(1), re.M)]
    assert blocks
    return blocks[0].start()


@pytest.mark.parametrize("path", ["README.md", "docs/classification.md", "docs/detection_segmentation.md"])
def test_the_environment_is_entered_before_the_first_command(path):
    text = read(path)
    assert ACTIVATE in text and ".venv/bin/python" in text
    assert text.index(ACTIVATE) < first_command(text)


def test_readme_setup_says_it_for_every_new_shell():
    setup = section(read("README.md"), "Set-up")
    assert ACTIVATE in setup and "new shell" in setup and ".venv/bin/torchrun" in setup


@pytest.mark.parametrize("path, title", [
    ("README.md", "GrootV: vision"),
    ("docs/classification.md", "The released weights"),
    ("docs/detection_segmentation.md", "Pretrained weights"),
])
def test_the_docs_say_where_the_released_weights_are(path, title):
    text = " ".join(section(read(path), title).split())  # line breaks as spaces
    assert ORIGINAL_REPOSITORY in text and "Model Zoo" in text and "ImageNet-1k Image Classification" in text


def test_no_download_links_are_made_up():
    """The weights' own links live in the original README; ours only say where to look."""
    for path in ("README.md", "docs/classification.md", "docs/detection_segmentation.md"):
        assert "drive.google.com" not in read(path)


@pytest.mark.skipif(not os.path.isfile(os.path.join(ROOT, ".venv", "bin", "activate")),
                    reason="no .venv in this checkout (scripts/setup.sh builds it)")
def test_a_new_shell_runs_the_documented_commands_after_activating():
    """Nothing but the activation: no PYTHONPATH, a bare PATH, as in a fresh terminal."""
    script = f"cd {ROOT} && {ACTIVATE} && python -m grootv.classification.main --help >/dev/null && command -v torchrun"
    done = subprocess.run(["env", "-i", "HOME=/tmp", "PATH=/usr/bin:/bin", "bash", "-c", script],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert os.path.samefile(done.stdout.strip(), os.path.join(ROOT, ".venv", "bin", "torchrun"))
