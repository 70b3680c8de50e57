"""The backend selector: device resolution, array modules, host/device moves, and the CuPy-API stand-in."""

import numpy
import pytest

import backend
from backend import array_module
from backend.cupy_api import CupyApiStandIn, MissingInCupyError


def test_cpu_backend_is_numpy():
    cpu = backend.get_backend("cpu", seed=3)
    assert cpu.name == "cpu" and cpu.xp is numpy and not cpu.is_gpu
    host = numpy.arange(6, dtype=numpy.float32)
    assert cpu.asarray(host, dtype="float64").dtype == numpy.float64
    assert isinstance(cpu.to_numpy(cpu.asarray(host)), numpy.ndarray)
    cpu.synchronize()  # a no-op that must not fail


def test_backend_rng_is_seeded():
    first = backend.get_backend("cpu", seed=7).rng.standard_normal(5)
    second = backend.get_backend("cpu", seed=7).rng.standard_normal(5)
    other = backend.get_backend("cpu", seed=8).rng.standard_normal(5)
    numpy.testing.assert_array_equal(first, second)
    assert not numpy.array_equal(first, other)


def test_unknown_device_is_a_clear_error():
    with pytest.raises(backend.BackendError, match="unknown device 'tpu'"):
        backend.get_backend("tpu")


def test_gpu_without_cuda_says_what_is_missing(monkeypatch):
    monkeypatch.setattr(backend, "gpu_problem", lambda: "CuPy is not installed; install it with `pip install -e .[gpu]`")
    with pytest.raises(backend.BackendError) as error:
        backend.get_backend("gpu")
    message = str(error.value)
    assert "--device gpu is not available" in message and "pip install -e .[gpu]" in message
    assert "\n" not in message


def test_gpu_problem_without_cupy_names_the_install(monkeypatch):
    monkeypatch.setattr(backend, "_import_cupy", lambda: None)
    assert "pip install -e .[gpu]" in backend.gpu_problem()


def test_auto_falls_back_to_cpu_without_gpu(monkeypatch):
    monkeypatch.setattr(backend, "gpu_problem", lambda: "no GPU")
    assert backend.get_backend("auto").name == "cpu"


def test_gpu_problem_is_one_line_or_none():
    problem = backend.gpu_problem()
    assert problem is None or (problem and "\n" not in problem)


def test_array_module_of_host_arrays_is_numpy():
    assert backend.array_module(numpy.zeros(2), None, numpy.ones(3)) is numpy


class FakeDeviceArray:
    """Looks like a CuPy array to `is_device_array` (module name starts with 'cupy')."""


FakeDeviceArray.__module__ = "cupy._core.core"


def test_mixing_host_and_device_arrays_is_an_error():
    assert backend.is_device_array(FakeDeviceArray())
    with pytest.raises(backend.DeviceMismatchError, match="mixed"):
        backend.array_module(numpy.zeros(2), FakeDeviceArray())


def test_forced_array_module_is_scoped():
    sentinel = object()
    with backend.forced_array_module(sentinel):
        assert backend.array_module(numpy.zeros(1)) is sentinel
    assert backend.array_module(numpy.zeros(1)) is numpy


def test_standin_refuses_names_cupy_lacks(cupy_standin):
    assert cupy_standin.matmul is numpy.matmul
    assert cupy_standin.lib.stride_tricks.as_strided is numpy.lib.stride_tricks.as_strided
    with pytest.raises(MissingInCupyError, match="xp.no_such_function does not exist in CuPy"):
        cupy_standin.no_such_function
    assert "xp.matmul" in cupy_standin.names_used


def test_standin_compares_against_the_cupy_module():
    class Narrow:  # a "cupy" that has only `zeros`
        zeros = None

    standin = CupyApiStandIn(numpy, Narrow())
    assert standin.zeros is numpy.zeros
    with pytest.raises(MissingInCupyError):
        standin.ones


def test_gpu_backend_round_trip(backend):
    host = numpy.arange(12, dtype=numpy.float32).reshape(3, 4)
    device = backend.asarray(host)
    assert array_module(device) is backend.xp
    backend.synchronize()
    numpy.testing.assert_array_equal(backend.to_numpy(device * 2), host * 2)
