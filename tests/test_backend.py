"""The backend selector: device resolution, the GPU probe, array modules, host/device moves."""

import os
import re
import shlex
import shutil
import sys
from pathlib import Path

import numpy
import pytest

import backend
from backend import array_module
from nets.commands import install_hint, torch_install_hint
from nets.devices import open_backend, with_fix
from nets.errors import DeviceError

ROOT = Path(__file__).resolve().parents[1]


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
    monkeypatch.setattr(backend, "gpu_problem", lambda: backend.GpuProblem("CuPy is not installed.",
                                                                           fix=backend.INSTALL_CUPY))
    with pytest.raises(backend.BackendError) as error:
        backend.get_backend("gpu")
    assert str(error.value) == "--device gpu is not available: CuPy is not installed."
    assert error.value.fix == backend.INSTALL_CUPY
    with pytest.raises(DeviceError) as error:  # nets adds the command that installs it
        open_backend("gpu")
    message = str(error.value)
    assert message.startswith("--device gpu is not available: CuPy is not installed. Install CuPy with `")
    assert install_hint("gpu") in message and "cupy-cuda13x[ctk]" in message and "\n" not in message


def test_gpu_problem_without_cupy_names_the_install_only_where_a_driver_is(monkeypatch, tmp_path):
    monkeypatch.setattr(backend, "_import_cupy", lambda: None)
    monkeypatch.setattr(backend, "NVIDIA_DRIVER_DIR", str(tmp_path))  # a driver: a GPU is here
    problem = backend.gpu_problem()
    assert (problem, problem.absent, problem.fix) == ("CuPy is not installed.", False, backend.INSTALL_CUPY)
    said = []
    assert open_backend("auto", log=said.append).name == "cpu"
    assert said == [f"--device auto chose the CPU: {with_fix(problem, problem.fix)}"]
    assert f"Install CuPy with `{install_hint('gpu')}`" in said[0]
    monkeypatch.setattr(backend, "NVIDIA_DRIVER_DIR", str(tmp_path / "no-driver"))  # no GPU here at all
    problem = backend.gpu_problem()
    assert problem.absent and "no NVIDIA GPU was found here" in problem
    said = []
    assert open_backend("auto", log=said.append).name == "cpu" and said == []  # silent: nothing to fix here


class _NoDevice(Exception):
    status = 35  # cudaErrorInsufficientDriver: what the CUDA runtime says where no NVIDIA driver is loaded


class _CupyWithoutDevice:
    class cuda:
        class runtime:
            @staticmethod
            def getDeviceCount():
                raise _NoDevice("cudaErrorInsufficientDriver: CUDA driver version is insufficient for CUDA runtime "
                                "version")


def test_no_gpu_says_no_nvidia_gpu_was_found_and_auto_picks_the_cpu_without_a_word(monkeypatch, tmp_path):
    monkeypatch.setattr(backend, "_import_cupy", lambda: _CupyWithoutDevice)
    monkeypatch.setattr(backend, "NVIDIA_DRIVER_DIR", str(tmp_path / "no-driver"))
    problem = "no NVIDIA GPU was found here (no NVIDIA driver is loaded)."
    assert backend.gpu_problem() == problem and backend.gpu_problem().absent
    with pytest.raises(backend.BackendError, match=re.escape(f"--device gpu is not available: {problem}")):
        backend.get_backend("gpu")
    chosen = backend.get_backend("auto")
    assert (chosen.name, chosen.why_cpu) == ("cpu", problem)
    said = []
    open_backend("auto", log=said.append)
    assert said == []  # no word of CUDA or drivers where there is no GPU
    assert backend.get_backend("cpu").why_cpu is None
    monkeypatch.setattr(backend, "NVIDIA_DRIVER_DIR", str(tmp_path))  # a driver is loaded: then it is the suspect
    problem = backend.gpu_problem()
    assert problem.endswith("; check the NVIDIA driver.") and not problem.absent and problem.fix is None
    open_backend("auto", log=said.append)
    assert said == [f"--device auto chose the CPU: {problem}"]


