"""The stand-in's indexing and reshaping, costed as CuPy launches them (cupy/_core/_routines_indexing.pyx,
_routines_manipulation.pyx, cupy/_indexing, cupy/_padding): take is one gather (indices from the host are a
transfer first); advanced getitem/setitem with several index arrays add a memset and index arithmetic;
take_along_axis and put_along_axis add an arange per other axis; concatenate is a copy per input. take wraps an
index past either end, as CuPy's does (it has no `mode`).
"""

from __future__ import annotations

import numbers

import numpy

from .array import DeviceArray, is_scalar, kinds
from .signatures import NotModelledError, cupy_function


def _devices(values) -> tuple:
    """The device arrays among an index key's parts or a call's arguments."""
    parts = values if isinstance(values, tuple) else (values,)
    return tuple(part for part in parts if isinstance(part, DeviceArray))


class Indexing:
    """take, where, take_along_axis, put_along_axis, advanced indexing, reshape and friends of the stand-in
    module (a mixin of StrictCupy)."""

    def _index_parts(self, key, what):
        """Turn device arrays in an index into numpy index arrays; count host index arrays as transfers."""
        parts, arrays = [], 0
        for part in key if isinstance(key, tuple) else (key,):
            if isinstance(part, DeviceArray):
                self._require_device(part, what)
                parts.append(part._data)
                arrays += 1
            elif isinstance(part, (numpy.ndarray, list)):
                self._h2d(f"{what} (host index array)")
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
                self._launch("elementwise", "getitem (index arithmetic)", ("int64",))
        result = self._produce(lambda: array._data[parts], "getitem (advanced index)", array, *_devices(key))
        if result.size:
            self._launch("gather", "getitem (advanced index)", kinds(array, *_devices(key)))
        return result

    def _advanced_setitem(self, array, key, value):
        parts, arrays = self._index_parts(key, "setitem")
        if arrays > 1:
            self._launch_memset("setitem (multiple index arrays)")
            for _ in range(arrays):
                self._launch("elementwise", "setitem (index arithmetic)", ("int64",))
        sources = _devices(key)
        if isinstance(value, DeviceArray):
            self._require_device(value, "setitem")
            sources += (value,)
            value = value._data
        elif not is_scalar(value):
            raise ValueError("non-scalar numpy.ndarray cannot be used for fill")
        data = array._data
        self._run(lambda: data.__setitem__(parts, value), array, *sources,
                  dry=lambda: numpy.broadcast_to(value, data[parts].shape))
        self._launch("scatter", "setitem (advanced index)", kinds(array, *sources))

    @cupy_function()
    def take(self, a, indices, axis=None, out=None):
        self._require_device(a, "cupy.take")
        if isinstance(indices, DeviceArray):
            self._require_device(indices, "cupy.take")
            index = indices._data
        elif isinstance(indices, numbers.Integral):
            index = int(indices)
        else:
            self._h2d("cupy.take (indices from the host)")
            self._alloc("cupy.take (indices)")
            index = numpy.asarray(indices)
        sources = (a, indices) if isinstance(indices, DeviceArray) else (a,)

        def compute():  # CuPy's take wraps an index past either end (_routines_indexing.pyx, _take_kernel)
            return numpy.take(a._data, index, axis=axis, mode="wrap")

        if out is None:
            result = self._produce(compute, "cupy.take (result)", *sources)
        else:
            self._require_device(out, "cupy.take (out)")
            if out.dtype != a.dtype:
                raise TypeError("Output dtype mismatch")
            if out.shape != compute().shape:
                raise ValueError("Output shape mismatch")
            target = out._data
            self._run(lambda: target.__setitem__(Ellipsis, compute()), out, *sources)
            result = out
        if result.size:
            self._launch("gather", "cupy.take", kinds(a, indices))
        return result

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
        result = self._produce(lambda: numpy.where(*raw), "cupy.where (result)", *_devices((condition, x, y)))
        if result.size:
            self._launch("elementwise", "cupy.where", kinds(condition, x, y))
        return result

    @cupy_function()
    def take_along_axis(self, a, indices, axis):
        self._require_device(a, "cupy.take_along_axis")
        self._require_device(indices, "cupy.take_along_axis")
        # cupy/_indexing/indexing.py: an arange per other axis, then a[tuple of index arrays]
        for _ in range(a.ndim - 1):
            self._alloc("take_along_axis (arange)")
            self._launch("elementwise", "take_along_axis (arange)", ("int64",))
        self._alloc("take_along_axis (flat index)")
        self._launch_memset("take_along_axis (flat index)")
        for _ in range(a.ndim):
            self._launch("elementwise", "take_along_axis (index arithmetic)", kinds(indices))
        self._launch("gather", "take_along_axis", kinds(a, indices))
        return self._produce(lambda: numpy.take_along_axis(a._data, indices._data, axis), "take_along_axis (result)",
                             a, indices)

    @cupy_function()
    def put_along_axis(self, arr, indices, values, axis):
        self._require_device(arr, "cupy.put_along_axis")
        self._require_device(indices, "cupy.put_along_axis")
        for _ in range(arr.ndim - 1):
            self._alloc("put_along_axis (arange)")
            self._launch("elementwise", "put_along_axis (arange)", ("int64",))
        self._alloc("put_along_axis (flat index)")
        self._launch_memset("put_along_axis (flat index)")
        for _ in range(arr.ndim):
            self._launch("elementwise", "put_along_axis (index arithmetic)", kinds(indices))
        sources = (indices,)
        if isinstance(values, DeviceArray):
            self._require_device(values, "cupy.put_along_axis")
            sources += (values,)
            values = values._data
        data, index = arr._data, indices._data
        self._run(lambda: numpy.put_along_axis(data, index, values, axis), arr, *sources,
                  dry=lambda: numpy.put_along_axis(data.copy(), index, values, axis))
        self._launch("scatter", "put_along_axis", kinds(arr, *sources))

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
        if len(tup) > 8:
            raise NotModelledError("cupy.concatenate of more than 8 arrays (one kernel) is not modelled.")
        parts = [part._data for part in tup]

        def compute():
            return numpy.concatenate(parts, axis=axis, dtype=dtype, casting=casting)

        if out is not None:
            self._require_device(out, "cupy.concatenate (out)")
            target = out._data
            self._run(lambda: target.__setitem__(Ellipsis, compute()), out, *tup,
                      dry=lambda: numpy.broadcast_to(compute(), target.shape))
            result = out
        else:
            result = self._produce(compute, "concatenate (result)", *tup)
        for part in tup:  # _concatenate: one elementwise copy per input
            if part.size:
                self._launch("copy", "concatenate", kinds(part, "->", result))
        return result

    @cupy_function()
    def pad(self, array, pad_width, mode="constant", **kwargs):
        self._require_device(array, "cupy.pad")
        values = kwargs.get("constant_values", 0)
        if mode != "constant" or not (isinstance(values, numbers.Number) and values == 0):
            raise NotModelledError("cupy.pad other than constant zeros is not modelled by the stand-in.")
        padded = self._produce(lambda: numpy.pad(array._data, pad_width), "pad", array)  # empty, fill(0), copy
        self._launch_memset("pad (fill 0)")
        self._launch("copy", "pad (the original area)", kinds(array))
        return padded

