"""CUDA-graph capture on the strict stand-in: captured work is recorded, not run, and replayed by Graph.launch;
what CuPy and CUDA refuse during capture is refused, in their words, and so is a kernel launched for the first
time inside a capture (backend/standin/capture.py). backend.gemm's direct cuBLAS path: tests/test_direct_cublas.py."""

import numpy
import pytest

from backend import gemm, graphs
from backend.standin.capture import CaptureAllocationError, CaptureStreamError, KernelNotLoadedError


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
    standin.multiply(a.copy(), scale, out=a.copy())  # the kernel loaded before the capture
    graph = capturing(standin, stream, lambda: standin.multiply(a, scale, out=a))
    scale = 5.0  # noqa: F841  a scalar is captured by value, as CUDA captures kernel arguments
    numpy.testing.assert_array_equal(a.get(), before)
    graph.launch(stream)
    graph.launch(stream)
    numpy.testing.assert_array_equal(a.get(), before * 3 * 3)


def test_a_launch_is_one_host_call_and_the_kernels_are_counted_at_capture(standin):
    a, b = device(standin), device(standin, seed=1)
    stream = standin.cuda.Stream(non_blocking=True)
    standin.add(b, b)  # the kernel loaded before the capture
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
        with graphs.direct_cublas(standin, stream):  # the warm-up: the GEMM's kernel loaded through the same handle
            gemm(a, b, standin.empty((6, 4), dtype=numpy.float32))
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
    a + 1  # the kernel loaded before the capture
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
    standin.add(a, 1)
    graph = capturing(standin, stream, lambda: standin.add(a, 1, out=a))
    del a
    with pytest.raises(RuntimeError, match="after memory it uses was freed"):
        graph.launch(stream)


def test_a_kernel_first_launched_inside_a_capture_is_refused(standin):
    """CuPy compiles a kernel (NVRTC) and loads its module the first time it runs: inside a capture that would
    happen while the stream captures. The stand-in remembers every kernel run outside a capture, by its name and the
    dtypes it runs on, and refuses a new one inside."""
    a = device(standin, (3,))
    stream = standin.cuda.Stream(non_blocking=True)
    first_time = r"cupy\.multiply \(float32, float, ->, float32\) is launched for the first time while the stream"
    with pytest.raises(KernelNotLoadedError, match=first_time):
        capturing(standin, stream, lambda: standin.multiply(a, 2.0, out=a))
    standin.multiply(a, 2.0, out=a)  # now loaded: the same kernel is captured
    capturing(standin, stream, lambda: standin.multiply(a, 3.0, out=a))
    zero_d, doubles = standin.zeros((), numpy.float32), a.astype(numpy.float64)
    refused = [
        lambda: standin.multiply(a, a, out=a),  # another signature: an array where a Python scalar was
        lambda: standin.multiply(a, zero_d, out=a),  # a 0-d array is an array
        lambda: standin.multiply(doubles, 2.0, out=doubles),  # another dtype
        lambda: standin.add(a, 2.0, out=a),  # another ufunc
    ]
    for action in refused:
        with pytest.raises(KernelNotLoadedError):
            capturing(standin, stream, action)
    other = type(standin)(standin._signatures.cupy)  # another device: nothing is loaded there
    b = other.asarray(numpy.ones(3, dtype=numpy.float32))
    other_stream = other.cuda.Stream(non_blocking=True)
    with pytest.raises(KernelNotLoadedError):
        capturing(other, other_stream, lambda: other.multiply(b, 2.0, out=b))

