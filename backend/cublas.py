"""cuBLAS called directly, for the matrix products of a training step captured as a CUDA graph.

Why directly: CuPy 14 refuses every cuBLAS call during stream capture. cupy_backends/cuda/libs/cublas.pyx:

    cpdef setStream(intptr_t handle, size_t stream):
        if not runtime._is_hip_environment and runtime.streamIsCapturing(stream):
            raise NotImplementedError('calling cuBLAS API during stream capture is currently unsupported')

and every wrapper (sgemm, dgemm, gemmEx, ...) calls it first, through `_setStream(handle)`; cupy.matmul reaches
cublas.gemmEx (cupy/_core/_routines_linalg.pyx, tensordot_core_v11). cuBLAS itself captures fine: "cuBLAS routines
can be captured in CUDA Graph stream capture without restrictions in most situations", with host pointer-mode
coefficients "captured in the graph" (cuBLAS documentation, "CUDA Graphs Support").

Why ctypes on the libcublas CuPy has loaded: CuPy links its wrappers against libcublas (`NEEDED libcublas.so.12` in
cupy_backends/cuda/libs/cublas.so of cupy-cuda12x; libcublas.so.13 for cuda13x) and loads it with
cuda-pathfinder before they import, so the library is in the process whenever CuPy's matmul works: no wheel to
carry and no version to match. nvmath-python's bindings would need a wheel carried to a machine without a network,
built for its CUDA; cuTENSOR is a further library CuPy loads only when installed; kernels of our own would give up
cuBLAS's tuned GEMMs (the step's largest products are 3201 x 48 and 145 x 15488).

The handle is ours (cublasCreate), not CuPy's, one per stream (graphs on two streams never share a workspace),
and a step's eager warm-up multiplies through it already, so capture records kernels that are loaded. It is bound
to the capturing stream before capture begins (cublasSetStream), then given a workspace of its own
(cublasSetWorkspace, after cublasSetStream, which "unconditionally resets the cuBLAS library workspace back to
the default workspace pool"), so that no cuBLAS version allocates
during capture ("cuBLAS routines can create memory nodes through the use of stream-ordered allocation APIs ... use
the cublasSetWorkspace() function to provide user-owned workspace memory"). 32 MiB is the size the cuBLAS
documentation recommends for Hopper (4 MiB for older GPUs). Pointer mode stays host: alpha 1, beta 0.

On the strict stand-in the same code drives the stand-in's emulated libcublas (backend/standin/cublas.py).
"""

from __future__ import annotations

import ctypes
import os

import numpy

from .gemm import gemm_arguments

__all__ = ["Cublas", "CublasError", "cublas_for"]

WORKSPACE_BYTES = 32 << 20
ALIGNMENT = 256  # cublasSetWorkspace: "The workspace pointer has to be aligned to at least 256 bytes"
SONAMES = ("libcublas.so.13", "libcublas.so.12")  # cuda-pathfinder's list for CuPy 14
STATUS = {0: "SUCCESS", 1: "NOT_INITIALIZED", 3: "ALLOC_FAILED", 7: "INVALID_VALUE", 8: "ARCH_MISMATCH",
          11: "MAPPING_ERROR", 13: "EXECUTION_FAILED", 14: "INTERNAL_ERROR", 15: "NOT_SUPPORTED"}


class CublasError(RuntimeError):
    """cuBLAS could not be found or refused a call; the message names the call and the status."""


def _check(status, call: str) -> None:
    if status != 0:
        raise CublasError(f"{call} failed: CUBLAS_STATUS_{STATUS.get(status, status)}")


def _loaded_library():
    """ctypes' handle on the libcublas this process has loaded for CuPy (the soname of CuPy's CUDA major version
    first: another library, such as a CUDA 13 build of torch, may have loaded another libcublas beside it)."""
    import cupy_backends.cuda.libs.cublas  # noqa: F401  importing CuPy's wrappers loads libcublas (cuda-pathfinder)
    from cupy.cuda import runtime

    major = f"libcublas.so.{runtime.runtimeGetVersion() // 1000}"
    for soname in (major, *(name for name in SONAMES if name != major)):
        try:
            return ctypes.CDLL(soname, mode=os.RTLD_NOLOAD | os.RTLD_NOW)
        except OSError:
            continue
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "/libcublas.so" in line}
    except OSError:
        paths = set()
    for path in sorted(paths):
        return ctypes.CDLL(path)
    raise CublasError("CuPy's libcublas is not loaded in this process (looked for " + ", ".join(SONAMES) + ").")


class Cublas:
    """One cuBLAS handle of our own over `library` (ctypes' CDLL, or the stand-in's emulation), bound to `stream`
    with a workspace of its own, for `xp`'s arrays."""

    def __init__(self, library, xp, stream):
        self._library = library
        handle = ctypes.c_void_p()
        _check(library.cublasCreate_v2(ctypes.byref(handle)), "cublasCreate_v2")
        self._handle = handle
        self._workspace = xp.empty(WORKSPACE_BYTES + ALIGNMENT, dtype=numpy.uint8)  # kept for the handle's life
        self.stream = stream
        self.bind(stream)

    def bind(self, stream) -> None:
        """Run the handle's calls on `stream`, with the workspace of its own (before any capture on it)."""
        library = self._library
        _check(library.cublasSetStream_v2(self._handle, ctypes.c_void_p(stream.ptr)), "cublasSetStream_v2")
        address = self._workspace.data.ptr
        aligned = -(-address // ALIGNMENT) * ALIGNMENT
        _check(library.cublasSetWorkspace_v2(self._handle, ctypes.c_void_p(aligned), ctypes.c_size_t(WORKSPACE_BYTES)),
               "cublasSetWorkspace_v2")

    def gemm(self, a, b, out) -> None:
        """out[...] = a @ b on the bound stream (backend/gemm.py says which layouts)."""
        call = gemm_arguments(a, b, out)
        if call.m == 0 or call.n == 0:
            return
        if call.k == 0:
            out.fill(0)
            return
        double = call.dtype == numpy.float64
        name = "cublasDgemm_v2" if double else "cublasSgemm_v2"
        scalar = ctypes.c_double if double else ctypes.c_float
        alpha, beta = scalar(1.0), scalar(0.0)
        integer, pointer = ctypes.c_int, ctypes.c_void_p
        status = getattr(self._library, name)(
            self._handle, integer(call.transa), integer(call.transb), integer(call.m), integer(call.n),
            integer(call.k), ctypes.byref(alpha), pointer(call.a), integer(call.lda), pointer(call.b),
            integer(call.ldb), ctypes.byref(beta), pointer(call.c), integer(call.ldc))
        _check(status, name)


_CUPY_HANDLES: dict = {}
_CUPY_LIBRARY = None


def cublas_for(xp, stream) -> Cublas:
    """The Cublas of `stream` (a handle and a workspace of its own, bound to it), made on first use: one per stream,
    so graphs replayed on different streams never share a workspace. For CuPy, on the device current then; for a
    stand-in, over its emulated library (the handles are kept on that library, so they go with the stand-in)."""
    emulated = getattr(xp, "emulated_cublas", None)
    if emulated is not None:
        library = emulated()
        handles = library.clients
    else:
        global _CUPY_LIBRARY
        if _CUPY_LIBRARY is None:
            _CUPY_LIBRARY = _loaded_library()
        library, handles = _CUPY_LIBRARY, _CUPY_HANDLES
    cublas = handles.get(stream.ptr)
    if cublas is None or cublas.stream is not stream:  # a stream's address can be reused once it is gone
        cublas = handles[stream.ptr] = Cublas(library, xp, stream)
    return cublas
