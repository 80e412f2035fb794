import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))

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
