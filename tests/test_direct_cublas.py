"""backend.gemm's direct cuBLAS path (backend/layout.py, cublas.py, graphs.py): the arguments for every layout the
layers use, each product of a training step checked on its own, the handle of a stream (its set-up, math mode and
lifetime) and the library lookup. The device cases run on the strict stand-in, whose emulated libcublas executes
the calls, and on a GPU through CuPy's libcublas (they skip without one)."""

import ctypes
import gc
import os
import sys
import traceback
import types
import weakref

import numpy
import pytest

from backend import gemm, graphs
from backend import cublas as cublas_module
from backend.cublas import WORKSPACE_BYTES, Cublas, CublasError, cublas_for
from backend.layout import gemm_arguments
from backend.standin import StrictCupy
from backend.standin.capture import CaptureAllocationError, CaptureStreamError, KernelNotLoadedError
from conftest import make_backend
from nets.nn.models import build_model
from nets.optim import Adam
from nets.train.engine import NetsEngine

DTYPES = [numpy.float32, numpy.float64]
TOLERANCE = {numpy.float32: dict(rtol=1e-5, atol=1e-6), numpy.float64: dict(rtol=1e-12, atol=1e-14)}


def operand(xp, shape, layout, seed, dtype):
    """(host matrix, the same on the device) in `layout`: C- or F-contiguous, rows of a larger buffer (a pointer into
    its middle, as the layers' `block[:-1]`), or a vector."""
    host = numpy.random.default_rng(seed).standard_normal(shape).astype(dtype)
    if layout == "F":
        return host, xp.asarray(numpy.ascontiguousarray(host.T)).T
    if layout == "rows":
        larger = numpy.zeros((shape[0] + 2, *shape[1:]), dtype=dtype)
        larger[1:-1] = host
        return host, xp.asarray(larger)[1:-1]
    return host, xp.asarray(host)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("right", ["C", "F", "vector"])
@pytest.mark.parametrize("left", ["C", "F", "rows"])
def test_every_layout_through_the_direct_path(device_backend, left, right, dtype):
    """The eager warm-up and the captured product both go through the stream's handle: the same call, so the same
    numbers; against CuPy's matmul of the same operands bit for bit on the stand-in (both are NumPy's product there),
    against the host's product to float rounding on a GPU. A wrong transpose or leading dimension reads other
    numbers."""
    xp = device_backend.xp
    a_host, a = operand(xp, (7, 5), left, 0, dtype)
    b_host, b = operand(xp, (5,) if right == "vector" else (5, 3), "C" if right == "vector" else right, 1, dtype)
    shape = (7,) if right == "vector" else (7, 3)
    direct, captured = (operand(xp, shape, "rows" if left == "rows" else "C", 2, dtype)[1] for _ in range(2))
    stream = graphs.side_stream(xp)
    with graphs.on_stream(xp, stream):
        with graphs.direct_cublas(xp, stream) as warm_up:
            gemm(a, b, direct)
        graph = graphs.capture(xp, stream, lambda: gemm(a, b, captured))
        graph.launch()
    assert warm_up.refused is None, warm_up.refused
    numpy.testing.assert_array_equal(captured.get(), direct.get())
    if isinstance(xp, StrictCupy):  # NumPy's product of the same layouts, as xp.matmul makes it
        numpy.testing.assert_array_equal(direct.get(), xp.matmul(a, b).get())
    else:
        numpy.testing.assert_allclose(direct.get(), a_host @ b_host, **TOLERANCE[dtype])


