"""What every other backend module builds on: the Backend, which array module an array belongs to, the errors, and
the one import of cupy. It imports no other module of backend/, so the package has no import circle:

    core  <-  layout  <-  cublas  <-  graphs  <-  gemm  <-  backend/__init__.py
    core  <-  standin/                                     (standin/ builds on core alone)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy

__all__ = ["Backend", "BackendError", "DeviceMismatchError", "array_module", "import_cupy", "is_device_array",
           "to_numpy"]


class BackendError(RuntimeError):
    """The device asked for cannot be used; the message says why in one line. fix: what would mend it (a
    GpuProblem's fix), for the caller to turn into a command (nets/devices.py); None when nothing to install."""

    def __init__(self, message: str, fix: str | None = None):
        super().__init__(message)
        self.fix = fix


class DeviceMismatchError(TypeError):
    """Arrays on the host and on the GPU met in one operation."""


def import_cupy():
    """Return the cupy module, or None when it is not installed (or broken)."""
    try:
        import cupy  # the cupy import of the project (backend/cublas.py reaches CuPy's cuBLAS wrappers as CuPy does)
    except Exception:  # ImportError, or a CUDA library that fails to load
        return None
    return cupy


def first_line(error: BaseException) -> str:
    """The first line of an error's message, or its type's name when it has none."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


@dataclass
class Backend:
    """An array module and the few operations that cross the host/device line.

    Its calls (name, asarray, to_numpy, upload, synchronize, take, zeros) are an engine's ArrayBackend
    (nets/train/engine.py): the PyTorch engine's TorchBackend offers the same calls over torch tensors.

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
    return getattr(device, "_xp", None) or import_cupy()


def to_numpy(array) -> numpy.ndarray:
    """Array of any backend -> numpy array on the host."""
    if is_device_array(array):
        return array.get()
    return numpy.asarray(array)