def test_install_hints_are_commands_for_this_python_and_this_checkout(tmp_path, monkeypatch):
    for where in (ROOT, tmp_path):  # from the checkout, and from anywhere else
        monkeypatch.chdir(where)
        words = shlex.split(install_hint("plot"))
        assert os.path.abspath(shutil.which(words[0]) or words[0]) == os.path.abspath(sys.executable)
        assert words[1:5] == ["-m", "pip", "install", "-e"] and words[5].endswith("[plot]")
        assert (Path(words[5][:-len("[plot]")]) / "setup.cfg").resolve() == ROOT / "setup.cfg"
        torch_words = shlex.split(torch_install_hint())
        assert torch_words[:4] == words[:4] and torch_words[4:] == [
            "torch==2.13.0", "--index-url", "https://download.pytorch.org/whl/cpu"]
    assert "TORCH_SPEC ?= torch==2.13.0" in (ROOT / "Makefile").read_text()  # the pin make test installs


def test_auto_falls_back_to_cpu_without_gpu(monkeypatch):
    monkeypatch.setattr(backend, "gpu_problem", lambda: backend.GpuProblem("no GPU", absent=True))
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


def test_standin_arrays_are_device_arrays_of_their_own_module(standin):
    device = standin.asarray(numpy.zeros(3))
    assert backend.is_device_array(device) and not backend.is_device_array(numpy.zeros(3))
    assert backend.array_module(device, None, 2.0) is standin
    with pytest.raises(backend.DeviceMismatchError, match="mixed"):
        backend.array_module(device, numpy.zeros(3))


class FakeCupy:
    """Enough of cupy for gpu_problem: a device, a kernel compiler that may fail, a cuBLAS that may fail."""

    float32 = numpy.float32

    def __init__(self, kernel_error=None, matmul_error=None):
        self.kernel_error, self.matmul_error = kernel_error, matmul_error
        self.cuda = type("cuda", (), {"runtime": type("runtime", (), {"getDeviceCount": staticmethod(lambda: 1)})})

    def arange(self, count, dtype):
        if self.kernel_error:
            raise RuntimeError(self.kernel_error)
        return numpy.arange(count, dtype=dtype)

    def asarray(self, host):
        error = self.matmul_error

        class Matrix(numpy.ndarray):
            def __matmul__(self, other):
                if error:
                    raise RuntimeError(error)
                return numpy.asarray(self) @ numpy.asarray(other)

        return numpy.asarray(host).view(Matrix)


def test_gpu_problem_compiles_a_kernel_and_runs_a_matmul(monkeypatch):
    monkeypatch.setattr(backend, "_import_cupy", lambda: FakeCupy())
    assert backend.gpu_problem() is None
    monkeypatch.setattr(backend, "_import_cupy", lambda: FakeCupy(kernel_error="nvrtc: libnvrtc.so.12 not found"))
    problem = backend.gpu_problem()
    assert "could not compile and run a kernel" in problem and "libnvrtc" in problem
    assert problem.fix == backend.INSTALL_CUDA_LIBRARIES and "cupy-cuda12x[ctk]" in with_fix(problem, problem.fix)
    monkeypatch.setattr(backend, "_import_cupy", lambda: FakeCupy(matmul_error="CUBLAS_STATUS_NOT_INITIALIZED\nmore"))
    problem = backend.gpu_problem()
    assert "cuBLAS failed" in problem and "CUBLAS_STATUS_NOT_INITIALIZED" in problem and "\n" not in problem
    advice = with_fix(problem, problem.fix)
    assert "cupy-cuda12x[ctk]" in advice and "cupy-cuda13x" in advice and "\n" not in advice


def test_gpu_backend_round_trip(backend):
    host = numpy.arange(12, dtype=numpy.float32).reshape(3, 4)
    device = backend.asarray(host)
    assert array_module(device) is backend.xp
    backend.synchronize()
    numpy.testing.assert_array_equal(backend.to_numpy(device * 2), host * 2)
