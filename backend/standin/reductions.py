"""The stand-in's reductions, costed as CuPy's CUB dispatch launches them (cupy/cuda/cub.pyx, _reduction.pyx,
_cub_reduction.pyx, with the default CUPY_ACCELERATORS=cub):

    full reduction of a C- or F-contiguous array of a CUB dtype     cub::DeviceReduce: one single-tile kernel up
                                                                    to CUB_SINGLE_TILE items, two above; argmax
                                                                    then copies its key; a copy into out=
    reduction over the trailing (C) or leading (F) axes, CUB dtype  cub::DeviceSegmentedReduce: one kernel (not
                                                                    argmax); a copy into out=
    anything else                                                   CuPy's own kernel, straight into out=; two
                                                                    passes for a full reduction of 128 or more
                                                                    contiguous items (CUB's block reduction)
    mean                                                            the sum, then a divide (CUB), or one kernel
"""

from __future__ import annotations

import math

import numpy

from .signatures import cupy_function

# cub::DeviceReduce runs a single-tile kernel up to this many items (256 threads x 16 items for 4-byte
# types in CUB's tuning policies, half that for 8-byte types); above it, a reduce pass and a single-tile pass.
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



class Reductions:
    """sum, mean, max, min, argmax, argmin, any, all of the stand-in module (a mixin of StrictCupy)."""

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
        data = a._data

        def compute():
            result = numpy.asarray(_NUMPY_REDUCTIONS[op](data, **kwargs))
            return result.astype(dtype) if op in ("argmax", "argmin") and dtype is not None else result

        shape = compute().shape  # also checks the arguments, as the call would
        self._reduction_events(op, data, axis, dtype, out is not None)  # allocations are refused during capture
        if out is None:
            return self._produce(compute, name, a, counted=False)
        if out.shape != shape:
            raise ValueError("Out shape is mismatched")
        target = out._data
        self._run(lambda: target.__setitem__(Ellipsis, compute()), out, a)
        return out

    def _reduction_events(self, op, data, axis, dtype, out_given):
        name = f"cupy.{op}"
        if data.size == 0:
            return
        signature = (data.dtype.name,) if dtype is None else (data.dtype.name, "->", numpy.dtype(dtype).name)
        reduce_axes, out_axes = _reduction_axes(axis, data.ndim)
        c_order, f_order = data.flags.c_contiguous, data.flags.f_contiguous
        order = "C" if c_order else "F"
        base_op = "sum" if op == "mean" else op
        if op == "mean" and dtype is None and data.dtype.kind in "iub":
            dtype = numpy.float64  # CuPy sums integers into float64, which CUB's sum does not do
        if base_op in ("sum", "max", "min", "argmax", "argmin") and (c_order or f_order):
            compatible = (data.dtype in _CUB_SUM_DTYPES if base_op == "sum" and dtype is None
                          else data.dtype in _CUB_DTYPES and (dtype is None or numpy.dtype(dtype) == data.dtype))
            if compatible and not out_axes:  # cub.device_reduce
                self._alloc(f"{name} (CUB result)")
                self._alloc(f"{name} (CUB workspace)")
                tile = CUB_SINGLE_TILE if data.dtype.itemsize <= 4 else CUB_SINGLE_TILE // 2
                for _ in range(1 if data.size <= tile else 2):
                    self._launch("reduction", f"{name} (cub::DeviceReduce)", signature)
                if op in ("argmax", "argmin"):
                    self._launch("copy", f"{name} (CUB key to int64)", signature)
                    self._alloc(f"{name} (index)")
                self._reduction_tail(op, name, out_given, signature)
                return
            if compatible and op not in ("argmax", "argmin") and _trailing_or_leading(reduce_axes, data.ndim, order):
                self._alloc(f"{name} (CUB result)")
                self._alloc(f"{name} (CUB workspace)")
                self._launch("reduction", f"{name} (cub::DeviceSegmentedReduce)", signature)
                self._reduction_tail(op, name, out_given, signature)
                return
        # CuPy's own reduction kernel (_reduction.pyx), with CUB's block reduction when it applies
        if not out_given:
            self._alloc(f"{name} (result)")
        contiguous = math.prod(data.shape[axis] for axis in reduce_axes)
        block = ((c_order or f_order) and _trailing_or_leading(reduce_axes, data.ndim, order)
                 and contiguous >= CUB_BLOCK_REDUCTION_MIN)
        if block and not out_axes:
            self._alloc(f"{name} (two-pass workspace)")
            self._launch("reduction", f"{name} (pass 1)", signature)
            self._launch("reduction", f"{name} (pass 2)", signature)
        else:
            self._launch("reduction", name, signature)

    def _reduction_tail(self, op, name, out_given, signature):
        if op == "mean":
            self._launch("elementwise", f"{name} (divide by the count)", signature)
        if out_given:
            self._launch("copy", f"{name} (CUB result into out=)", signature)
