"""A function captured once as a CUDA graph and replayed with one host call: on CuPy, or on the strict stand-in,
which records and replays the same way on any machine (backend/standin/capture.py).

    stream = side_stream(xp)                  # capture cannot use the default stream
    with on_stream(xp, stream):               # every step of the run on it, in order
        graph = capture(xp, stream, step)     # step's work recorded, not run; its GEMMs go to cuBLAS directly
        graph.launch()                        # one host call runs every kernel of the step

While `capture` runs, and inside `direct_cublas` (a step's eager warm-up before its capture), `direct_stream()` is
that stream and backend.gemm calls cuBLAS through a handle of its own for the stream (backend/cublas.py): the
warm-up loads the very kernels the capture records, with the same handle and workspace. What the function
touches must stay where it is (no allocation, no copy to or from the host, no sync): a graph replays the same
kernels on the same memory with the same scalars.
"""

from __future__ import annotations

import contextlib
import ctypes

__all__ = ["CapturedGraph", "capture", "direct_cublas", "direct_stream", "on_stream", "side_stream"]

_direct = None  # the stream whose products go to cuBLAS directly (during `capture` and `direct_cublas`), else None


def direct_stream():
    """The stream backend.gemm sends products to cuBLAS on directly, or None (it calls xp.matmul)."""
    return _direct


@contextlib.contextmanager
def direct_cublas(xp, stream):
    """Inside the block, backend.gemm calls cuBLAS directly on `stream` (current inside), through the handle a
    capture on it will use: run a step's warm-up so, and its capture records kernels already loaded."""
    from .cublas import cublas_for

    global _direct
    cublas_for(xp, stream)
    previous, _direct = _direct, stream
    try:
        with stream:
            yield
    finally:
        _direct = previous


class CapturedGraph:
    """A captured function: launch() replays it on its stream. kernels: the kernel launches one replay makes, where
    they can be counted (the stand-in's record; on a GPU, the graph's kernel nodes), else None."""

    def __init__(self, graph, stream, kernels):
        self.graph, self.stream, self.kernels = graph, stream, kernels

    def launch(self) -> None:
        self.graph.launch(self.stream)


def side_stream(xp):
    """A non-blocking stream of `xp` (cupy or a stand-in) to capture and replay on."""
    return xp.cuda.Stream(non_blocking=True)


@contextlib.contextmanager
def on_stream(xp, stream):
    """Make `stream` current for the block. Work queued before it on other streams (the data's upload) is finished
    first, and the stream's own work after it, since a non-blocking stream is not ordered with the default one."""
    xp.cuda.Device().synchronize()
    with stream:
        try:
            yield stream
        finally:
            stream.synchronize()


def capture(xp, stream, function) -> CapturedGraph:
    """Record what function() does on `stream` (current inside) as a graph, without running it; its matrix products
    go to cuBLAS through the stream's own handle, bound before capture begins. Whatever function() raises ends the
    capture unrecorded and is raised again."""
    with direct_cublas(xp, stream):
        stream.begin_capture()
        try:
            function()
        except BaseException:
            with contextlib.suppress(Exception):
                stream.end_capture()
            raise
        graph = stream.end_capture()
        graph.upload(stream)
    return CapturedGraph(graph, stream, kernel_count(graph))


def kernel_count(graph) -> int | None:
    """Kernel launches one replay of `graph` makes: the stand-in counts its record; on a GPU the CUDA driver counts
    the graph's kernel nodes (cuGraphGetNodes, cuGraphNodeGetType); None when it cannot be told."""
    counted = getattr(graph, "kernels", None)
    if counted is not None:
        return counted
    try:
        driver = ctypes.CDLL("libcuda.so.1")
        handle = ctypes.c_void_p(graph.graph)
        count = ctypes.c_size_t(0)
        if driver.cuGraphGetNodes(handle, None, ctypes.byref(count)) != 0:
            return None
        nodes = (ctypes.c_void_p * count.value)()
        if driver.cuGraphGetNodes(handle, nodes, ctypes.byref(count)) != 0:
            return None
        kind = ctypes.c_int()
        kernels = 0
        for node in nodes:
            if driver.cuGraphNodeGetType(ctypes.c_void_p(node), ctypes.byref(kind)) != 0:
                return None
            kernels += kind.value == 0  # CU_GRAPH_NODE_TYPE_KERNEL
        return kernels
    except (OSError, AttributeError, TypeError):
        return None
