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
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy


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


class BackendError(RuntimeError):
    """The device asked for cannot be used; the message says why in one line. fix: what would mend it (a
    GpuProblem's fix), for the caller to turn into a command (nets/devices.py); None when nothing to install."""

    def __init__(self, message: str, fix: str | None = None):
        super().__init__(message)
        self.fix = fix


class DeviceMismatchError(TypeError):
    """Arrays on the host and on the GPU met in one operation."""


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


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _import_cupy():
    """Return the cupy module, or None when it is not installed (or broken)."""
    try:
        import cupy  # the cupy import of the project (backend/cublas.py reaches CuPy's cuBLAS wrappers as CuPy does)
    except Exception:  # ImportError, or a CUDA library that fails to load
        return None
    return cupy


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
        return GpuProblem(f"CuPy is installed but could not compile and run a kernel on the GPU ({_first_line(error)}).",
                          fix=INSTALL_CUDA_LIBRARIES)
    try:
        matrix = cupy.asarray(numpy.ones((2, 2), dtype=numpy.float32))  # a copy, no kernel: this probes cuBLAS alone
        float((matrix @ matrix).sum())  # cuBLAS, which every layer's matrix products need
    except Exception as error:
        return GpuProblem(f"CuPy is installed but cuBLAS failed on the GPU ({_first_line(error)}).",
                          fix=INSTALL_CUDA_LIBRARIES)
    return None


@dataclass
class Backend:
    """An array module and the few operations that cross the host/device line.

    Its calls (name, asarray, to_numpy, upload, synchronize, take, zeros) are an engine's array I/O
    (nets/train/engine.py): the PyTorch engine offers the same calls over torch tensors.

    name: "cpu" or "gpu".
    xp: numpy or cupy.
    seed: seeds `rng`, a host `numpy.random.Generator` used for initialisation and shuffling
        (its state is plain data, so checkpoints can store and restore it exactly).
    why_cpu: for --device auto on the CPU, why the GPU could not be used (gpu_problem's sentence); else None.
    """

    name: str
    xp: object
    seed: int = 0
    rng: numpy.random.Generator = field(init=False, repr=False)
    why_cpu: str | None = None

    def __post_init__(self):
        self.rng = numpy.random.default_rng(self.seed)

    @property
    def is_gpu(self) -> bool:
        return self.name == "gpu"

    def asarray(self, array, dtype=None):
        """Host (or device) array -> array of this backend, optionally cast to `dtype`."""
        return self.xp.asarray(array, dtype=dtype)

    def to_numpy(self, array) -> numpy.ndarray:
        """Array of any backend -> numpy array on the host."""
        return to_numpy(array)

    def upload(self, into, host) -> None:
        """Copy the host array `host` into the existing array `into` (same shape; cast to its dtype), in place."""
        host = numpy.ascontiguousarray(host, dtype=into.dtype)
        if self.is_gpu:
            into.set(host)
        else:
            into[...] = host

    def take(self, array, index, axis=None, out=None):
        """xp.take: array's entries at `index` (a device vector) along `axis` (None: of the flattened array)."""
        return self.xp.take(array, index, axis=axis, out=out)

    def zeros(self, shape, dtype):
        """A new array of zeros on this backend's device; dtype a numpy dtype or its name."""
        return self.xp.zeros(shape, dtype=dtype)

    def synchronize(self) -> None:
        """Block until queued device work is done (a no-op on the CPU); call before reading a clock."""
        if self.is_gpu:
            self.xp.cuda.get_current_stream().synchronize()

    def device_name(self) -> str:
        """A human-readable name of the device, for logs and benchmark tables."""
        if not self.is_gpu:
            return "cpu"
        cupy = self.xp
        properties = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        name = properties["name"]
        return name.decode() if isinstance(name, bytes) else str(name)

    def library_versions(self) -> dict:
        """Versions of the array libraries in use (cupy only on the GPU)."""
        versions = {"numpy": numpy.__version__}
        if self.is_gpu:
            versions["cupy"] = self.xp.__version__
        return versions


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
        from .standin import standin_backend

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


def is_device_array(array) -> bool:
    """True for a CuPy array (checked by type, without importing cupy) or a stand-in device array."""
    kind = type(array)
    return kind.__module__.split(".")[0] == "cupy" or getattr(kind, "_nets_device_array", False)


def array_module(*arrays):
    """The array module (numpy, cupy, or the stand-in) of the given arrays; None entries are ignored.

    Raises DeviceMismatchError when host and device arrays are mixed.
    """
    device = None
    host = False
    for array in arrays:
        if array is None or numpy.isscalar(array):
            continue
        if is_device_array(array):
            device = array
        else:
            host = True
    if device is not None and host:
        raise DeviceMismatchError(
            "host (NumPy) and GPU (CuPy) arrays were mixed in one operation; "
            "move data with Backend.asarray / Backend.to_numpy first."
        )
    if device is None:
        return numpy
    return getattr(device, "_xp", None) or _import_cupy()


def to_numpy(array) -> numpy.ndarray:
    """Array of any backend -> numpy array on the host."""
    if is_device_array(array):
        return array.get()
    return numpy.asarray(array)


from .gemm import gemm  # noqa: E402  (gemm.py builds on array_module above)
