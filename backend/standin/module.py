"""The stand-in for `xp`: CuPy's API over NumPy, refusing what CuPy refuses and counting what CuPy launches.

Each modelled operation follows what the CuPy source does on a GPU (cupy/_core, cupy/cuda/cub.pyx):

    ufunc           one elementwise kernel; first a copy of every input that overlaps a given `out`
                    without being it (_kernel.pyx, _copy_in_args_if_needed); refuses NumPy arrays
    matmul, dot     one cuBLAS GEMM; a copy of an operand that is neither C- nor F-contiguous, and a
                    temporary plus a copy when `out` is not C-contiguous or overlaps an operand
                    (_routines_linalg.pyx, tensordot_core)
    sum, max, ...   CuPy's CUB dispatch: a full reduction is cub::DeviceReduce (one kernel up to
                    CUB_SINGLE_TILE elements, two above, plus a copy for `out=` or argmax's key); a
                    reduction over the trailing (C) or leading (F) axes is one segmented kernel (plus a
                    copy for `out=`); anything else is CuPy's own reduction kernel, two passes for a full
                    reduction of 128 or more contiguous elements (cub.pyx, _cub_reduction.pyx)
    take            one gather kernel; indices from the host are a transfer first
    a[...] = b      a device memcpy when layouts match, else one copy kernel; a scalar is a fill
                    (a memset when it is 0 and the target is contiguous)
    zeros, empty    an allocation (and a memset for zeros)
    take_along_axis, put_along_axis   aranges, a memset and index arithmetic before the gather/scatter

Here: the module's names, its ufuncs, and how device work runs: now, or, while a stream captures a CUDA graph,
recorded for replay (capture.py). creation.py, indexing.py, linalg.py and reductions.py hold the rest (mixins
of StrictCupy); cublas.py emulates the libcublas that backend/cublas.py calls directly during capture.
Anything else CuPy has raises NotModelledError: model it before code may use it.
"""

from __future__ import annotations

import os

import numpy

from .array import DeviceArray, StandinMemory, is_scalar, kinds
from .capture import (D2H_REFUSED, H2D_REFUSED, STREAM_CAPTURE_UNSUPPORTED, Allocation, CaptureAllocationError,
                      CaptureStreamError, KernelNotLoadedError, StreamState, make_cuda)
from .counter import Counter, Event, call_site
from .creation import Creation
from .cublas import EmulatedCublas
from .indexing import Indexing
from .linalg import LinearAlgebra
from .reductions import Reductions
from .signatures import CupySignatures, MissingInCupyError, NotModelledError, check_ufunc_keywords

_PASSTHROUGH = (type, numpy.dtype, float, int, bool, complex, str)


class StandinUfunc:
    """A CuPy ufunc of the stand-in: checks arguments as CuPy does, computes with NumPy, records the launch."""

    def __init__(self, xp, name):
        self._xp = xp
        self.name = name
        self._numpy_ufunc = getattr(numpy, name)
        self.nin, self.nout = self._numpy_ufunc.nin, self._numpy_ufunc.nout

    def __repr__(self):
        return f"<stand-in ufunc cupy.{self.name}>"

    def __call__(self, *args, **kwargs):
        xp, ufunc, name = self._xp, self._numpy_ufunc, f"cupy.{self.name}"
        check_ufunc_keywords(self.name, kwargs)
        out = kwargs.pop("out", None)
        inputs, outputs = list(args[:self.nin]), list(args[self.nin:])
        if out is not None:
            outputs = list(out) if isinstance(out, tuple) else [out]
        for value in inputs:
            xp._require_operand(value, name)
        for value in outputs:
            xp._require_device(value, f"{name} (out)")
        # CuPy copies an input that may overlap an output without being it, before the launch
        for position, value in enumerate(inputs):
            if isinstance(value, DeviceArray) and any(
                    value is not target and numpy.may_share_memory(value._data, target._data) for target in outputs):
                inputs[position] = xp._copy_of(lambda data=value._data: data.copy(), f"{name} (input overlapping out=)",
                                               value)
        devices = [value for value in inputs if isinstance(value, DeviceArray)]
        raw = [value._data if isinstance(value, DeviceArray) else value for value in inputs]
        if outputs:
            targets = tuple(target._data for target in outputs)
            xp._run(lambda: ufunc(*raw, out=targets, **kwargs), *devices, *outputs,
                    dry=lambda: ufunc(*raw, out=tuple(numpy.empty_like(t) for t in targets), **kwargs))
            if all(t.size for t in targets):
                xp._launch("elementwise", name, kinds(*inputs, "->", *outputs))
            return outputs[0] if self.nout == 1 else tuple(outputs)

        def result(position):
            value = ufunc(*raw, **kwargs)
            return numpy.asarray(value[position] if self.nout > 1 else value)

        wrapped = [xp._produce(lambda i=i: result(i), f"{name} (result)", *devices) for i in range(self.nout)]
        if all(array.size for array in wrapped):
            xp._launch("elementwise", name, kinds(*inputs, "->", *wrapped))
        return wrapped[0] if self.nout == 1 else tuple(wrapped)