def layer_site() -> str:
    """The line of nets/ that asked for the product being made."""
    frames = [frame for frame in traceback.extract_stack() if f"{os.sep}nets{os.sep}" in frame.filename]
    return f"{os.path.relpath(frames[-1].filename)}:{frames[-1].lineno} {frames[-1].name}" if frames else "?"


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_every_product_of_a_training_step_is_right_on_its_own(device_backend, model, dtype, monkeypatch):
    """A training step's eager warm-up, every product through the direct path checked against the host's product of
    the same operands the moment it is made: a wrong argument names its layer, before it can spoil later steps."""
    xp = device_backend.xp
    net = build_model(model, backend=device_backend, dtype=numpy.dtype(dtype).name, rng=numpy.random.default_rng(0))
    engine = NetsEngine(net, Adam(net.parameters(), lr=1e-3), device_backend)
    rng = numpy.random.default_rng(1)
    images = device_backend.asarray(rng.random((8, *net.input_shape)).astype(dtype))
    labels = device_backend.asarray(rng.integers(0, 10, 8))
    x, y = engine.batch(images, labels, device_backend.asarray(numpy.arange(8)))
    engine.plan([1e-3] * 2)
    engine.train_step(x, y)  # buffers and tables made, through CuPy's matmul
    made = []
    direct_gemm = Cublas.gemm

    def checked(cublas, a, b, out):
        a_host, b_host = a.get(), b.get()
        direct_gemm(cublas, a, b, out)
        made.append((layer_site(), out.get(), a_host @ b_host))

    monkeypatch.setattr(Cublas, "gemm", checked)
    stream = graphs.side_stream(xp)
    with graphs.on_stream(xp, stream), graphs.direct_cublas(xp, stream) as warm_up:
        engine.train_step(x, y)
    assert warm_up.refused is None, warm_up.refused
    assert len(made) >= (10 if model == "mlp" else 12), [site for site, _, _ in made]
    for site, got, expected in made:
        numpy.testing.assert_allclose(got, expected, **TOLERANCE[dtype], err_msg=site)


def test_gemm_arguments_refuse_what_cublas_cannot_take(standin):
    def device(shape, seed=0):
        return standin.asarray(numpy.random.default_rng(seed).standard_normal(shape).astype(numpy.float32))

    a, b = device((6, 8)), device((8, 4), seed=1)
    out = standin.empty((6, 4), dtype=numpy.float32)
    with pytest.raises(ValueError, match="neither C- nor F-contiguous"):
        gemm_arguments(a[:, ::2], b[::2], out)
    with pytest.raises(ValueError, match="out must be C-contiguous"):
        gemm_arguments(a, b, standin.empty((4, 6), dtype=numpy.float32).T)
    with pytest.raises(ValueError, match="overlaps an operand"):
        square = device((4, 4))
        gemm_arguments(square, square, square)
    with pytest.raises(TypeError, match="float32 or float64"):
        gemm_arguments(a.astype(numpy.float64), b, out)
    call = gemm_arguments(a, b.T.copy().T, out)  # b F-contiguous: read transposed, leading dimension 8
    assert (call.transa, call.lda, call.transb, call.ldb, call.m, call.n, call.k) == (1, 8, 0, 8, 4, 6, 8)


def test_a_product_the_warm_up_cannot_send_to_cublas_is_cupys_and_is_remembered(standin):
    a = standin.asarray(numpy.arange(48, dtype=numpy.float32).reshape(6, 8))
    b = standin.asarray(numpy.ones((4, 4), dtype=numpy.float32))
    out = standin.empty((6, 4), dtype=numpy.float32)
    stream = graphs.side_stream(standin)
    with graphs.on_stream(standin, stream), graphs.direct_cublas(standin, stream) as warm_up:
        gemm(a[:, ::2], b, out)  # a layout cuBLAS cannot read: CuPy's matmul copies it first
    assert isinstance(warm_up.refused, ValueError) and "neither C- nor F-contiguous" in str(warm_up.refused)
    numpy.testing.assert_array_equal(out.get(), a.get()[:, ::2] @ b.get())


def test_the_emulated_cublas_holds_the_call_to_cublas_rules(standin):
    library = standin.emulated_cublas()
    handle = ctypes.c_void_p()
    assert library.cublasCreate_v2(ctypes.byref(handle)) == 0
    a, b = (standin.asarray(numpy.random.default_rng(seed).standard_normal(shape).astype(numpy.float32))
            for seed, shape in ((0, (2, 3)), (1, (3, 2))))
    c = standin.empty((2, 2), dtype=numpy.float32)
    one, zero = ctypes.c_float(1.0), ctypes.c_float(0.0)

    def sgemm(lda):
        return library.cublasSgemm_v2(handle, 0, 0, 2, 2, 3, ctypes.byref(one), b.data.ptr, lda, a.data.ptr, 3,
                                      ctypes.byref(zero), c.data.ptr, 2)

    def capturing(action):
        with stream:
            stream.begin_capture()
            try:
                action()
            finally:
                stream.end_capture()

    assert sgemm(lda=1) == 7  # CUBLAS_STATUS_INVALID_VALUE: a leading dimension shorter than a column
    assert library.cublasSetMathMode(handle, 5) == 7 and library.cublasSetMathMode(handle, 3 | 16) == 0
    stream = standin.cuda.Stream(non_blocking=True)
    with pytest.raises(CaptureStreamError, match="bound to stream 0"):  # the handle is still on the default stream
        capturing(lambda: sgemm(lda=2))
    assert library.cublasSetStream_v2(handle, ctypes.c_void_p(stream.ptr)) == 0
    with pytest.raises(CaptureAllocationError, match="without a workspace of its own"):
        capturing(lambda: sgemm(lda=2))
    workspace = standin.cuda.Memory(1 << 20)
    assert library.cublasSetWorkspace_v2(handle, ctypes.c_void_p(workspace.ptr), ctypes.c_size_t(1 << 20)) == 0
    with pytest.raises(KernelNotLoadedError, match=r"cublasSgemm_v2 \(float32, 0, 0, 2, 2, 3\)"):
        capturing(lambda: sgemm(lda=2))  # this GEMM never ran: its kernel may not be loaded
    assert sgemm(lda=2) == 0
    numpy.testing.assert_allclose(c.get(), a.get() @ b.get(), rtol=1e-6)
    capturing(lambda: sgemm(lda=2))
    with pytest.raises(ValueError, match="outside every live array"):
        library.cublasSgemm_v2(handle, 0, 0, 2, 2, 3, ctypes.byref(one), b.data.ptr + 4096, 2, a.data.ptr, 3,
                               ctypes.byref(zero), c.data.ptr, 2)


