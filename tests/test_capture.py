"""CUDA-graph capture on the strict stand-in: captured work is recorded, not run, and replayed by Graph.launch;
what CuPy and CUDA refuse during capture is refused, in their words; backend.gemm's direct cuBLAS path is
emulated call by call (backend/standin/capture.py, cublas.py; backend/gemm.py, cublas.py, graphs.py)."""

import ctypes

import numpy
import pytest

from backend import gemm, graphs
from backend.cublas import CublasError, cublas_for
from backend.gemm import gemm_arguments
from backend.standin.capture import CaptureAllocationError, CaptureStreamError


def device(xp, shape=(4, 5), seed=0, dtype=numpy.float32):
    return xp.asarray(numpy.random.default_rng(seed).standard_normal(shape).astype(dtype))


def capturing(xp, stream, action):
    """Run action() while `stream` captures; returns the graph (end_capture's)."""
    with stream:
        stream.begin_capture()
        try:
            action()
        finally:
            graph = stream.end_capture()
    return graph


# ---------------------------------------------------------------------------------- recorded, not run


def test_captured_work_is_not_run_until_the_graph_is_launched(standin):
    a = device(standin)
    before = a.get()
    stream = standin.cuda.Stream(non_blocking=True)
    scale = 3.0
    graph = capturing(standin, stream, lambda: standin.multiply(a, scale, out=a))
    scale = 5.0  # noqa: F841  a scalar is captured by value, as CUDA captures kernel arguments
    numpy.testing.assert_array_equal(a.get(), before)
    graph.launch(stream)
    graph.launch(stream)
    numpy.testing.assert_array_equal(a.get(), before * 3 * 3)


def test_a_launch_is_one_host_call_and_the_kernels_are_counted_at_capture(standin):
    a, b = device(standin), device(standin, seed=1)
    stream = standin.cuda.Stream(non_blocking=True)
    mark = standin.counter.mark()

    def step():
        standin.add(a, b, out=a)
        a.fill(0)
        a[...] = b

    graph = capturing(standin, stream, step)
    assert standin.counter.since(mark).host_calls == 0  # nothing reached the device during capture
    assert graph.kernels == 1 and graph.tally.by_kind() == {"elementwise": 1, "memset": 1, "memcpy": 1}
    mark = standin.counter.mark()
    graph.launch(stream)
    tally = standin.counter.since(mark)
    assert (tally.graph_launches, tally.host_calls, tally.launches) == (1, 1, 0)


# ---------------------------------------------------------------------------------- what capture refuses


def test_capture_on_the_default_stream_is_refused_as_cupy_refuses_it(standin):
    with pytest.raises(RuntimeError, match=r"cannot capture on the default \(legacy\) stream"):
        standin.cuda.Stream.null.begin_capture()


@pytest.mark.parametrize("read", [lambda xp, a: a.get(), lambda xp, a: a[0, 0].item(), lambda xp, a: float(a[0, 0]),
                                  lambda xp, a: int(a[0, 0]), lambda xp, a: bool(a[0, 0]),
                                  lambda xp, a: xp.asnumpy(a)])
def test_a_read_to_the_host_during_capture_is_refused(standin, read):
    a = device(standin)
    stream = standin.cuda.Stream(non_blocking=True)
    with pytest.raises(RuntimeError, match="the current stream is capturing, so D2H transfers are disallowed"):
        capturing(standin, stream, lambda: read(standin, a))


def test_a_copy_from_the_host_during_capture_is_refused(standin):
    a = device(standin, (3,))
    stream = standin.cuda.Stream(non_blocking=True)
    for copy in (lambda: standin.asarray(numpy.ones(3, dtype=numpy.float32)),
                 lambda: a.set(numpy.ones(3, dtype=numpy.float32))):
        with pytest.raises(RuntimeError, match="the current stream is capturing, so H2D transfers are disallowed"):
            capturing(standin, stream, copy)