class _Core:
    """cupy._core's get_compute_type, as CuPy decides it for a matmul: TF32 for float32 where CUPY_TF32 is above 0
    (read at the first call, as CuPy reads it), else the default (cupy/_core/_routines_linalg.pyx)."""

    COMPUTE_TYPE_DEFAULT, COMPUTE_TYPE_TF32 = 1, 7

    def __init__(self):
        self._types: dict = {}

    def get_compute_type(self, dtype):
        dtype = numpy.dtype(dtype)
        if dtype not in self._types:
            tf32 = dtype.char in "fF" and int(os.getenv("CUPY_TF32", "0")) > 0
            self._types[dtype] = self.COMPUTE_TYPE_TF32 if tf32 else self.COMPUTE_TYPE_DEFAULT
        return self._types[dtype]


class StrictCupy(Creation, Indexing, LinearAlgebra, Reductions):
    """A stand-in for the `cupy` module: `xp` for code under test on a machine without a GPU.

    Its arrays are `DeviceArray`s, which `backend.is_device_array` takes for device arrays, so every GPU
    branch of the code runs. `counter` holds what CuPy would have done (counter.py); `cuda` has CuPy's streams
    and capture (capture.py).
    """

    def __init__(self, cupy):
        self._signatures = CupySignatures(cupy)
        self.counter = Counter()
        self.ndarray = DeviceArray
        self._streams = StreamState()
        self.cuda = make_cuda(self)
        self.__version__ = f"{cupy.__version__} (stand-in)"
        self._ufuncs: dict[str, StandinUfunc] = {}
        self._cublas = None
        self._loaded_kernels: set = set()  # (name, signature) of every kernel launched outside a capture
        self._core = _Core()

    def __repr__(self):
        return f"<strict CuPy stand-in of cupy {self.__version__}>"

    # ------------------------------------------------------------------ names
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        signatures = self.__dict__["_signatures"]
        if not signatures.has(name):
            raise MissingInCupyError(f"xp.{name} does not exist in CuPy; the code would fail on the GPU.")
        if signatures.is_ufunc(name):
            ufunc = self._ufuncs.get(name)
            if ufunc is None:
                ufunc = self._ufuncs[name] = StandinUfunc(self, name)
            return ufunc
        value = getattr(numpy, name, None)
        if isinstance(value, _PASSTHROUGH) or name in ("newaxis", "pi", "e", "inf", "nan"):
            return value  # dtypes and constants are NumPy's own objects in CuPy too
        raise NotModelledError(f"xp.{name} exists in CuPy, but the stand-in does not model what it launches; "
                               "model it in backend/standin/module.py.")

    def emulated_cublas(self):
        """The stand-in's libcublas (cublas.py): what backend/cublas.py calls through ctypes on a real GPU."""
        if self._cublas is None:
            self._cublas = EmulatedCublas(self)
        return self._cublas

    def _raw_memory(self, size) -> StandinMemory:
        """cupy.cuda.Memory(size): device memory outside the pool (cudaMalloc); refused during capture."""
        if self._recording() is not None:
            raise CaptureAllocationError("cupy.cuda.Memory (cudaMalloc) while the stream is capturing; allocate it "
                                         "before capture.")
        return StandinMemory(self, size)

    def _pointer_to(self, array):
        """DeviceArray.data: a pointer the emulated cuBLAS can resolve to the array's memory."""
        return self.emulated_cublas().pointer_to(array)

    # ------------------------------------------------------------------ device work: run now, or record under capture
    def _recording(self):
        """The capture that device work issued now joins, or None when it runs now. Refuses work on a stream other
        than the capturing one (capture.py)."""
        capture = self._streams.capture
        if capture is None:
            return None
        current = self.cuda.get_current_stream()
        if current is not capture.stream:
            raise CaptureStreamError(
                f"device work on {current!r} while {capture.stream!r} is capturing: it would run now, outside the "
                "graph, and never again on a replay; issue all of a captured step's work on the capturing stream.")
        return capture

    def _event(self, kind, name):
        capture = self._recording()
        if capture is None:
            self.counter.record(kind, name)
        else:
            capture.events.append(Event(kind, name, call_site()))

    def _launch(self, kind, name, signature=()):
        """A kernel launch: `name` and `signature` (the dtypes it runs on, a Python scalar by its type's name) say
        which kernel. Outside a capture the kernel is then loaded; inside one, a kernel never loaded is refused."""
        self._kernel_loaded(name, signature)
        self._event(kind, name)

    def _kernel_loaded(self, name, signature) -> None:
        key = (name, tuple(signature))
        if self._streams.capture is None:
            self._loaded_kernels.add(key)
        elif key not in self._loaded_kernels:
            shown = ", ".join(map(str, key[1]))
            raise KernelNotLoadedError(
                f"{name} ({shown}) is launched for the first time while the stream captures: CuPy would compile it and "
                "load its module during the capture. Run the step eagerly once, launching the same kernels, before "
                "capturing it.")

    def _launch_memset(self, name):
        self._event("memset", name)

    def _alloc(self, name, nbytes=0):
        if self._recording() is not None and not self._streams.async_pool():
            raise CaptureAllocationError(
                f"{name}: an allocation from CuPy's default memory pool while the stream is capturing; the block is "
                "not the graph's, so the pool can give it to another array after capture and every replay would "
                "write there. Allocate it before capture (a buffer kept between steps), or capture with "
                "cupy.cuda.set_allocator(cupy.cuda.MemoryAsyncPool().malloc).")
        self._event("alloc", name)

    def _run(self, work, *arrays, dry=None):
        """Device work: `work()` now, or, during capture, recorded for the graph without running (after `dry()`,
        which checks the call's arguments as running it would, without writing device memory). `arrays`: the
        device arrays it reads or writes (a replay refuses to run once one of them is freed)."""
        capture = self._recording()
        if capture is None:
            work()
            return
        if dry is not None:
            dry()
        capture.touch(arrays)
        capture.work.append(work)

    def _produce(self, compute, name, *sources, counted=True) -> DeviceArray:
        """A new device array holding compute(), a fresh numpy array computed from device memory (`sources`).
        During capture its contents are garbage (NaN) until a replay computes them. counted=False: the caller
        has recorded the allocation."""
        if counted:
            self._alloc(name)
        data = numpy.asarray(compute())
        array = DeviceArray(data, self, Allocation(name))
        capture = self._recording()
        if capture is not None:
            _poison(data)
            capture.touch(sources + (array,))
            capture.work.append(lambda: numpy.copyto(data, compute(), casting="unsafe"))
        return array

    def _copy_of(self, compute, name, *sources) -> DeviceArray:
        """A new device array made by one copy kernel (astype, copy, flatten, ...) from compute()."""
        array = self._produce(compute, name, *sources)
        if array.size:
            self._launch("copy", name, kinds(*sources, "->", array))
        return array

    def _new(self, data: numpy.ndarray, name: str) -> DeviceArray:
        """A new, uninitialised device array around `data` (empty, zeros before its memset, ...)."""
        self._alloc(name, data.nbytes)
        return DeviceArray(data, self, Allocation(name))

    # ------------------------------------------------------------------ the host and the device
    def _cuda_error(self, status):
        return self._signatures.cupy.cuda.runtime.CUDARuntimeError(status)

    def _sync(self, name):
        """A read back to the host (get, item, float, ...): a sync and a copy; refused while capturing."""
        if self._recording() is not None:
            raise RuntimeError(D2H_REFUSED)
        self.counter.record("sync", name)
        self.counter.record("d2h", name)

    def _h2d(self, name):
        """A copy from the host into device memory; refused while capturing."""
        if self._recording() is not None:
            raise RuntimeError(H2D_REFUSED)
        self.counter.record("h2d", name)

    def _stream_sync(self, name, stream=None):
        """Stream.synchronize (stream) or a device-wide synchronize (None): during capture CUDA fails with
        cudaErrorStreamCaptureUnsupported and invalidates the capture."""
        capture = self._streams.capture
        if capture is not None and (stream is None or stream is capture.stream):
            capture.invalidated_by = name
            raise self._cuda_error(STREAM_CAPTURE_UNSUPPORTED)
        self.counter.record("sync", name)

    # ------------------------------------------------------------------ argument checks
    def _require_device(self, value, what):
        if isinstance(value, DeviceArray):
            if value._xp is not self:
                raise ValueError(f"{what}: the array belongs to another stand-in device.")
            return
        if isinstance(value, numpy.ndarray):
            raise TypeError(f"{what}: Unsupported type {type(value)} (a NumPy array on the host; CuPy refuses "
                            "it: move it with backend.asarray first).")
        raise TypeError(f"{what}: Unsupported type {type(value)}; a device array is needed.")

    def _require_operand(self, value, what):
        if not is_scalar(value):
            self._require_device(value, what)


def _poison(data: numpy.ndarray) -> None:
    """What memory a capture allocated holds until a replay writes it: NaN, or bytes of 0xA5."""
    if data.dtype.kind in "fc":
        data.fill(numpy.nan)
    elif data.size:
        data.reshape(-1).view(numpy.uint8).fill(0xA5)
