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

Anything else CuPy has raises NotModelledError: model it here before code may use it.
"""

from __future__ import annotations

import math
import numbers

import numpy

from .array import DeviceArray, is_scalar
from .counter import Counter
from .signatures import (CupySignatures, MissingInCupyError, NotModelledError, check_ufunc_keywords,
                         cupy_function)

# cub::DeviceReduce runs a single-tile kernel up to this many items (256 threads x 16 items for 4-byte
# types in CUB's tuning policies); above it, a reduce pass and a single-tile pass.
CUB_SINGLE_TILE = 4096
# CuPy's own reduction kernel tries CUB's block reduction from this many contiguous items up
# (_cub_reduction.pyx, CUB_REDUCE_SIZE_THRESHOLD).
CUB_BLOCK_REDUCTION_MIN = 128
_CUB_SUM_DTYPES = {numpy.dtype(t) for t in ("int64", "uint64", "float16", "float32", "float64",
                                             "complex64", "complex128")}
_CUB_DTYPES = {numpy.dtype(t) for t in ("int8", "uint8", "int16", "uint16", "int32", "uint32", "int64",
                                         "uint64", "float16", "float32", "float64", "complex64", "complex128")}
_NUMPY_REDUCTIONS = {"sum": numpy.sum, "mean": numpy.mean, "max": numpy.max, "min": numpy.min,
                     "argmax": numpy.argmax, "argmin": numpy.argmin, "any": numpy.any, "all": numpy.all}
_PASSTHROUGH = (type, numpy.dtype, float, int, bool, complex, str)


def _reduction_axes(axis, ndim) -> tuple[tuple, tuple]:
    if axis is None:
        reduce = tuple(range(ndim))
    else:
        reduce = tuple(sorted(a % ndim for a in (axis if isinstance(axis, tuple) else (axis,))))
    return reduce, tuple(a for a in range(ndim) if a not in reduce)


def _trailing_or_leading(reduce_axes, ndim, order) -> bool:
    """cub._cub_device_segmented_reduce_axis_compatible: consecutive axes at the fast end of the layout."""
    if not reduce_axes or list(reduce_axes) != list(range(reduce_axes[0], reduce_axes[-1] + 1)):
        return False
    return reduce_axes[-1] == ndim - 1 if order == "C" else reduce_axes[0] == 0


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


class _MemoryPool:
    """cupy.get_default_memory_pool(): bytes this stand-in allocated (nothing is ever freed)."""

    def __init__(self, xp):
        self._xp = xp

    def used_bytes(self):
        return self._xp.allocated_bytes

    def total_bytes(self):
        return self._xp.allocated_bytes

    def free_all_blocks(self):
        pass


class StrictCupy:
    """A stand-in for the `cupy` module: `xp` for code under test on a machine without a GPU.

    Its arrays are `DeviceArray`s, which `backend.is_device_array` takes for device arrays, so every GPU
    branch of the code runs. `counter` holds what CuPy would have done (counter.py).
    """

    def __init__(self, cupy):
        self._signatures = CupySignatures(cupy)
        self.counter = Counter()
        self.ndarray = DeviceArray
        self.cuda = _Cuda(self)
        self.allocated_bytes = 0
        self.__version__ = f"{cupy.__version__} (stand-in)"
        self._ufuncs: dict[str, StandinUfunc] = {}
        self._pool = _MemoryPool(self)

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
        self.allocated_bytes += int(nbytes)
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

    def get_default_memory_pool(self):
        return self._pool

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

    # ------------------------------------------------------------------ indexing
    def _index_parts(self, key, what):
        """Turn device arrays in an index into numpy index arrays; count host index arrays as transfers."""
        parts, arrays = [], 0
        for part in key if isinstance(key, tuple) else (key,):
            if isinstance(part, DeviceArray):
                self._require_device(part, what)
                parts.append(part._data)
                arrays += 1
            elif isinstance(part, (numpy.ndarray, list)):
                self.counter.record("h2d", f"{what} (host index array)")
                self._alloc(f"{what} (index array)")
                parts.append(numpy.asarray(part))
                arrays += 1
            else:
                parts.append(part)
        if any(getattr(part, "dtype", None) == numpy.bool_ for part in parts):
            self._sync(f"{what} with a boolean mask (nonzero)")
        return tuple(parts), arrays

    def _advanced_getitem(self, array, key):
        parts, arrays = self._index_parts(key, "getitem")
        if arrays > 1:
            self._launch_memset("getitem (multiple index arrays)")
            for _ in range(arrays):
                self._launch("elementwise", "getitem (index arithmetic)")
        result = array._data[parts]
        if result.size:
            self._launch("gather", "getitem (advanced index)")
        return self._new(numpy.asarray(result), "getitem (advanced index)")

    def _advanced_setitem(self, array, key, value):
        parts, arrays = self._index_parts(key, "setitem")
        if arrays > 1:
            self._launch_memset("setitem (multiple index arrays)")
            for _ in range(arrays):
                self._launch("elementwise", "setitem (index arithmetic)")
        if isinstance(value, DeviceArray):
            self._require_device(value, "setitem")
            value = value._data
        elif not is_scalar(value):
            raise ValueError("non-scalar numpy.ndarray cannot be used for fill")
        array._data[parts] = value
        self._launch("scatter", "setitem (advanced index)")

    @cupy_function()
    def take(self, a, indices, axis=None, out=None):
        self._require_device(a, "cupy.take")
        if isinstance(indices, DeviceArray):
            self._require_device(indices, "cupy.take")
            index = indices._data
        elif isinstance(indices, numbers.Integral):
            index = int(indices)
        else:
            self.counter.record("h2d", "cupy.take (indices from the host)")
            self._alloc("cupy.take (indices)")
            index = numpy.asarray(indices)
        result = numpy.take(a._data, index, axis=axis)
        if out is not None:
            self._require_device(out, "cupy.take (out)")
            if out.dtype != a.dtype:
                raise TypeError("Output dtype mismatch")
            if out.shape != result.shape:
                raise ValueError("Output shape mismatch")
            out._data[...] = result
        if numpy.size(result):
            self._launch("gather", "cupy.take")
        return out if out is not None else self._new(numpy.asarray(result), "cupy.take (result)")

    @cupy_function()
    def where(self, condition, x=None, y=None):
        if x is None or y is None:
            raise NotModelledError("cupy.where(condition) (nonzero) is not modelled by the stand-in.")
        self._require_device(condition, "cupy.where")
        if condition.dtype != numpy.bool_:
            condition = condition.astype(numpy.bool_)
        return self._where(condition, x, y)

    def _where(self, condition, x, y):
        for value in (x, y):
            self._require_operand(value, "cupy.where")
        raw = [v._data if isinstance(v, DeviceArray) else v for v in (condition, x, y)]
        result = numpy.where(*raw)
        if result.size:
            self._launch("elementwise", "cupy.where")
        return self._new(result, "cupy.where (result)")

    @cupy_function()
    def take_along_axis(self, a, indices, axis):
        self._require_device(a, "cupy.take_along_axis")
        self._require_device(indices, "cupy.take_along_axis")
        # cupy/_indexing/indexing.py: an arange per other axis, then a[tuple of index arrays]
        for _ in range(a.ndim - 1):
            self._alloc("take_along_axis (arange)")
            self._launch("elementwise", "take_along_axis (arange)")
        self._alloc("take_along_axis (flat index)")
        self._launch_memset("take_along_axis (flat index)")
        for _ in range(a.ndim):
            self._launch("elementwise", "take_along_axis (index arithmetic)")
        self._launch("gather", "take_along_axis")
        return self._new(numpy.take_along_axis(a._data, indices._data, axis), "take_along_axis (result)")

    @cupy_function()
    def put_along_axis(self, arr, indices, values, axis):
        self._require_device(arr, "cupy.put_along_axis")
        self._require_device(indices, "cupy.put_along_axis")
        for _ in range(arr.ndim - 1):
            self._alloc("put_along_axis (arange)")
            self._launch("elementwise", "put_along_axis (arange)")
        self._alloc("put_along_axis (flat index)")
        self._launch_memset("put_along_axis (flat index)")
        for _ in range(arr.ndim):
            self._launch("elementwise", "put_along_axis (index arithmetic)")
        if isinstance(values, DeviceArray):
            self._require_device(values, "cupy.put_along_axis")
            values = values._data
        numpy.put_along_axis(arr._data, indices._data, values, axis)
        self._launch("scatter", "put_along_axis")

    # ------------------------------------------------------------------ shape
    @cupy_function()
    def reshape(self, a, newshape, order="C", *, copy=None):
        self._require_device(a, "cupy.reshape")
        return a.reshape(newshape, order=order, copy=copy)

    @cupy_function()
    def transpose(self, a, axes=None):
        self._require_device(a, "cupy.transpose")
        return a.transpose(*(axes or ()))

    @cupy_function()
    def swapaxes(self, a, axis1, axis2):
        return a.swapaxes(axis1, axis2)

    @cupy_function()
    def concatenate(self, tup, axis=0, out=None, *, dtype=None, casting="same_kind"):
        for part in tup:
            self._require_device(part, "cupy.concatenate")
        result = numpy.concatenate([part._data for part in tup], axis=axis, dtype=dtype, casting=casting)
        if len(tup) > 8:
            raise NotModelledError("cupy.concatenate of more than 8 arrays (one kernel) is not modelled.")
        for part in tup:  # _concatenate: one elementwise copy per input
            if part.size:
                self._launch("copy", "concatenate")
        if out is not None:
            self._require_device(out, "cupy.concatenate (out)")
            out._data[...] = result
            return out
        return self._new(result, "concatenate (result)")

    @cupy_function()
    def pad(self, array, pad_width, mode="constant", **kwargs):
        self._require_device(array, "cupy.pad")
        values = kwargs.get("constant_values", 0)
        if mode != "constant" or not (isinstance(values, numbers.Number) and values == 0):
            raise NotModelledError("cupy.pad other than constant zeros is not modelled by the stand-in.")
        padded = self._new(numpy.pad(array._data, pad_width), "pad")  # _pad_simple: empty, fill(0), copy
        self._launch_memset("pad (fill 0)")
        self._launch("copy", "pad (the original area)")
        return padded

    # ------------------------------------------------------------------ linear algebra
    def _gemm_operand(self, data: numpy.ndarray, what: str) -> None:
        """_mat_to_cublas_contiguous: cuBLAS takes C- or F-contiguous matrices; anything else is copied first."""
        if not (data.flags.c_contiguous or data.flags.f_contiguous):
            self._launch("copy", f"{what} (operand not contiguous)")
            self._alloc(f"{what} (operand copy)")

    @cupy_function()
    def matmul(self, a, b, out=None, **kwargs):
        if kwargs:
            raise NotModelledError(f"cupy.matmul with {sorted(kwargs)} is not modelled by the stand-in.")
        return self._matmul("cupy.matmul", a, b, out)

    @cupy_function()
    def dot(self, a, b, out=None):
        if out is not None and not out._data.flags.c_contiguous:
            raise ValueError("Output array must be C-contiguous")
        return self._matmul("cupy.dot", a, b, out)

    def _matmul(self, name, a, b, out):
        self._require_device(a, name)
        self._require_device(b, name)
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError("Scalar operands are not allowed, use '*' instead")
        result = numpy.matmul(a._data, b._data)
        if out is not None:
            self._require_device(out, f"{name} (out)")
            if out.shape != result.shape:
                raise ValueError("Output array has an invalid size")
        if a.ndim == 1 and b.ndim == 1:  # tensordot_core's m == n == 1 path: (a * b).sum() with CUB
            self._launch("elementwise", f"{name} (vector product)")
            self._alloc(f"{name} (product)")
            self._alloc(f"{name} (CUB workspace)")
            self._launch("reduction", f"{name} (vector sum)")
        elif result.size and a.size and b.size:
            if max(a.ndim, b.ndim) > 2:  # batched: ascontiguousarray of both, then a strided batched GEMM
                for operand in (a, b):
                    if not operand._data.flags.c_contiguous:
                        self._launch("copy", f"{name} (batched operand)")
                        self._alloc(f"{name} (batched operand)")
            else:
                self._gemm_operand(a._data if a.ndim == 2 else a._data[None], name)
                self._gemm_operand(b._data if b.ndim == 2 else b._data[:, None], name)
            direct = (out is not None and out._data.flags.c_contiguous and out.dtype == result.dtype
                      and not numpy.may_share_memory(out._data, a._data)
                      and not numpy.may_share_memory(out._data, b._data))
            if out is not None and not direct:
                self._alloc(f"{name} (temporary result)")
            self._launch("gemm", name)
            if out is not None and not direct:
                self._launch("copy", f"{name} (into out=)")
        elif out is not None and out.size:
            self._launch_memset(f"{name} (empty operand: zeros)")
        if out is not None:
            out._data[...] = result
            return out
        return self._new(numpy.asarray(result), f"{name} (result)")

    # ------------------------------------------------------------------ reductions
    @cupy_function()
    def sum(self, a, axis=None, dtype=None, out=None, keepdims=False):
        return self._reduce("sum", a, axis, dtype, out, keepdims)

    @cupy_function()
    def mean(self, a, axis=None, dtype=None, out=None, keepdims=False):
        return self._reduce("mean", a, axis, dtype, out, keepdims)

    @cupy_function()
    def max(self, a, axis=None, out=None, keepdims=False):
        return self._reduce("max", a, axis, None, out, keepdims)

    amax = max

    @cupy_function()
    def min(self, a, axis=None, out=None, keepdims=False):
        return self._reduce("min", a, axis, None, out, keepdims)

    amin = min

    @cupy_function()
    def argmax(self, a, axis=None, dtype=None, out=None, keepdims=False):
        return self._reduce("argmax", a, axis, dtype, out, keepdims)

    @cupy_function()
    def argmin(self, a, axis=None, dtype=None, out=None, keepdims=False):
        return self._reduce("argmin", a, axis, dtype, out, keepdims)

    @cupy_function()
    def any(self, a, axis=None, out=None, keepdims=False):
        return self._reduce("any", a, axis, None, out, keepdims)

    @cupy_function()
    def all(self, a, axis=None, out=None, keepdims=False):
        return self._reduce("all", a, axis, None, out, keepdims)

    def _reduce(self, op, a, axis, dtype, out, keepdims):
        name = f"cupy.{op}"
        self._require_device(a, name)
        if out is not None:
            self._require_device(out, f"{name} (out)")
        kwargs = {"axis": axis, "keepdims": keepdims}
        if op in ("sum", "mean") and dtype is not None:
            kwargs["dtype"] = dtype
        result = numpy.asarray(_NUMPY_REDUCTIONS[op](a._data, **kwargs))
        if op in ("argmax", "argmin") and dtype is not None:
            result = result.astype(dtype)
        self._reduction_events(op, a._data, axis, dtype, out is not None)
        if out is not None:
            if out.shape != result.shape:
                raise ValueError("Out shape is mismatched")
            out._data[...] = result
            return out
        return DeviceArray(result, self)

    def _reduction_events(self, op, data, axis, dtype, out_given):
        name = f"cupy.{op}"
        if data.size == 0:
            return
        reduce_axes, out_axes = _reduction_axes(axis, data.ndim)
        c_order, f_order = data.flags.c_contiguous, data.flags.f_contiguous
        order = "C" if c_order else "F"
        base_op = "sum" if op == "mean" else op
        if base_op in ("sum", "max", "min", "argmax", "argmin") and (c_order or f_order):
            compatible = (data.dtype in _CUB_SUM_DTYPES if base_op == "sum" and dtype is None
                          else data.dtype in _CUB_DTYPES and (dtype is None or numpy.dtype(dtype) == data.dtype))
            if compatible and not out_axes:  # cub.device_reduce
                self._alloc(f"{name} (CUB result)")
                self._alloc(f"{name} (CUB workspace)")
                for _ in range(1 if data.size <= CUB_SINGLE_TILE else 2):
                    self._launch("reduction", f"{name} (cub::DeviceReduce)")
                if op in ("argmax", "argmin"):
                    self._launch("copy", f"{name} (CUB key to int64)")
                    self._alloc(f"{name} (index)")
                self._reduction_tail(op, name, out_given)
                return
            if compatible and op not in ("argmax", "argmin") and _trailing_or_leading(reduce_axes, data.ndim, order):
                self._alloc(f"{name} (CUB result)")
                self._alloc(f"{name} (CUB workspace)")
                self._launch("reduction", f"{name} (cub::DeviceSegmentedReduce)")
                self._reduction_tail(op, name, out_given)
                return
        # CuPy's own reduction kernel (_reduction.pyx), with CUB's block reduction when it applies
        if not out_given:
            self._alloc(f"{name} (result)")
        contiguous = math.prod(data.shape[axis] for axis in reduce_axes)
        block = ((c_order or f_order) and _trailing_or_leading(reduce_axes, data.ndim, order)
                 and contiguous >= CUB_BLOCK_REDUCTION_MIN)
        if block and not out_axes:
            self._alloc(f"{name} (two-pass workspace)")
            self._launch("reduction", f"{name} (pass 1)")
            self._launch("reduction", f"{name} (pass 2)")
        else:
            self._launch("reduction", name)

    def _reduction_tail(self, op, name, out_given):
        if op == "mean":
            self._launch("elementwise", f"{name} (divide by the count)")
        if out_given:
            self._launch("copy", f"{name} (CUB result into out=)")