def test_synchronize_during_capture_fails_and_invalidates_it(standin):
    stream = standin.cuda.Stream(non_blocking=True)
    with stream:
        stream.begin_capture()
        with pytest.raises(Exception, match="cudaErrorStreamCaptureUnsupported"):
            stream.synchronize()
        with pytest.raises(Exception, match="cudaErrorStreamCaptureInvalidated"):
            stream.end_capture()
    assert not stream.is_capturing()


def test_cupy_matmul_during_capture_is_refused_but_backend_gemm_is_captured(standin):
    a, b = device(standin, (6, 8)), device(standin, (8, 4), seed=1)
    out = standin.zeros((6, 4), dtype=numpy.float32)
    stream = standin.cuda.Stream(non_blocking=True)
    with pytest.raises(NotImplementedError, match="calling cuBLAS API during stream capture is currently unsupported"):
        capturing(standin, stream, lambda: standin.matmul(a, b, out=out))
    with graphs.on_stream(standin, stream):
        graph = graphs.capture(standin, stream, lambda: gemm(a, b, out))
        assert not out.get().any()  # recorded, not run
        graph.launch()
    numpy.testing.assert_allclose(out.get(), a.get() @ b.get(), rtol=1e-6)
    assert graph.kernels == 1


def test_an_allocation_during_capture_is_refused_unless_the_async_pool_allocates(standin):
    stream = standin.cuda.Stream(non_blocking=True)
    a = device(standin, (3,))
    with pytest.raises(CaptureAllocationError, match="default memory pool while the stream is capturing"):
        capturing(standin, stream, lambda: a + 1)
    standin.cuda.set_allocator(standin.cuda.MemoryAsyncPool().malloc)
    made = []
    graph = capturing(standin, stream, lambda: made.append(a + 1))
    assert numpy.isnan(made[0].get()).all()  # a graph's memory holds nothing until a replay writes it
    graph.launch(stream)
    numpy.testing.assert_array_equal(made[0].get(), a.get() + 1)


def test_work_on_another_stream_during_capture_is_refused(standin):
    a = device(standin, (3,))
    stream = standin.cuda.Stream(non_blocking=True)
    with stream:
        stream.begin_capture()
    with pytest.raises(CaptureStreamError, match="outside the graph"):
        a += 1  # on the default stream, while `stream` captures
    with stream:
        stream.end_capture()


def test_a_graph_refuses_to_run_once_memory_it_uses_is_freed(standin):
    a = device(standin, (3,))
    stream = standin.cuda.Stream(non_blocking=True)
    graph = capturing(standin, stream, lambda: standin.add(a, 1, out=a))
    del a
    with pytest.raises(RuntimeError, match="after memory it uses was freed"):
        graph.launch(stream)


# ---------------------------------------------------------------------------------- gemm and the emulated cuBLAS


def layouts(xp, shape, seed):
    host = numpy.random.default_rng(seed).standard_normal(shape).astype(numpy.float32)
    c_order = xp.asarray(host)
    f_order = xp.asarray(numpy.ascontiguousarray(host.T)).T  # the same matrix, F-contiguous
    return host, {"C": c_order, "F": f_order}


@pytest.mark.parametrize("left", ["C", "F"])
@pytest.mark.parametrize("right", ["C", "F", "vector"])
def test_captured_gemm_equals_matmul_bit_for_bit_for_every_layout(standin, left, right):
    a_host, a_layouts = layouts(standin, (7, 5), 0)
    if right == "vector":
        b_host = numpy.random.default_rng(1).standard_normal(5).astype(numpy.float32)
        b = standin.asarray(b_host)
    else:
        b_host, b_layouts = layouts(standin, (5, 3), 1)
        b = b_layouts[right]
    a = a_layouts[left]
    shape = (7,) if right == "vector" else (7, 3)
    eager, captured = standin.empty(shape, numpy.float32), standin.empty(shape, numpy.float32)
    gemm(a, b, eager)
    stream = graphs.side_stream(standin)
    with graphs.on_stream(standin, stream):
        graphs.capture(standin, stream, lambda: gemm(a, b, captured)).launch()
    numpy.testing.assert_array_equal(captured.get(), eager.get())
    numpy.testing.assert_allclose(captured.get(), a_host @ b_host, rtol=1e-5)