def test_a_stream_has_one_handle_that_lives_and_dies_with_it(standin):
    """... and a workspace of its own from cudaMalloc (cupy.cuda.Memory), not CuPy's pool: the bench's peak memory,
    which counts the pool's live arrays, leaves it out, as it leaves out the one cuBLAS makes for CuPy's handle."""
    library = standin.emulated_cublas()
    stream, other = graphs.side_stream(standin), graphs.side_stream(standin)
    mark = standin.counter.mark()
    cublas = cublas_for(standin, stream)
    assert standin.counter.since(mark).allocations == 0
    assert cublas is cublas_for(standin, stream) and cublas is not cublas_for(standin, other)
    assert cublas._workspace.ptr != cublas_for(standin, other)._workspace.ptr
    handle, workspace = cublas._handle.value, weakref.ref(cublas._workspace)
    assert library.handle_state(handle) == {"stream": stream.ptr, "workspace": (cublas._workspace.ptr, WORKSPACE_BYTES),
                                            "math_mode": 0}
    del cublas, stream
    gc.collect()
    assert library.handle_state(handle) is None and workspace() is None  # destroyed, and its workspace freed


def test_a_captured_graph_keeps_its_stream_and_so_its_handle(standin):
    library = standin.emulated_cublas()
    a = standin.asarray(numpy.ones((4, 3), dtype=numpy.float32))
    b = standin.asarray(numpy.ones((3, 2), dtype=numpy.float32))
    out = standin.zeros((4, 2), dtype=numpy.float32)
    stream = graphs.side_stream(standin)
    with graphs.on_stream(standin, stream):
        with graphs.direct_cublas(standin, stream):
            gemm(a, b, out)
        graph = graphs.capture(standin, stream, lambda: gemm(a, b, out))
    handle = cublas_for(standin, stream)._handle.value
    del stream
    gc.collect()
    assert library.handle_state(handle) is not None
    graph.launch()
    del graph
    gc.collect()
    assert library.handle_state(handle) is None


@pytest.mark.parametrize("tf32, mode", [("0", 0), ("1", 3)])
def test_the_math_mode_follows_cupys_tf32_setting(monkeypatch, tf32, mode):
    monkeypatch.setenv("CUPY_TF32", tf32)
    gpu = make_backend("standin")
    cublas = cublas_for(gpu.xp, graphs.side_stream(gpu.xp))
    assert gpu.xp.emulated_cublas().handle_state(cublas._handle)["math_mode"] == mode


def test_cupys_compute_type_is_where_the_math_mode_is_read(monkeypatch):
    cupy = pytest.importorskip("cupy", reason="cupy is not importable here")
    monkeypatch.delenv("CUPY_TF32", raising=False)
    assert cublas_module.uses_tf32(cupy) is (cupy._core.get_compute_type(numpy.float32) == 7)


class WithoutSymbol:
    """A libcublas lacking one symbol, as ctypes shows it (AttributeError)."""

    def __init__(self, library, missing):
        self._library, self._missing = library, missing

    def __getattr__(self, name):
        if name == self._missing:
            raise AttributeError(f"undefined symbol: {name}")
        return getattr(self._library, name)


def failing(status):
    return lambda *arguments: status


