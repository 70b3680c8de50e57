"""The stand-in's device array: NumPy memory behind CuPy's rules for views, copies, launches and host reads.

A `DeviceArray` holds a numpy array and the stand-in module it belongs to. Views cost nothing, as on
CuPy; anything CuPy computes records its launches (see counter.py); anything that reads the device from
the host records a sync; and the implicit conversions CuPy refuses (`numpy.asarray(device_array)`,
NumPy arrays mixed into device operations) raise as CuPy does.
"""

from __future__ import annotations

import numbers

import numpy

from .capture import Allocation
from .signatures import MissingInCupyError, NotModelledError, cupy_method

_IMPLICIT_CONVERSION = ("Implicit conversion to a NumPy array is not allowed. "
                        "Please use `.get()` to construct a NumPy array explicitly.")


class _Flags:
    """The part of cupy.ndarray.flags that code reads."""

    def __init__(self, data: numpy.ndarray):
        self.c_contiguous = bool(data.flags.c_contiguous)
        self.f_contiguous = bool(data.flags.f_contiguous)
        self.owndata = bool(data.flags.owndata)

    def __getitem__(self, key):
        return {"C_CONTIGUOUS": self.c_contiguous, "F_CONTIGUOUS": self.f_contiguous, "OWNDATA": self.owndata}[key]


def is_scalar(value) -> bool:
    """A Python or NumPy scalar: what CuPy passes to a kernel by value (no array, no transfer)."""
    return isinstance(value, (numbers.Number, numpy.generic)) and not isinstance(value, numpy.ndarray)


def kinds(*values) -> tuple:
    """How a kernel sees its operands, for the signature that tells kernels apart: an array by its dtype, a scalar by
    its type (CuPy passes a Python scalar by value, so a kernel with one is not the kernel with a 0-d array); a string
    stands for itself ("->" between inputs and outputs)."""
    return tuple(value.dtype.name if isinstance(value, DeviceArray) else value if isinstance(value, str)
                 else type(value).__name__ for value in values)


def _basic_key(key) -> bool:
    """True when indexing with `key` makes a view (ints, slices, None, Ellipsis only)."""
    parts = key if isinstance(key, tuple) else (key,)
    return all(part is None or part is Ellipsis
               or isinstance(part, (slice, numbers.Integral)) and not isinstance(part, bool)
               for part in parts)


