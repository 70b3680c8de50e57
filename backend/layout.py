"""The cuBLAS arguments of a row-major product: `gemm_arguments(a, b, out)` is the cublas<t>gemm call that computes
out[...] = a @ b (backend/gemm.py says which operands it takes).

cuBLAS is column-major, so a row-major product out = a @ b is computed as its transpose, out^T = b^T a^T: cuBLAS's
"A" is b's memory and its "B" is a's, each read as stored (a C-contiguous matrix is the column-major transpose of
itself) or transposed (an F-contiguous one). The stand-in's emulated cuBLAS (backend/standin/cublas.py) runs these
arguments, so the derivation is tested on any machine; on a GPU, tests/test_capture.py checks every layout the
layers use against a product on the host.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy

__all__ = ["OP_N", "OP_T", "GemmCall", "gemm_arguments"]

OP_N, OP_T = 0, 1  # cublasOperation_t


@dataclass(frozen=True)
class GemmCall:
    """cublas<t>gemm's arguments for out = a @ b (alpha 1, beta 0); pointers are device addresses."""

    dtype: numpy.dtype
    transa: int
    transb: int
    m: int
    n: int
    k: int
    a: int
    lda: int
    b: int
    ldb: int
    c: int
    ldc: int


def _stored(matrix, what: str) -> tuple[int, int]:
    """(operation, leading dimension) that reads the row-major `matrix` (R, C) as its column-major transpose
    (C, R): as stored when C-contiguous, transposed when F-contiguous."""
    rows, cols = matrix.shape
    if matrix.flags.c_contiguous:
        return OP_N, max(1, cols)
    if matrix.flags.f_contiguous:
        return OP_T, max(1, rows)
    raise ValueError(f"gemm: {what} of shape {tuple(matrix.shape)} is neither C- nor F-contiguous; cuBLAS reads "
                     "matrices with one packed axis (pass a contiguous array or its transpose).")


def _span(array) -> tuple[int, int]:
    start = array.data.ptr
    extent = sum((size - 1) * stride for size, stride in zip(array.shape, array.strides)) + array.itemsize
    return start, start + extent


def gemm_arguments(a, b, out) -> GemmCall:
    """The cuBLAS call for out[...] = a @ b (see the module docstring); ValueError or TypeError for what cuBLAS
    could not take."""
    if a.ndim != 2 or b.ndim not in (1, 2):
        raise ValueError("gemm takes a matrix and a matrix or vector, "
                         f"got shapes {tuple(a.shape)} and {tuple(b.shape)}.")
    m, k = a.shape
    b2 = b.reshape(b.shape[0], 1) if b.ndim == 1 else b
    n = b2.shape[1]
    expected = (m,) if b.ndim == 1 else (m, n)
    if b2.shape[0] != k or tuple(out.shape) != expected:
        raise ValueError(f"gemm: shapes {tuple(a.shape)} @ {tuple(b.shape)} -> {tuple(out.shape)} do not fit.")
    if not out.flags.c_contiguous:
        raise ValueError("gemm: out must be C-contiguous.")
    dtype = numpy.dtype(out.dtype)
    if dtype not in (numpy.float32, numpy.float64) or a.dtype != dtype or b.dtype != dtype:
        raise TypeError(f"gemm takes float32 or float64 arrays of one dtype, got {a.dtype}, {b.dtype} -> {out.dtype}.")
    if out.size and any(_overlap(_span(out), _span(operand)) for operand in (a, b) if operand.size):
        raise ValueError("gemm: out overlaps an operand; cuBLAS's result would be undefined.")
    transa, lda = _stored(b2, "b")  # cuBLAS's A: b's memory, for out^T = b^T a^T
    transb, ldb = _stored(a, "a")
    return GemmCall(dtype, transa, transb, n, m, k, b.data.ptr, lda, a.data.ptr, ldb, out.data.ptr, max(1, n))


def _overlap(first, second) -> bool:
    return first[0] < second[1] and second[0] < first[1]
