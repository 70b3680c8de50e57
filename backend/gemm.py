"""Matrix products a CUDA graph can capture: `gemm(a, b, out)` is `xp.matmul(a, b, out=out)`, except while a graph
is being captured and in the eager step before it (backend/graphs.py), when cuBLAS is called directly
(backend/cublas.py) because CuPy refuses its own cuBLAS calls during capture.

    gemm(a, b, out)          # out[...] = a @ b; a (M, K), b (K, N) or (K,), out (M, N) or (M,) C-contiguous

Operands are the layouts the layers use: C-contiguous arrays and their transposes (F-contiguous), as views of
larger buffers; backend/layout.py derives cuBLAS's arguments for them.
"""

from __future__ import annotations

import numpy

from . import graphs
from .core import array_module
from .cublas import CublasError

__all__ = ["gemm"]


def gemm(a, b, out=None):
    """out[...] = a @ b; returns out (a new array when out is None, which capture refuses: allocate before).

    a (M, K); b (K, N) or (K,); out (M, N) or (M,), C-contiguous; operands C- or F-contiguous (see the module
    docstring). NumPy, and CuPy elsewhere: xp.matmul. On CuPy (or the stand-in) during capture and the warm-up step
    before it (graphs.direct_path()): cuBLAS directly, through its stream's handle.
    """
    if type(a) is numpy.ndarray and type(b) is numpy.ndarray:  # the CPU's path, without the checks below
        return numpy.matmul(a, b, out=out)
    xp = array_module(a, b, out)
    if out is None:
        out = xp.empty((a.shape[0],) if b.ndim == 1 else (a.shape[0], b.shape[1]),
                       dtype=numpy.result_type(a.dtype, b.dtype))
    path = None if xp is numpy else graphs.direct_path()
    if path is None:
        return xp.matmul(a, b, out=out)
    if path.capturing:
        path.cublas.gemm(a, b, out)
        return out
    try:  # the warm-up before a capture: a product cuBLAS cannot take is CuPy's, and the step stays eager
        path.cublas.gemm(a, b, out)
    except (CublasError, ValueError, TypeError) as error:
        path.refuse(error)
        xp.matmul(a, b, out=out)
    return out
