"""The stand-in's libcublas: the calls backend/cublas.py makes through ctypes on a GPU, emulated over the stand-in's
memory with cuBLAS's rules, so that how the project drives cuBLAS is tested on any machine:

    cublasCreate_v2(byref(handle))                        a handle; its stream is the legacy default stream
    cublasDestroy_v2(handle)                              the handle's end
    cublasSetStream_v2(handle, stream)                    binds the handle to a stream, and (as cuBLAS documents)
                                                          resets its workspace to the library's default pool
    cublasSetWorkspace_v2(handle, pointer, bytes)         a workspace of the caller's (256-byte aligned)
    cublasSetMathMode(handle, mode)                       cublasMath_t: default, pedantic, TF32 (kept, not emulated)
    cublasSgemm_v2 / cublasDgemm_v2(handle, transa, transb, m, n, k, byref(alpha), A, lda, B, ldb, byref(beta),
                                    C, ldc)               C = alpha op(A) op(B) + beta C, column-major

Matrices are column-major with leading dimensions, and the pointers are the stand-in arrays' `.data.ptr`, resolved
to the block of memory they fall in (a pointer or an extent outside every live block is refused, where CUDA would
fault). A GEMM runs on its handle's stream: while a stream captures, a handle bound to another stream is refused
(the call would run now, outside the graph), and so is a handle without a workspace of its own (cuBLAS would
allocate one during capture), and so is a GEMM (routine, transposes and sizes) no handle ran outside a capture (its
kernel may not be loaded yet). Under capture the call is one recorded kernel; otherwise it runs now and counts one.

The product is computed by NumPy on the operands as a row-major caller sees them (op(B)^T @ op(A)^T, transposed),
so a replayed GEMM equals the eager `xp.matmul` bit for bit; a wrong transpose, leading dimension or m/n/k order
reads another matrix and gives another answer.
"""

from __future__ import annotations

import itertools
import weakref

import numpy

from .capture import CaptureAllocationError, CaptureStreamError
from .counter import Event, call_site

OP_N, OP_T = 0, 1
STATUS_SUCCESS, STATUS_NOT_INITIALIZED, STATUS_INVALID_VALUE = 0, 1, 7
WORKSPACE_ALIGNMENT = 256
MATH_MODES = (0, 1, 2, 3)  # cublasMath_t: default, tensor op (deprecated), pedantic, TF32 tensor op
DISALLOW_REDUCED_PRECISION_REDUCTION = 16  # a flag that may be or-ed into a mode


class MemoryPointer:
    """cupy.cuda.MemoryPointer's `ptr`: the address of an array's first element."""

    def __init__(self, ptr: int):
        self.ptr = int(ptr)

    def __int__(self):
        return self.ptr


def _value(argument):
    """The Python value of a ctypes argument (c_int, c_void_p, byref(c_float), ...) or of a plain number."""
    referenced = getattr(argument, "_obj", None)  # ctypes.byref(x)
    if referenced is not None:
        argument = referenced
    value = getattr(argument, "value", argument)
    return 0 if value is None else value


