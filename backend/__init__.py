"""The one place that decides NumPy (CPU) or CuPy (CUDA).

Everything else asks this module for `xp`; no file outside backend/ imports cupy.

    backend = get_backend("auto")          # or "cpu", "gpu"
    x = backend.asarray(host_array)        # host -> device (no copy on CPU)
    xp = array_module(x)                   # numpy or cupy, from the arrays themselves
    y = backend.to_numpy(x)                # device -> host
    backend.synchronize()                  # wait for queued GPU work before reading a clock

Layer code takes `xp` from its inputs with `array_module(...)`, so one code path serves both; its matrix
products go through `gemm(a, b, out)` (backend/gemm.py), which a CUDA graph can capture (backend/graphs.py).
`backend.standin` has a strict CuPy stand-in whose arrays count as device arrays here, so tests run every
GPU branch on the CPU and count its kernel launches. What a user is told to install when the GPU cannot be
used is nets' business (nets/devices.py): a BackendError here says what is wrong, and `fix` what kind of fix.
The Backend and array_module live in backend/core.py, which the package's other modules build on (it says in
which order: the package has no import circle).
"""

from __future__ import annotations

import os

import numpy

from .core import (Backend, BackendError, DeviceMismatchError, array_module, first_line as _first_line,
                   import_cupy as _import_cupy, is_device_array, to_numpy)
from .gemm import gemm
from .standin import standin_backend


__all__ = [
    "AUTO_CPU",
    "Backend",
    "BackendError",
    "DeviceMismatchError",
    "DEVICES",
    "GpuProblem",
    "HIDDEN_DEVICES",
    "array_module",
    "gemm",
    "get_backend",
    "gpu_problem",
    "is_device_array",
    "nvidia_driver_loaded",
]

DEVICES = ("cpu", "gpu", "auto")
HIDDEN_DEVICES = ("standin",)  # the strict CuPy stand-in (backend/standin): a whole GPU run on NumPy, for tests
# CUDA runtime errors that mean "no GPU to use" when no NVIDIA driver is loaded: cudaErrorInsufficientDriver (what
# the runtime says when libcuda is absent) and cudaErrorNoDevice.
NO_DEVICE_STATUSES = (35, 100)
NVIDIA_DRIVER_DIR = "/proc/driver/nvidia"  # present while the NVIDIA kernel driver is loaded
AUTO_CPU = "--device auto chose the CPU: "  # + Backend.why_cpu: the line the scripts print


class GpuProblem(str):
    """Why the GPU backend cannot run here: one sentence (a str), and what kind of problem it is.

    absent: no NVIDIA GPU is here at all (no driver loaded), so --device auto picks the CPU without a word.
    fix: INSTALL_CUPY, INSTALL_CUDA_LIBRARIES or None (a driver or device problem: nothing to install).
    """

    absent: bool
    fix: str | None

    def __new__(cls, text: str, *, absent: bool = False, fix: str | None = None):
        problem = super().__new__(cls, text)
        problem.absent, problem.fix = absent, fix
        return problem


INSTALL_CUPY = "install-cupy"
INSTALL_CUDA_LIBRARIES = "install-cuda-libraries"


def nvidia_driver_loaded() -> bool:
    """Whether the NVIDIA kernel driver is loaded here, which is where a GPU could be."""
    return os.path.exists(NVIDIA_DRIVER_DIR)


def gpu_problem() -> GpuProblem | None:
    """Why the GPU backend cannot run here, as one sentence; None when it can."""
    cupy = _import_cupy()
    if cupy is None:
        if not nvidia_driver_loaded():
            return GpuProblem("no NVIDIA GPU was found here (no NVIDIA driver is loaded, and CuPy is not installed).",
                              absent=True, fix=INSTALL_CUPY)
        return GpuProblem("CuPy is not installed.", fix=INSTALL_CUPY)
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as error:  # CUDARuntimeError without a driver
        if getattr(error, "status", None) in NO_DEVICE_STATUSES and not nvidia_driver_loaded():
            return GpuProblem("no NVIDIA GPU was found here (no NVIDIA driver is loaded).", absent=True)
        return GpuProblem(f"CuPy is installed but no working CUDA device was found ({_first_line(error)}); check the "
                          "NVIDIA driver.")
    if count < 1:
        return GpuProblem("no NVIDIA GPU was found here (CuPy and the driver work, but CUDA sees no device).",
                          absent=not nvidia_driver_loaded())
    try:
        # an elementwise kernel CuPy compiles at run time (NVRTC): zeros is a memset and a float sum is
        # CUB's precompiled reduction, so neither would find a missing NVRTC
        (cupy.arange(4, dtype=cupy.float32) * 2).sum().item()
    except Exception as error:
        return GpuProblem("CuPy is installed but could not compile and run a kernel on the GPU "
                          f"({_first_line(error)}).", fix=INSTALL_CUDA_LIBRARIES)
    try:
        matrix = cupy.asarray(numpy.ones((2, 2), dtype=numpy.float32))  # a copy, no kernel: this probes cuBLAS alone
        float((matrix @ matrix).sum())  # cuBLAS, which every layer's matrix products need
    except Exception as error:
        return GpuProblem(f"CuPy is installed but cuBLAS failed on the GPU ({_first_line(error)}).",
                          fix=INSTALL_CUDA_LIBRARIES)
    return None


def get_backend(device: str = "cpu", seed: int = 0) -> Backend:
    """Resolve a --device choice ("cpu", "gpu" or "auto") to a Backend.

    Raises BackendError, with one line saying what is missing, when "gpu" cannot run here.
    "auto" picks the GPU when CuPy and a CUDA device both work, else the CPU.
    """
    if device not in DEVICES + HIDDEN_DEVICES:
        raise BackendError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}.")
    if device == "cpu":
        return Backend("cpu", numpy, seed)
    if device == "standin":
        standin = standin_backend(seed)
        if standin is None:
            raise BackendError("--device standin needs cupy importable (its API is the stand-in's reference).",
                               fix=INSTALL_CUPY)
        return standin
    problem = gpu_problem()
    if problem is None:
        return Backend("gpu", _import_cupy(), seed)
    if device == "auto":
        return Backend("cpu", numpy, seed, why_cpu=problem)
    raise BackendError(f"--device gpu is not available: {problem}", fix=problem.fix)
