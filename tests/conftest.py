import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))

# Without a GPU, the Triton kernels of the GPU scans run on CPU tensors in Triton's
# interpreter. Triton reads this when tree_scan (first imported below this point) defines them.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def _scan_in_log_steps(self, inputs):
    """Triton's interpreter runs ``tl.associative_scan`` with a custom combine function one
    element at a time, in Python (hundreds of microseconds an element). This runs the same
    combine function on whole arrays, log2(n) times (Hillis-Steele): the same inclusive scan
    for any associative combine, as a GPU computes it in a tree order of its own."""
    axis = self.axis
    values = [tensor.handle.data.copy() for tensor in inputs]
    length = values[0].shape[axis]
    shift = 1
    while shift < length:
        # Element i meets element i - shift; the first `shift` meet themselves, and that
        # result is dropped (whole-length arrays: the interpreter wants power-of-2 shapes).
        source = np.concatenate([np.arange(shift), np.arange(length - shift)])
        earlier = [self.to_tensor(np.take(v, source, axis=axis), t.dtype) for v, t in zip(values, inputs)]
        later = [self.to_tensor(v, t.dtype) for v, t in zip(values, inputs)]
        with np.errstate(all="ignore"):
            combined = self.combine_fn.fn(*earlier, *later)
        region = [slice(None)] * values[0].ndim
        region[axis] = slice(shift, length)
        for value, result in zip(values, combined if isinstance(combined, tuple) else (combined,)):
            value[tuple(region)] = result.handle.data[tuple(region)]
        shift *= 2
    return [self.to_tensor(v, t.dtype) for v, t in zip(values, inputs)]


if os.environ.get("TRITON_INTERPRET") == "1":
    try:
        from triton.runtime.interpreter import ScanOps
    except ImportError:  # no Triton: its tests are skipped
        pass
    else:
        if hasattr(ScanOps, "generic_scan"):
            ScanOps.generic_scan = _scan_in_log_steps

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")

# Parametrise a test over these to run it on every device present (CUDA is reported as skipped elsewhere).
DEVICES = ["cpu", pytest.param("cuda", marks=requires_cuda)]


@pytest.fixture
def generator(request):
    """A generator seeded freshly for every test run; the seed is printed on failure.

    Set GROOTVL_TEST_SEED to replay a failure.
    """
    seed = int(os.environ.get("GROOTVL_TEST_SEED", torch.seed() % (2**31)))
    print(f"seed = {seed}")
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def one_thread():
    """Tiny tensors: a second thread only waits (and spins on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run_in_python_without(modules: tuple[str, ...], body: str) -> None:
    """Runs ``body`` (Python source that prints "ok" when it passes) in a fresh interpreter,
    from the repository root, where importing any of ``modules`` or their submodules fails:
    a machine without them."""
    preamble = textwrap.dedent(
        f"""
        import importlib.abc, sys

        class Hidden(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if any(name == m or name.startswith(m + ".") for m in {tuple(modules)!r}):
                    raise ImportError("hidden by the test")

        sys.meta_path.insert(0, Hidden())
        """
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, "-c", preamble + textwrap.dedent(body)], cwd=root, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


@pytest.fixture
def code_ran_marker(tmp_path):
    """A path that a hostile pickle creates when unpickled: it must still not exist at the end."""
    path = tmp_path / "the_file_ran_code"
    yield path
    assert not path.exists(), "unpickling the checkpoint ran its code"
