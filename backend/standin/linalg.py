"""The stand-in's matrix products, costed as CuPy launches them (cupy/_core/_routines_linalg.pyx, matmul, dot,
tensordot_core): one cuBLAS GEMM; first a copy of an operand that is neither C- nor F-contiguous; a temporary and
a copy when `out` is not C-contiguous, of another dtype, or overlaps an operand; two vectors are a multiply and a
CUB sum. During stream capture every cuBLAS call is refused, as CuPy refuses it (cublas.pyx, setStream).
"""

from __future__ import annotations

import numpy

from .array import kinds
from .capture import CUBLAS_REFUSED
from .signatures import NotModelledError, cupy_function


class LinearAlgebra:
    """matmul and dot of the stand-in module (a mixin of StrictCupy)."""

    def _gemm_operand(self, data: numpy.ndarray, what: str) -> None:
        """_mat_to_cublas_contiguous: cuBLAS takes C- or F-contiguous matrices; anything else is copied first."""
        if not (data.flags.c_contiguous or data.flags.f_contiguous):
            self._launch("copy", f"{what} (operand not contiguous)", (data.dtype.name,))
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
        left, right = a._data, b._data

        def compute():
            return numpy.matmul(left, right)

        result = compute()  # the shapes and dtype, checked as the call would
        if self._recording() is not None and not (a.ndim == 1 and b.ndim == 1) and result.size and a.size and b.size:
            raise NotImplementedError(CUBLAS_REFUSED)  # cublas.pyx setStream, before any work
        if out is not None:
            self._require_device(out, f"{name} (out)")
            if out.shape != result.shape:
                raise ValueError("Output array has an invalid size")
        if a.ndim == 1 and b.ndim == 1:  # tensordot_core's m == n == 1 path: (a * b).sum() with CUB
            self._launch("elementwise", f"{name} (vector product)", kinds(a, b))
            self._alloc(f"{name} (product)")
            self._alloc(f"{name} (CUB workspace)")
            self._launch("reduction", f"{name} (vector sum)", (result.dtype.name,))
            if out is not None:
                self._launch("copy", f"{name} (CUB result into out=)", kinds(out))
        elif result.size and a.size and b.size:
            if max(a.ndim, b.ndim) > 2:  # batched: ascontiguousarray of both, then a strided batched GEMM
                for operand in (a, b):
                    if not operand._data.flags.c_contiguous:
                        self._launch("copy", f"{name} (batched operand)", kinds(operand))
                        self._alloc(f"{name} (batched operand)")
            else:
                self._gemm_operand(a._data if a.ndim == 2 else a._data[None], name)
                self._gemm_operand(b._data if b.ndim == 2 else b._data[:, None], name)
            direct = (out is not None and out._data.flags.c_contiguous and out.dtype == result.dtype
                      and not numpy.may_share_memory(out._data, a._data)
                      and not numpy.may_share_memory(out._data, b._data))
            if out is not None and not direct:
                self._alloc(f"{name} (temporary result)")
            self._launch("gemm", name, kinds(a, b, "->", out) if out is not None else kinds(a, b))
            if out is not None and not direct:
                self._launch("copy", f"{name} (into out=)", kinds(out))
        elif out is not None and out.size:
            self._launch_memset(f"{name} (empty operand: zeros)")
        if out is not None:
            target = out._data
            self._run(lambda: target.__setitem__(Ellipsis, compute()), out, a, b)
            return out
        return self._produce(compute, f"{name} (result)", a, b)

