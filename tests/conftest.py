"""Shared fixtures: every suite is parametrised over backend (cpu, gpu) and, where it matters, dtype.

The gpu cases skip with the reason `backend.gpu_problem()` gives on a machine without CUDA;
on a machine with a GPU the very same tests run on CuPy.
"""

import numpy
import pytest

import backend as backend_module
from backend.cupy_api import cupy_api_standin

BACKEND_NAMES = ["cpu", "gpu"]


@pytest.fixture(params=BACKEND_NAMES)
def backend(request):
    """A Backend for each of cpu and gpu; gpu skips where CuPy or CUDA is missing."""
    if request.param == "gpu":
        problem = backend_module.gpu_problem()
        if problem is not None:
            pytest.skip(f"no GPU backend here: {problem}")
    return backend_module.get_backend(request.param, seed=0)


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    return numpy.dtype(request.param)


@pytest.fixture
def cupy_standin():
    """The NumPy stand-in that refuses names CuPy lacks; skips when cupy is not importable."""
    standin = cupy_api_standin()
    if standin is None:
        pytest.skip("cupy is not importable here; install the gpu extra (pip install -e .[gpu]) to run this check")
    return standin


def torch_or_skip():
    """Import torch, or skip the test with a reason (torch comes with the test extra)."""
    return pytest.importorskip("torch", reason="torch is not installed; pip install -e .[test]")