@pytest.mark.parametrize("stage, message", [
    ("lookup", r"CuPy's cuBLAS could not be loaded \(libcublas.so.12: cannot open shared object file\)"),
    ("symbol", "the loaded libcublas has no cublasSetWorkspace_v2"),
    ("cublasCreate_v2", "cublasCreate_v2 failed: CUBLAS_STATUS_ALLOC_FAILED"),
    ("cublasSetStream_v2", "cublasSetStream_v2 failed: CUBLAS_STATUS_NOT_INITIALIZED"),
    ("cublasSetWorkspace_v2", "cublasSetWorkspace_v2 failed: CUBLAS_STATUS_INVALID_VALUE"),
    ("cublasSetMathMode", "cublasSetMathMode failed: CUBLAS_STATUS_INVALID_VALUE"),
])
def test_a_set_up_that_fails_is_one_clear_error_and_keeps_nothing(standin, monkeypatch, stage, message):
    library = standin.emulated_cublas()
    if stage == "lookup":
        def lookup():
            raise ImportError("libcublas.so.12: cannot open shared object file")
        monkeypatch.setattr(standin, "emulated_cublas", lookup)
    elif stage == "symbol":
        monkeypatch.setattr(standin, "emulated_cublas", lambda: WithoutSymbol(library, "cublasSetWorkspace_v2"))
    else:
        monkeypatch.setattr(library, stage, failing({"cublasCreate_v2": 3, "cublasSetStream_v2": 1}.get(stage, 7)))
    stream = graphs.side_stream(standin)
    with pytest.raises(CublasError, match=message) as error:
        graphs.prepare(standin, stream)
    assert "\n" not in str(error.value)
    del error  # its traceback holds the half-made handle
    gc.collect()
    assert stream not in cublas_module._HANDLES and not library._handles  # no handle kept, none left alive


def test_the_lookup_imports_cupys_cublas_as_cupy_does_and_says_when_it_cannot(monkeypatch):
    """`from cupy_backends.cuda.libs import cublas` (the package's __getattr__ loads libcublas first): an ImportError
    there is a CublasError."""
    pytest.importorskip("cupy", reason="cupy is not importable here")
    import cupy
    import cupy_backends.cuda.libs as libs

    monkeypatch.setattr(cublas_module, "_CUPY_LIBRARY", None)
    monkeypatch.delitem(libs.__dict__, "cublas", raising=False)  # no __getattr__
    monkeypatch.setitem(sys.modules, "cupy_backends.cuda.libs.cublas", None)  # the import fails
    with pytest.raises(CublasError, match=r"^CuPy's cuBLAS could not be loaded \(.+\)$"):
        cublas_module._library(cupy)


def test_the_lookup_opens_only_the_soname_of_cupys_cuda_version(monkeypatch):
    """No other soname, and no path from /proc/self/maps: another libcublas in the process is not CuPy's."""
    pytest.importorskip("cupy", reason="cupy is not importable here")
    import cupy
    import cupy_backends.cuda.libs as libs
    from cupy.cuda import runtime

    monkeypatch.setattr(cublas_module, "_CUPY_LIBRARY", None)
    wrappers = types.ModuleType("cupy_backends.cuda.libs.cublas")
    monkeypatch.setitem(libs.__dict__, "cublas", wrappers)  # no __getattr__
    monkeypatch.setitem(sys.modules, "cupy_backends.cuda.libs.cublas", wrappers)
    monkeypatch.setattr(runtime, "runtimeGetVersion", lambda: 12080)
    opened = []

    def not_loaded(name, mode=0):
        opened.append((name, mode))
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", not_loaded)
    with pytest.raises(CublasError, match=r"libcublas\.so\.12, the cuBLAS of CuPy's CUDA version, is not loaded"):
        cublas_module._library(cupy)
    assert opened == [("libcublas.so.12", os.RTLD_NOLOAD | os.RTLD_NOW)]


@pytest.mark.gpu
def test_the_lookup_finds_the_libcublas_cupy_loaded():
    """The library the direct path calls is the one CuPy's wrappers are linked against: the same dlopen handle as
    ctypes.CDLL("libcublas.so.<CuPy's CUDA major>", RTLD_NOLOAD)."""
    gpu = make_backend("gpu")
    from cupy.cuda import runtime

    library = cublas_module._library(gpu.xp)
    loaded = ctypes.CDLL(f"libcublas.so.{runtime.runtimeGetVersion() // 1000}", mode=os.RTLD_NOLOAD | os.RTLD_NOW)
    assert library._handle == loaded._handle
