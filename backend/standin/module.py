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

Here: the module's names, ufuncs, creation and assignment; indexing.py, linalg.py and reductions.py hold
the rest (mixins of StrictCupy). Anything else CuPy has raises NotModelledError: model it before code
may use it.
"""

from __future__ import annotations

import numpy

from .array import DeviceArray, is_scalar
from .counter import Counter
from .indexing import Indexing
from .linalg import LinearAlgebra
from .reductions import Reductions
from .signatures import (CupySignatures, MissingInCupyError, NotModelledError, check_ufunc_keywords,
                         cupy_function)

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
        xp = self._xp
        check_ufunc_keywords(self.name, kwargs)
        out = kwargs.pop("out", None)
        inputs, outputs = list(args[:self.nin]), list(args[self.nin:])
        if out is not None:
            outputs = list(out) if isinstance(out, tuple) else [out]
        for value in inputs:
            xp._require_operand(value, f"cupy.{self.name}")
        for value in outputs:
            xp._require_device(value, f"cupy.{self.name} (out)")
        # CuPy copies an input that may overlap an output without being it, before the launch
        for position, value in enumerate(inputs):
            if isinstance(value, DeviceArray) and any(
                    value is not target and numpy.may_share_memory(value._data, target._data) for target in outputs):
                xp._launch("copy", f"cupy.{self.name} (input overlapping out=)")
                xp._alloc(f"cupy.{self.name} (input copy)")
                inputs[position] = value._wrap(value._data.copy())
        raw = [value._data if isinstance(value, DeviceArray) else value for value in inputs]
        if outputs:
            kwargs["out"] = tuple(target._data for target in outputs)
        result = self._numpy_ufunc(*raw, **kwargs)
        results = result if isinstance(result, tuple) else (result,)
        if all(numpy.size(r) for r in results):
            xp._launch("elementwise", f"cupy.{self.name}")
        if outputs:
            return outputs[0] if self.nout == 1 else tuple(outputs)
        wrapped = []
        for value in results:
            xp._alloc(f"cupy.{self.name} (result)")
            wrapped.append(DeviceArray(numpy.asarray(value), xp))
        return wrapped[0] if self.nout == 1 else tuple(wrapped)


class _Stream:
    def __init__(self, xp):
        self._xp = xp

    def synchronize(self):
        self._xp._sync("Stream.synchronize")


class _Runtime:
    def getDeviceCount(self):
        return 1

    def getDeviceProperties(self, device_id):
        return {"name": b"CuPy stand-in (NumPy)"}


class _Device:
    id = 0


class _Cuda:
    """The few cupy.cuda names the project touches."""

    def __init__(self, xp):
        self._xp = xp
        self.runtime = _Runtime()

    def get_current_stream(self):
        return _Stream(self._xp)

    def Device(self, device_id=0):  # noqa: N802 (CuPy's name)
        return _Device()


class StrictCupy(Indexing, LinearAlgebra, Reductions):
    """A stand-in for the `cupy` module: `xp` for code under test on a machine without a GPU.

    Its arrays are `DeviceArray`s, which `backend.is_device_array` takes for device arrays, so every GPU
    branch of the code runs. `counter` holds what CuPy would have done (counter.py).
    """

    def __init__(self, cupy):
        self._signatures = CupySignatures(cupy)
        self.counter = Counter()
        self.ndarray = DeviceArray
        self.cuda = _Cuda(self)
        self.__version__ = f"{cupy.__version__} (stand-in)"
        self._ufuncs: dict[str, StandinUfunc] = {}

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

    # ------------------------------------------------------------------ recording
    def _launch(self, kind, name):
        self.counter.record(kind, name)

    def _alloc(self, name, nbytes=0):
        self.counter.record("alloc", name)

    def _sync(self, name):
        self.counter.record("sync", name)
        self.counter.record("d2h", name)

    def _copy_of(self, data: numpy.ndarray, name: str) -> DeviceArray:
        """A new device array holding `data`, made by one copy kernel (astype, copy, flatten, ...)."""
        if data.size:
            self._launch("copy", name)
        self._alloc(name, data.nbytes)
        return DeviceArray(data, self)

    def _new(self, data: numpy.ndarray, name: str) -> DeviceArray:
        self._alloc(name, data.nbytes)
        return DeviceArray(data, self)

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

    # ------------------------------------------------------------------ creation
    def _host_to_device(self, value, dtype, name) -> DeviceArray:
        if isinstance(value, DeviceArray):
            raise AssertionError("not a host value")
        data = numpy.array(value, dtype=dtype, copy=True)
        if data.dtype.hasobject:
            raise TypeError(f"{name}: Unsupported type {type(value)}")
        self.counter.record("h2d", name)
        return self._new(data, name)

    @cupy_function()
    def asarray(self, a, dtype=None, order=None, *, copy=None, blocking=False):
        if isinstance(a, DeviceArray):
            self._require_device(a, "cupy.asarray")
            return a.astype(a.dtype if dtype is None else dtype, copy=bool(copy))
        return self._host_to_device(a, dtype, "cupy.asarray (host to device)")

    @cupy_function()
    def array(self, obj, dtype=None, copy=True, order="K", subok=False, ndmin=0, *, blocking=False):
        if isinstance(obj, DeviceArray):
            self._require_device(obj, "cupy.array")
            return obj.astype(obj.dtype if dtype is None else dtype, copy=bool(copy))
        return self._host_to_device(obj, dtype, "cupy.array (host to device)")

    @cupy_function()
    def ascontiguousarray(self, a, dtype=None):
        self._require_device(a, "cupy.ascontiguousarray")
        if a._data.flags.c_contiguous and (dtype is None or numpy.dtype(dtype) == a.dtype):
            return a
        return self._copy_of(numpy.ascontiguousarray(a._data, dtype=dtype), "ascontiguousarray")

    @cupy_function()
    def empty(self, shape, dtype=float, order="C"):
        return self._new(numpy.empty(shape, dtype=dtype, order=order), "empty")

    @cupy_function()
    def zeros(self, shape, dtype=float, order="C"):
        array = self._new(numpy.zeros(shape, dtype=dtype, order=order), "zeros")
        if array.size:
            self._launch_memset("zeros")
        return array

    @cupy_function()
    def ones(self, shape, dtype=float, order="C"):
        return self.full(shape, 1, dtype=dtype, order=order)

    @cupy_function()
    def full(self, shape, fill_value, dtype=None, order="C"):
        array = self._new(numpy.empty(shape, dtype=dtype or numpy.asarray(fill_value).dtype, order=order), "full")
        self._fill(array, fill_value)
        return array

    def _like(self, name, a, dtype, order, subok, shape):
        self._require_device(a, f"cupy.{name}")
        order = "C" if order == "K" else order
        return numpy.empty(a.shape if shape is None else shape, dtype=a.dtype if dtype is None else dtype, order=order)

    @cupy_function()
    def empty_like(self, prototype, dtype=None, order="K", subok=None, shape=None):
        return self._new(self._like("empty_like", prototype, dtype, order, subok, shape), "empty_like")

    @cupy_function()
    def zeros_like(self, a, dtype=None, order="K", subok=None, shape=None):
        array = self._new(self._like("zeros_like", a, dtype, order, subok, shape), "zeros_like")
        array._data[...] = 0
        if array.size:
            self._launch_memset("zeros_like")
        return array

    @cupy_function()
    def ones_like(self, a, dtype=None, order="K", subok=None, shape=None):
        array = self._new(self._like("ones_like", a, dtype, order, subok, shape), "ones_like")
        self._fill(array, 1)
        return array

    @cupy_function()
    def arange(self, start, stop=None, step=1, dtype=None):
        data = numpy.arange(start, stop, step, dtype=dtype) if stop is not None else numpy.arange(start, dtype=dtype)
        array = self._new(data, "arange")
        if array.size:
            self._launch("elementwise", "cupy.arange")
        return array

    # ------------------------------------------------------------------ filling and assignment
    def _launch_memset(self, name):
        self.counter.record("memset", name)

    def _fill(self, array: DeviceArray, value):
        """ndarray.fill: a memset for 0 on a contiguous array, else CuPy's fill kernel."""
        if isinstance(value, DeviceArray):
            if value.ndim:
                raise ValueError("non-scalar cupy.ndarray cannot be used for fill")
            value = value.astype(array.dtype, copy=False)
            zero = bool(value == 0)  # CuPy's `value == 0` on a device scalar reads it back: a sync
            array._data[...] = value._data
        else:
            host = numpy.asarray(value, dtype=array.dtype)
            if host.shape != ():
                raise ValueError("non-scalar numpy.ndarray cannot be used for fill")
            zero = host == 0
            array._data[...] = host
        if not array.size:
            return
        if zero and array._data.flags.c_contiguous:
            self._launch_memset("fill(0)")
        else:
            self._launch("elementwise", "fill")

    def _assign(self, target: DeviceArray, value):
        """target[...] = value for a basic-index view `target` (cupy _scatter_op 'update')."""
        if not isinstance(value, DeviceArray):
            if isinstance(value, numpy.ndarray) and value.ndim:
                raise ValueError("non-scalar numpy.ndarray cannot be used for fill (CuPy refuses assigning a "
                                 "host array to a device array: move it with backend.asarray first)")
            self._fill(target, value)
            return
        self._require_device(value, "setitem")
        same_layout = target.shape == value.shape and target.strides == value.strides
        if same_layout and target._data.__array_interface__["data"][0] == value._data.__array_interface__["data"][0]:
            return  # the same memory: CuPy skips it
        source = value._data
        if same_layout and target._data.flags.c_contiguous and target.dtype == value.dtype:
            self.counter.record("memcpy", "setitem (device to device)")
        else:
            if numpy.may_share_memory(target._data, value._data):
                self._launch("copy", "setitem (input overlapping the target)")
                self._alloc("setitem (input copy)")
                source = source.copy()
            if target.size:
                self._launch("copy", "setitem")
        target._data[...] = source