class DeviceArray:
    """A device array of the stand-in: NumPy data, CuPy behaviour, every launch and sync recorded."""

    __slots__ = ("_data", "_xp", "_owner", "__weakref__")
    __array_priority__ = 100.0
    __hash__ = None
    _nets_device_array = True  # how backend.is_device_array recognises it

    def __init__(self, data: numpy.ndarray, xp, owner=None):
        self._data = data
        self._xp = xp
        self._owner = owner if owner is not None else Allocation()  # the block of memory this array is a view of

    # ------------------------------------------------------------------ metadata (no device work)
    shape = property(lambda self: self._data.shape)
    dtype = property(lambda self: self._data.dtype)
    ndim = property(lambda self: self._data.ndim)
    size = property(lambda self: self._data.size)
    itemsize = property(lambda self: self._data.itemsize)
    nbytes = property(lambda self: self._data.nbytes)
    strides = property(lambda self: self._data.strides)
    flags = property(lambda self: _Flags(self._data))

    @property
    def data(self):
        """cupy.ndarray.data: the memory pointer of the first element (what a library such as cuBLAS is given)."""
        return self._xp._pointer_to(self)

    def __len__(self):
        if self._data.ndim == 0:
            raise TypeError("len() of unsized object")
        return self._data.shape[0]

    def __getattr__(self, name):  # only reached for names this class does not define
        if name.startswith("__"):
            raise AttributeError(name)
        if self._xp._signatures.has_method(name):
            raise NotModelledError(f"cupy.ndarray.{name} exists, but the stand-in does not model what it launches; "
                                   "model it in backend/standin/array.py.")
        raise MissingInCupyError(f"cupy.ndarray has no attribute {name!r}; the code would fail on the GPU.")

    # ------------------------------------------------------------------ views (free) and copies
    def _wrap(self, data) -> "DeviceArray":
        return DeviceArray(data, self._xp, self._owner)

    def _maybe_copied(self, compute, name: str) -> "DeviceArray":
        """A view of self when numpy's compute() is one, else the copy CuPy makes (one copy kernel)."""
        result = compute()
        if result.size and not numpy.shares_memory(result, self._data):
            return self._xp._copy_of(compute, name, self)
        return self._wrap(result)

    @property
    def T(self):
        return self._wrap(self._data.T)

    @cupy_method()
    def transpose(self, *axes):
        return self._wrap(self._data.transpose(*axes))

    @cupy_method()
    def swapaxes(self, axis1, axis2):
        return self._wrap(self._data.swapaxes(axis1, axis2))

    def squeeze(self, axis=None):
        return self._wrap(self._data.squeeze(axis))

    @cupy_method()
    def reshape(self, *shape, order="C", copy=None):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        if copy:
            return self._xp._copy_of(lambda: self._data.reshape(shape, order=order).copy(), "reshape(copy=True)", self)
        return self._maybe_copied(lambda: self._data.reshape(shape, order=order), "reshape (a copy: not viewable)")

    @cupy_method()
    def ravel(self, order="C"):
        return self._maybe_copied(lambda: self._data.ravel(order), "ravel (a copy: not contiguous)")

    @cupy_method()
    def flatten(self, order="C"):
        return self._xp._copy_of(lambda: self._data.flatten(order), "flatten", self)

    def view(self, dtype=None, type=None):
        if type is not None:
            raise NotModelledError("cupy.ndarray.view(type=...) is not modelled by the stand-in.")
        return self._wrap(self._data if dtype is None else self._data.view(dtype))

    @cupy_method()
    def copy(self, order="C"):
        return self._xp._copy_of(lambda: self._data.copy(order), "copy", self)

    @cupy_method()
    def astype(self, dtype, order="K", casting=None, subok=None, copy=True):
        dtype = numpy.dtype(dtype)
        if not copy and dtype == self.dtype:
            return self
        return self._xp._copy_of(lambda: self._data.astype(dtype, order=order), "astype", self)

    # ------------------------------------------------------------------ indexing
    def __getitem__(self, key):
        if _basic_key(key):
            parts = key if isinstance(key, tuple) else (key,)
            if Ellipsis not in parts:
                parts = parts + (Ellipsis,)  # CuPy returns a 0-d array, never a scalar
            return self._wrap(self._data[parts])
        return self._xp._advanced_getitem(self, key)

    def __setitem__(self, key, value):
        if not _basic_key(key):
            self._xp._advanced_setitem(self, key, value)
            return
        parts = key if isinstance(key, tuple) else (key,)
        if Ellipsis not in parts:
            parts = parts + (Ellipsis,)
        self._xp._assign(self._wrap(self._data[parts]), value)

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[index] for index in range(len(self)))

    # ------------------------------------------------------------------ filling and taking
    @cupy_method()
    def fill(self, value):
        self._xp._fill(self, value)

    @cupy_method()
    def take(self, indices, axis=None, out=None):
        return self._xp.take(self, indices, axis=axis, out=out)

    def dot(self, b, out=None):
        return self._xp.dot(self, b, out=out)

    # ------------------------------------------------------------------ reductions
    @cupy_method()
    def sum(self, axis=None, dtype=None, out=None, keepdims=False):
        return self._xp._reduce("sum", self, axis, dtype, out, keepdims)

    @cupy_method()
    def mean(self, axis=None, dtype=None, out=None, keepdims=False):
        return self._xp._reduce("mean", self, axis, dtype, out, keepdims)

    @cupy_method()
    def max(self, axis=None, out=None, keepdims=False):
        return self._xp._reduce("max", self, axis, None, out, keepdims)

    @cupy_method()
    def min(self, axis=None, out=None, keepdims=False):
        return self._xp._reduce("min", self, axis, None, out, keepdims)

    @cupy_method()
    def argmax(self, axis=None, out=None, dtype=None, keepdims=False):
        return self._xp._reduce("argmax", self, axis, dtype, out, keepdims)

    @cupy_method()
    def argmin(self, axis=None, out=None, dtype=None, keepdims=False):
        return self._xp._reduce("argmin", self, axis, dtype, out, keepdims)

    def any(self, axis=None, out=None, keepdims=False):
        return self._xp._reduce("any", self, axis, None, out, keepdims)

    def all(self, axis=None, out=None, keepdims=False):
        return self._xp._reduce("all", self, axis, None, out, keepdims)

    @cupy_method()
    def set(self, arr, stream=None):
        """Copy a host array into this array's memory (a transfer; refused while capturing, as CuPy refuses it)."""
        if not isinstance(arr, numpy.ndarray):
            raise TypeError("Only numpy.ndarray can be set to cupy.ndarray")
        if arr.dtype != self.dtype:
            raise TypeError(f"{arr.dtype} array cannot be set to {self.dtype} array")
        if arr.shape != self.shape:
            raise ValueError(f"Shape mismatch. Old shape: {self.shape}, new shape: {arr.shape}")
        self._xp._h2d("ndarray.set (host to device)")
        self._data[...] = arr

    # ------------------------------------------------------------------ reading back on the host (syncs)
    def _read(self, what: str) -> numpy.ndarray:
        self._xp._sync(what)
        return self._data

    @cupy_method()
    def get(self, stream=None, order="C", out=None, blocking=True):
        data = self._read("get").copy(order=order)
        if out is not None:
            out[...] = data
            return out
        return data

    def item(self):
        return self._read("item").item()

    def tolist(self):
        return self._read("tolist").tolist()

    def _scalar(self, what):
        if self.size != 1:
            raise TypeError(f"only size-1 arrays can be converted to Python scalars ({what})")
        return self._read(what).reshape(())

    def __float__(self):
        return float(self._scalar("float()"))

    def __int__(self):
        return int(self._scalar("int()"))

    def __index__(self):
        if self.dtype.kind not in "iu":
            raise TypeError("only integer arrays can be used as an index")
        return int(self._scalar("__index__"))

    def __bool__(self):
        return bool(self._scalar("bool()"))

    def __complex__(self):
        return complex(self._scalar("complex()"))

    def __repr__(self):
        return f"stand-in device array({self._read('repr')!r})"

    # ------------------------------------------------------------------ what CuPy refuses
    def __array__(self, dtype=None, copy=None):
        raise TypeError(_IMPLICIT_CONVERSION)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        """numpy.<ufunc>(device array, scalar) runs the stand-in's ufunc, as CuPy's __array_ufunc__ does;
        a NumPy array among the inputs is refused, as CuPy refuses it."""
        if method != "__call__":
            raise NotModelledError(f"numpy.{ufunc.__name__}.{method} on a device array is not modelled.")
        return getattr(self._xp, ufunc.__name__)(*inputs, **kwargs)

    def __array_function__(self, function, types, args, kwargs):
        raise TypeError(f"numpy.{function.__name__} was called on a device array: use xp.{function.__name__}. "
                        "(CuPy would forward it to cupy.{function.__name__}; the stand-in refuses it, so that "
                        "host code and device code stay apart.)")

    # ------------------------------------------------------------------ arithmetic through the ufuncs
    def _ufunc(self, name, *args, **kwargs):
        return getattr(self._xp, name)(*args, **kwargs)

    __add__ = lambda self, other: self._ufunc("add", self, other)  # noqa: E731
    __radd__ = lambda self, other: self._ufunc("add", other, self)  # noqa: E731
    __sub__ = lambda self, other: self._ufunc("subtract", self, other)  # noqa: E731
    __rsub__ = lambda self, other: self._ufunc("subtract", other, self)  # noqa: E731
    __mul__ = lambda self, other: self._ufunc("multiply", self, other)  # noqa: E731
    __rmul__ = lambda self, other: self._ufunc("multiply", other, self)  # noqa: E731
    __truediv__ = lambda self, other: self._ufunc("true_divide", self, other)  # noqa: E731
    __rtruediv__ = lambda self, other: self._ufunc("true_divide", other, self)  # noqa: E731
    __floordiv__ = lambda self, other: self._ufunc("floor_divide", self, other)  # noqa: E731
    __mod__ = lambda self, other: self._ufunc("remainder", self, other)  # noqa: E731
    __pow__ = lambda self, other: self._ufunc("power", self, other)  # noqa: E731
    __rpow__ = lambda self, other: self._ufunc("power", other, self)  # noqa: E731
    __matmul__ = lambda self, other: self._xp.matmul(self, other)  # noqa: E731
    __rmatmul__ = lambda self, other: self._xp.matmul(other, self)  # noqa: E731
    __and__ = lambda self, other: self._ufunc("bitwise_and", self, other)  # noqa: E731
    __or__ = lambda self, other: self._ufunc("bitwise_or", self, other)  # noqa: E731
    __xor__ = lambda self, other: self._ufunc("bitwise_xor", self, other)  # noqa: E731
    __invert__ = lambda self: self._ufunc("invert", self)  # noqa: E731
    __neg__ = lambda self: self._ufunc("negative", self)  # noqa: E731
    __abs__ = lambda self: self._ufunc("absolute", self)  # noqa: E731
    __eq__ = lambda self, other: self._ufunc("equal", self, other)  # noqa: E731
    __ne__ = lambda self, other: self._ufunc("not_equal", self, other)  # noqa: E731
    __lt__ = lambda self, other: self._ufunc("less", self, other)  # noqa: E731
    __le__ = lambda self, other: self._ufunc("less_equal", self, other)  # noqa: E731
    __gt__ = lambda self, other: self._ufunc("greater", self, other)  # noqa: E731
    __ge__ = lambda self, other: self._ufunc("greater_equal", self, other)  # noqa: E731

    def __iadd__(self, other):
        return self._ufunc("add", self, other, out=self)

    def __isub__(self, other):
        return self._ufunc("subtract", self, other, out=self)

    def __imul__(self, other):
        return self._ufunc("multiply", self, other, out=self)

    def __itruediv__(self, other):
        return self._ufunc("true_divide", self, other, out=self)

    def __ipow__(self, other):
        return self._ufunc("power", self, other, out=self)


class StandinMemory:
    """cupy.cuda.Memory of the stand-in: `size` bytes of device memory outside the memory pool (cudaMalloc, 256-byte
    aligned), freed with this object; `ptr` resolves in the emulated cuBLAS like an array's."""

    ALIGNMENT = 256

    def __init__(self, xp, size):
        raw = numpy.zeros(int(size) + self.ALIGNMENT, dtype=numpy.uint8)
        skip = -raw.__array_interface__["data"][0] % self.ALIGNMENT
        self.size = int(size)
        self._array = DeviceArray(raw[skip:skip + self.size], xp, Allocation("cupy.cuda.Memory"))
        self.ptr = self._array.data.ptr if self.size else 0
