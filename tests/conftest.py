"""Shared fixtures: every suite is parametrised over backend (cpu, standin, gpu) and, where it matters, dtype.

    cpu       NumPy.
    standin   the strict CuPy stand-in (backend/standin): NumPy memory behind CuPy's rules, so every GPU
              code path runs here, and anything CuPy would refuse fails the test. Skips only where cupy
              cannot be imported (it is the reference for CuPy's names).
    gpu       CuPy on a real device; skips with the reason `backend.gpu_problem()` gives where there is none.

On a machine without a GPU those skips are many (one per gpu case); `pytest_runtest_makereport` below files
them all under one place, so pytest's summary (`-ra`, setup.cfg) folds them into one line with their count
and reason, and every other skip keeps its own line.
"""

import numpy
import pytest

import backend as backend_module
from backend.standin import standin_backend, strict_cupy

BACKEND_NAMES = ["cpu", "standin", "gpu"]
NO_GPU = "no GPU backend here"
NO_CUPY = "cupy is not importable here; install the gpu extra (pip install -e .[gpu]) to run the stand-in cases"


def make_backend(name):
    """The Backend of cpu, standin or gpu; skips the test where the last two cannot run."""
    if name == "gpu":
        problem = backend_module.gpu_problem()
        if problem is not None:
            pytest.skip(f"{NO_GPU}: {problem}")
        return backend_module.get_backend("gpu", seed=0)
    if name == "standin":
        gpu = standin_backend(seed=0)
        if gpu is None:
            pytest.skip(NO_CUPY)
        return gpu
    return backend_module.get_backend("cpu", seed=0)


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: a case that runs on a GPU: the gpu param of the backend fixtures, and the "
                                       "GPU-only tests (`pytest -m gpu` selects them all)")
    config.addinivalue_line("markers", "standin: a case run on the strict CuPy stand-in by the backend fixtures "
                                       "(`pytest -m standin`)")


def pytest_collection_modifyitems(items):
    """Mark each case of the backend fixtures with its device, gpu or standin, so that `-m gpu` runs on a GPU just
    the cases that need one (scripts/gpu_check.sh)."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is None:
            continue
        for name in ("backend", "device_backend"):
            if callspec.params.get(name) in ("gpu", "standin"):
                item.add_marker(callspec.params[name])


@pytest.fixture(params=BACKEND_NAMES)
def backend(request):
    """A Backend for each of cpu, the CuPy stand-in and gpu; the last two skip where they cannot run."""
    return make_backend(request.param)


@pytest.fixture(params=["standin", "gpu"])
def device_backend(request):
    """A Backend for each device: the CuPy stand-in and gpu (CUDA graphs, streams); each skips where it cannot run."""
    return make_backend(request.param)


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    return numpy.dtype(request.param)


@pytest.fixture
def standin():
    """A fresh strict CuPy stand-in module (its own launch counter); skips when cupy is not importable."""
    xp = strict_cupy()
    if xp is None:
        pytest.skip(NO_CUPY)
    return xp


@pytest.fixture
def standin_gpu():
    """A gpu Backend on a fresh stand-in (backend.xp.counter counts its launches)."""
    gpu = standin_backend(seed=0)
    if gpu is None:
        pytest.skip(NO_CUPY)
    return gpu


def torch_or_skip():
    """Import torch, or skip the test with a reason (torch comes with the test extra)."""
    return pytest.importorskip("torch", reason="torch is not installed; pip install -e .[test]")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """File every "no GPU backend here" skip under this file, so the summary folds them into one line."""
    outcome = yield
    fold_gpu_skip(outcome.get_result())


def fold_gpu_skip(report) -> None:
    """A skip report whose reason is the missing GPU gets one location for all (pytest folds skips that share
    location and reason): `SKIPPED [95] tests/conftest.py: the gpu cases (cpu and standin ran): no GPU backend
    here: ...`."""
    longrepr = report.longrepr
    if report.skipped and isinstance(longrepr, tuple) and len(longrepr) == 3:
        reason = str(longrepr[2])
        if reason.removeprefix("Skipped: ").startswith(NO_GPU):
            report.longrepr = (__file__, None,
                               f"the gpu cases (cpu and standin ran): {reason.removeprefix('Skipped: ')}")


@pytest.fixture(autouse=True, scope="session")
def checksum_cache(tmp_path_factory):
    """Dataset checksums are remembered (nets/data/checksums.py) in a cache folder of the test session's own,
    never in the user's ~/.cache; subprocesses inherit it through the environment."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NETS_CACHE_DIR", str(tmp_path_factory.mktemp("nets-cache")))
        yield