class EmulatedCublas:
    """libcublas over one stand-in device (see the module docstring); methods take ctypes arguments."""

    def __init__(self, xp):
        self._xp = xp
        self._handles: dict = {}
        self._ids = itertools.count(0x1000)
        self._arrays = weakref.WeakValueDictionary()  # address -> a live stand-in array starting there

    def pointer_to(self, array) -> MemoryPointer:
        address = array._data.__array_interface__["data"][0]
        self._arrays[address] = array
        return MemoryPointer(address)

    # ------------------------------------------------------------------ handles
    def cublasCreate_v2(self, handle_reference):  # noqa: N802 (cuBLAS's names)
        handle = next(self._ids)
        self._handles[handle] = {"stream": 0, "workspace": None, "math_mode": 0}
        handle_reference._obj.value = handle
        return STATUS_SUCCESS

    def cublasDestroy_v2(self, handle):  # noqa: N802
        return STATUS_SUCCESS if self._handles.pop(_value(handle), None) is not None else STATUS_NOT_INITIALIZED

    def cublasSetStream_v2(self, handle, stream):  # noqa: N802
        state = self._handles.get(_value(handle))
        if state is None:
            return STATUS_NOT_INITIALIZED
        state["stream"], state["workspace"] = int(_value(stream)), None
        return STATUS_SUCCESS

    def cublasSetWorkspace_v2(self, handle, workspace, size):  # noqa: N802
        state = self._handles.get(_value(handle))
        if state is None:
            return STATUS_NOT_INITIALIZED
        address, size = int(_value(workspace)), int(_value(size))
        if address % WORKSPACE_ALIGNMENT:
            return STATUS_INVALID_VALUE
        self._block(address, size, "the workspace")
        state["workspace"] = (address, size)
        return STATUS_SUCCESS

    def cublasSetMathMode(self, handle, mode):  # noqa: N802
        state = self._handles.get(_value(handle))
        if state is None:
            return STATUS_NOT_INITIALIZED
        mode = int(_value(mode))
        if mode & ~DISALLOW_REDUCED_PRECISION_REDUCTION not in MATH_MODES:
            return STATUS_INVALID_VALUE
        state["math_mode"] = mode
        return STATUS_SUCCESS

    def handle_state(self, handle) -> dict | None:
        """What the library knows of a live handle ({"stream", "workspace", "math_mode"}), or None when there is
        no such handle (never made, or destroyed)."""
        state = self._handles.get(_value(handle))
        return None if state is None else dict(state)

    # ------------------------------------------------------------------ memory
    def _block(self, address: int, extent: int, what: str):
        """(the root numpy array of the live block holding [address, address + extent), the array registered at
        address); raises where CUDA would fault."""
        for array in list(self._arrays.values()):  # the arrays whose pointers were handed out
            root = array._data
            while isinstance(root.base, numpy.ndarray):
                root = root.base
            start = root.__array_interface__["data"][0]
            if start <= address and address + extent <= start + root.nbytes:
                return root, array
        raise ValueError(f"cuBLAS was given {what} at {address:#x} (+{extent} bytes), outside every live array of "
                         "this device; CUDA would fault.")

    def _matrix(self, address, dtype, rows, cols, ld, transposed, what):
        """The column-major rows x cols operand op(X) at address (stored transposed when `transposed`)."""
        itemsize = numpy.dtype(dtype).itemsize
        stored_rows, stored_cols = (cols, rows) if transposed else (rows, cols)
        extent = ((stored_cols - 1) * ld + stored_rows) * itemsize
        root, array = self._block(address, extent, what)
        memory = root if root.flags.c_contiguous else root.T
        offset = address - memory.__array_interface__["data"][0]
        strides = (ld * itemsize, itemsize) if transposed else (itemsize, ld * itemsize)
        view = numpy.ndarray((rows, cols), dtype=dtype, buffer=memory, offset=offset, strides=strides)
        return view, array

    # ------------------------------------------------------------------ GEMM
    def cublasSgemm_v2(self, *arguments):  # noqa: N802
        return self._gemm(numpy.float32, "cublasSgemm_v2", *arguments)

    def cublasDgemm_v2(self, *arguments):  # noqa: N802
        return self._gemm(numpy.float64, "cublasDgemm_v2", *arguments)

    def _gemm(self, dtype, name, handle, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
        xp = self._xp
        state = self._handles.get(_value(handle))
        if state is None:
            return STATUS_NOT_INITIALIZED
        transa, transb, m, n, k, lda, ldb, ldc = (int(_value(v)) for v in (transa, transb, m, n, k, lda, ldb, ldc))
        if transa not in (OP_N, OP_T) or transb not in (OP_N, OP_T) or min(m, n, k) < 0:
            return STATUS_INVALID_VALUE
        if (lda < max(1, m if transa == OP_N else k) or ldb < max(1, k if transb == OP_N else n)
                or ldc < max(1, m)):
            return STATUS_INVALID_VALUE
        alpha, beta = float(_value(alpha)), float(_value(beta))  # pointer mode host: the values, now
        if m == 0 or n == 0:
            return STATUS_SUCCESS
        op_a, array_a = self._matrix(int(_value(a)), dtype, m, k, lda, transa == OP_T, "A")
        op_b, array_b = self._matrix(int(_value(b)), dtype, k, n, ldb, transb == OP_T, "B")
        out, array_c = self._matrix(int(_value(c)), dtype, m, n, ldc, False, "C")

        def work():
            product = numpy.matmul(op_b.T, op_a.T).T if k else numpy.zeros((m, n), dtype=dtype)
            if beta == 0.0:  # cuBLAS does not read C then (a NaN there stays out of the result)
                out[...] = product if alpha == 1.0 else alpha * product
            else:
                out[...] = alpha * product + beta * out

        capture = xp._streams.capture
        kernel = (name, (numpy.dtype(dtype).name, transa, transb, m, n, k))
        if capture is None:
            work()
            xp._kernel_loaded(*kernel)
            xp.counter.record("gemm", name)
            return STATUS_SUCCESS
        if state["stream"] != capture.stream.ptr:
            raise CaptureStreamError(
                f"{name} on a handle bound to stream {state['stream']} while stream {capture.stream.ptr} is capturing: "
                "it would run now, outside the graph; bind the handle to the capturing stream (cublasSetStream) first.")
        if state["workspace"] is None:
            raise CaptureAllocationError(
                f"{name} during capture on a handle without a workspace of its own: cuBLAS would allocate one while "
                "capturing; give it one with cublasSetWorkspace (after cublasSetStream, which resets it).")
        xp._kernel_loaded(*kernel)
        capture.touch((array_a, array_b, array_c))
        capture.work.append(work)
        capture.events.append(Event("gemm", name, call_site()))
        return STATUS_SUCCESS