def test_gemm_arguments_refuse_what_cublas_cannot_take(standin):
    a, b = device(standin, (6, 8)), device(standin, (8, 4), seed=1)
    out = standin.empty((6, 4), dtype=numpy.float32)
    with pytest.raises(ValueError, match="neither C- nor F-contiguous"):
        gemm_arguments(a[:, ::2], b[::2], out)
    with pytest.raises(ValueError, match="out must be C-contiguous"):
        gemm_arguments(a, b, standin.empty((4, 6), dtype=numpy.float32).T)
    with pytest.raises(ValueError, match="overlaps an operand"):
        square = device(standin, (4, 4))
        gemm_arguments(square, square, square)
    with pytest.raises(TypeError, match="float32 or float64"):
        gemm_arguments(a.astype(numpy.float64), b, out)
    call = gemm_arguments(a, b.T.copy().T, out)  # b F-contiguous: read transposed, leading dimension 8
    assert (call.transa, call.lda, call.transb, call.ldb, call.m, call.n, call.k) == (1, 8, 0, 8, 4, 6, 8)


def test_the_emulated_cublas_holds_the_call_to_cublas_rules(standin):
    library = standin.emulated_cublas()
    handle = ctypes.c_void_p()
    assert library.cublasCreate_v2(ctypes.byref(handle)) == 0
    a, b = device(standin, (2, 3)), device(standin, (3, 2), seed=1)
    c = standin.empty((2, 2), dtype=numpy.float32)
    one, zero = ctypes.c_float(1.0), ctypes.c_float(0.0)

    def sgemm(lda):
        return library.cublasSgemm_v2(handle, 0, 0, 2, 2, 3, ctypes.byref(one), b.data.ptr, lda, a.data.ptr, 3,
                                      ctypes.byref(zero), c.data.ptr, 2)

    assert sgemm(lda=1) == 7  # CUBLAS_STATUS_INVALID_VALUE: a leading dimension shorter than a column
    assert sgemm(lda=2) == 0
    numpy.testing.assert_allclose(c.get(), a.get() @ b.get(), rtol=1e-6)
    with pytest.raises(ValueError, match="outside every live array"):
        library.cublasSgemm_v2(handle, 0, 0, 2, 2, 3, ctypes.byref(one), b.data.ptr + 4096, 2, a.data.ptr, 3,
                               ctypes.byref(zero), c.data.ptr, 2)
    stream = standin.cuda.Stream(non_blocking=True)
    with pytest.raises(CaptureStreamError, match="bound to stream 0"):  # the handle is still on the default stream
        capturing(standin, stream, lambda: sgemm(lda=2))
    assert library.cublasSetStream_v2(handle, ctypes.c_void_p(stream.ptr)) == 0
    with pytest.raises(CaptureAllocationError, match="without a workspace of its own"):
        capturing(standin, stream, lambda: sgemm(lda=2))


def test_a_failed_cublas_call_is_one_clear_error(standin):
    stream, other = standin.cuda.Stream(non_blocking=True), standin.cuda.Stream(non_blocking=True)
    cublas = cublas_for(standin, stream)
    assert cublas is cublas_for(standin, stream) and cublas is not cublas_for(standin, other)  # a handle per stream
    assert cublas._workspace is not cublas_for(standin, other)._workspace
    cublas._library.cublasDestroy_v2(cublas._handle)
    with pytest.raises(CublasError, match="cublasSetStream_v2 failed: CUBLAS_STATUS_NOT_INITIALIZED"):
        cublas.bind(stream)
