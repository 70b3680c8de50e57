"""The stand-in's array creation, filling and assignment, costed as CuPy does them (cupy/_creation, cupy/_core
core.pyx _scatter_op, fill): an allocation per new array, a memset for zeros (and fill(0) of a contiguous
array), else a fill kernel; an assignment is a device memcpy when the layouts match, else a copy kernel; a
host array to the device is a transfer (refused during capture, as CuPy refuses it).
"""

from __future__ import annotations

import numpy

from .array import DeviceArray, kinds
from .signatures import cupy_function


class Creation:
    """asarray, array, ascontiguousarray, empty, zeros, ones, full, the *_like functions, arange, asnumpy, and the
    fill and assignment every array uses (a mixin of StrictCupy)."""

    def _host_to_device(self, value, dtype, name) -> DeviceArray:
        if isinstance(value, DeviceArray):
            raise AssertionError("not a host value")
        data = numpy.array(value, dtype=dtype, copy=True)
        if data.dtype.hasobject:
            raise TypeError(f"{name}: Unsupported type {type(value)}")
        if data.ndim == 0:  # CuPy fills a 0-d array from a host scalar with a kernel: no transfer
            array = self._new(numpy.empty((), dtype=data.dtype), name)
            self._fill(array, data[()])
            return array
        self._h2d(name)
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
    def asnumpy(self, a, stream=None, order="C", out=None, blocking=True):
        if isinstance(a, DeviceArray):
            return a.get(order=order, out=out)
        return numpy.asarray(a, order=order)

    @cupy_function()
    def ascontiguousarray(self, a, dtype=None):
        self._require_device(a, "cupy.ascontiguousarray")
        if a._data.flags.c_contiguous and (dtype is None or numpy.dtype(dtype) == a.dtype):
            return a
        return self._copy_of(lambda: numpy.ascontiguousarray(a._data, dtype=dtype), "ascontiguousarray", a)

    @cupy_function()
    def empty(self, shape, dtype=float, order="C"):
        return self._new(numpy.empty(shape, dtype=dtype, order=order), "empty")

    @cupy_function()
    def zeros(self, shape, dtype=float, order="C"):
        array = self._new(numpy.zeros(shape, dtype=dtype, order=order), "zeros")
        self._zero(array, "zeros")
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
        self._zero(array, "zeros_like")
        return array

    @cupy_function()
    def ones_like(self, a, dtype=None, order="K", subok=None, shape=None):
        array = self._new(self._like("ones_like", a, dtype, order, subok, shape), "ones_like")
        self._fill(array, 1)
        return array

    @cupy_function()
    def arange(self, start, stop=None, step=1, dtype=None):
        def compute():
            if stop is None:
                return numpy.arange(start, dtype=dtype)
            return numpy.arange(start, stop, step, dtype=dtype)

        array = self._produce(compute, "arange")
        if array.size:
            self._launch("elementwise", "cupy.arange", kinds("->", array))
        return array

    # ------------------------------------------------------------------ filling and assignment
    def _zero(self, array: DeviceArray, name: str) -> None:
        """A new array's memset (cudaMemsetAsync, capturable)."""
        data = array._data
        self._run(lambda: data.fill(0), array)
        if array.size:
            self._launch_memset(name)

    def _fill(self, array: DeviceArray, value):
        """ndarray.fill: a memset for 0 on a contiguous array, else CuPy's fill kernel."""
        data = array._data
        if isinstance(value, DeviceArray):
            if value.ndim:
                raise ValueError("non-scalar cupy.ndarray cannot be used for fill")
            value = value.astype(array.dtype, copy=False)
            zero = bool(value == 0)  # CuPy's `value == 0` on a device scalar reads it back: a sync
            source = value._data
            self._run(lambda: data.__setitem__(Ellipsis, source), array, value)
        else:
            host = numpy.asarray(value, dtype=array.dtype)
            if host.shape != ():
                raise ValueError("non-scalar numpy.ndarray cannot be used for fill")
            zero = host == 0
            self._run(lambda: data.__setitem__(Ellipsis, host), array)  # the scalar as it is now, by value
        if not array.size:
            return
        if zero and data.flags.c_contiguous:
            self._launch_memset("fill(0)")
        else:
            self._launch("elementwise", "fill", kinds(array))

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
        numpy.broadcast_to(value._data, target.shape)  # the shapes must fit, as on CuPy, whether run now or not
        source = value
        if same_layout and target._data.flags.c_contiguous and target.dtype == value.dtype:
            self._event("memcpy", "setitem (device to device)")
        else:
            if numpy.may_share_memory(target._data, value._data):
                source = self._copy_of(lambda: value._data.copy(), "setitem (input overlapping the target)", value)
            if target.size:
                self._launch("copy", "setitem", kinds(source, "->", target))
        data, source_data = target._data, source._data
        self._run(lambda: data.__setitem__(Ellipsis, source_data), target, source)
