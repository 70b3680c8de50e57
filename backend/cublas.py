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
cupy_backends/cuda/libs/cublas.so of cupy-cuda12x; libcublas.so.13 for cuda13x) and loads it with cuda-pathfinder
when they are first imported, as CuPy imports them: `from cupy_backends.cuda.libs import cublas` goes through the
package's __getattr__, which loads the library (and raises ImportError when it cannot be found; a plain
`import cupy_backends.cuda.libs.cublas` would skip that). So the library is in the process whenever CuPy's matmul
works: no wheel to carry and no version to match. It is found by the soname of CuPy's CUDA major version only
(another library, such as a CUDA 13 build of torch, may have loaded another libcublas beside it). nvmath-python's
bindings would need a wheel carried to a machine without a network, built for its CUDA; cuTENSOR is a further
library CuPy loads only when installed; kernels of our own would give up cuBLAS's tuned GEMMs (the step's largest
products are 3201 x 48 and 145 x 15488).

The handle is ours (cublasCreate), not CuPy's: one per stream, made by `cublas_for(xp, stream)` and living as long
as the stream does (graphs on two streams never share a workspace; a captured graph keeps its stream, so its handle
and workspace outlive every replay; when the stream is gone the handle is destroyed and the workspace freed). It is
bound to the stream (cublasSetStream), then given a workspace of its own (cublasSetWorkspace, after cublasSetStream,
which "unconditionally resets the cuBLAS library workspace back to the default workspace pool"), so that no cuBLAS
version allocates during capture ("cuBLAS routines can create memory nodes through the use of stream-ordered
allocation APIs ... use the cublasSetWorkspace() function to provide user-owned workspace memory"). 32 MiB is the
size the cuBLAS documentation recommends for Hopper (4 MiB for older GPUs); it comes from cudaMalloc
(`cupy.cuda.Memory`), not CuPy's pool, like the workspace cuBLAS makes for CuPy's own handle, so a measure of the
pool (the bench's peak memory) leaves both out. Its math mode follows CuPy's for float32 (CUPY_TF32=1, or
cupy._core.set_compute_type, makes CuPy's matmul use TF32: the handle then uses CUBLAS_TF32_TENSOR_OP_MATH), so
the eager and the captured products round alike. Pointer mode stays host: alpha 1, beta 0.

On the strict stand-in the same code drives the stand-in's emulated libcublas (backend/standin/cublas.py).
"""

from __future__ import annotations

import ctypes
import os
import weakref

import numpy

from .core import BackendError, first_line
from .layout import gemm_arguments

__all__ = ["Cublas", "CublasError", "cublas_for"]

WORKSPACE_BYTES = 32 << 20
ALIGNMENT = 256  # cublasSetWorkspace: "The workspace pointer has to be aligned to at least 256 bytes"
DEFAULT_MATH, TF32_TENSOR_OP_MATH = 0, 3  # cublasMath_t
COMPUTE_TYPE_TF32 = 7  # cupy/_core/_routines_linalg.pyx: the compute type CuPy's float32 products use with TF32
SYMBOLS = ("cublasCreate_v2", "cublasDestroy_v2", "cublasSetStream_v2", "cublasSetWorkspace_v2", "cublasSetMathMode",
           "cublasSgemm_v2", "cublasDgemm_v2")
STATUS = {0: "SUCCESS", 1: "NOT_INITIALIZED", 3: "ALLOC_FAILED", 7: "INVALID_VALUE", 8: "ARCH_MISMATCH",
          11: "MAPPING_ERROR", 13: "EXECUTION_FAILED", 14: "INTERNAL_ERROR", 15: "NOT_SUPPORTED"}


class CublasError(BackendError):
    """cuBLAS could not be loaded or set up, or refused a call; the message (a clause, without a final period) names
    the call and the status."""


def _check(status, call: str) -> None:
    if status != 0:
        raise CublasError(f"{call} failed: CUBLAS_STATUS_{STATUS.get(status, status)}")


def _loaded_library():
    """ctypes' handle on the libcublas CuPy has loaded: imported as CuPy imports it (ImportError when it cannot be
    loaded), then opened by the soname of CuPy's CUDA major version without loading anything (RTLD_NOLOAD)."""
    from cupy_backends.cuda.libs import cublas  # noqa: F401  the package loads libcublas first
    from cupy.cuda import runtime

    soname = f"libcublas.so.{runtime.runtimeGetVersion() // 1000}"
    try:
        return ctypes.CDLL(soname, mode=os.RTLD_NOLOAD | os.RTLD_NOW)
    except OSError:
        raise CublasError(f"{soname}, the cuBLAS of CuPy's CUDA version, is not loaded in this process, though CuPy's "
                          "cuBLAS wrappers imported") from None


_CUPY_LIBRARY = None


def _library(xp):
    """The libcublas to call for `xp`'s arrays: CuPy's through ctypes (found once), or the stand-in's emulation.
    CublasError when it cannot be loaded."""
    global _CUPY_LIBRARY
    emulated = getattr(xp, "emulated_cublas", None)
    try:
        if emulated is not None:
            return emulated()
        if _CUPY_LIBRARY is None:
            _CUPY_LIBRARY = _loaded_library()
        return _CUPY_LIBRARY
    except ImportError as error:
        raise CublasError(f"CuPy's cuBLAS could not be loaded ({first_line(error)})") from None


def uses_tf32(xp) -> bool:
    """Whether CuPy's float32 products use TF32 (CUPY_TF32=1, or cupy._core.set_compute_type)."""
    return xp._core.get_compute_type(numpy.float32) == COMPUTE_TYPE_TF32


def _destroy(library, handle, workspace) -> None:
    """A handle's end: off its stream (which may be gone already), then destroyed; its workspace freed after."""
    try:
        library.cublasSetStream_v2(handle, ctypes.c_void_p(0))
        library.cublasDestroy_v2(handle)
    except Exception:  # a finalizer must not raise; a CUDA context being torn down is beyond help here
        pass
    del workspace


class Cublas:
    """One cuBLAS handle of our own over `library` (ctypes' CDLL, or the stand-in's emulation), bound to `stream`
    with a workspace of its own, for `xp`'s arrays; destroyed with its workspace when this object goes."""

    def __init__(self, library, xp, stream):
        missing = [name for name in SYMBOLS if not hasattr(library, name)]  # ctypes: AttributeError per symbol
        if missing:
            raise CublasError(f"the loaded libcublas has no {', '.join(missing)}")
        self._library = library
        self.stream_ptr = stream.ptr
        self._workspace = xp.cuda.Memory(WORKSPACE_BYTES)  # cudaMalloc: out of CuPy's pool, 256-byte aligned
        handle = ctypes.c_void_p()
        _check(library.cublasCreate_v2(ctypes.byref(handle)), "cublasCreate_v2")
        self._handle = handle
        weakref.finalize(self, _destroy, library, handle, self._workspace).atexit = False
        if self._workspace.ptr % ALIGNMENT:
            raise CublasError(f"the cuBLAS workspace at {self._workspace.ptr:#x} is not {ALIGNMENT}-byte aligned")
        _check(library.cublasSetStream_v2(handle, ctypes.c_void_p(stream.ptr)), "cublasSetStream_v2")
        _check(library.cublasSetWorkspace_v2(handle, ctypes.c_void_p(self._workspace.ptr),
                                             ctypes.c_size_t(WORKSPACE_BYTES)), "cublasSetWorkspace_v2")
        _check(library.cublasSetMathMode(handle, ctypes.c_int(TF32_TENSOR_OP_MATH if uses_tf32(xp) else DEFAULT_MATH)),
               "cublasSetMathMode")

    def gemm(self, a, b, out) -> None:
        """out[...] = a @ b on the bound stream (backend/gemm.py says which layouts); ValueError or TypeError for
        operands cuBLAS cannot take, CublasError for a call it refuses."""
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


_HANDLES = weakref.WeakKeyDictionary()  # stream -> its Cublas, for as long as the stream lives


def cublas_for(xp, stream) -> Cublas:
    """The Cublas of `stream` (a handle and a workspace of its own, bound to it), made on first use, on the device
    current then: looked up, created, bound, given its workspace and its math mode. CublasError when any of that
    fails (nothing of it is kept then)."""
    cublas = _HANDLES.get(stream)
    if cublas is None:
        cublas = _HANDLES[stream] = Cublas(_library(xp), xp, stream)
    return cublas
