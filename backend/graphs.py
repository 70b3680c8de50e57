"""A function captured once as a CUDA graph and replayed with one host call: on CuPy, or on the strict stand-in,
which records and replays the same way on any machine (backend/standin/capture.py).

    stream = side_stream(xp)                  # capture cannot use the default stream
    with on_stream(xp, stream):               # every step of the run on it, in order
        graph = capture(xp, stream, step)     # step's work recorded, not run; its GEMMs go to cuBLAS directly
        graph.launch()                        # one host call runs every kernel of the step

While `capture` runs, `capturing()` is True and backend.gemm calls cuBLAS through its own handle (backend/cublas.py),
bound to the stream beforehand. What the function touches must stay where it is (no allocation, no copy to or
from the host, no sync): a graph replays the same kernels on the same memory with the same scalars.
"""

from __future__ import annotations

import contextlib
import ctypes

__all__ = ["CapturedGraph", "capture", "capturing", "on_stream", "side_stream"]

_capturing = None  # the stream being captured by `capture`, else None


def capturing() -> bool:
    """True while `capture` runs its function (backend.gemm then calls cuBLAS directly)."""
    return _capturing is not None


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
    go to cuBLAS through a handle bound to `stream` first. Whatever function() raises ends the capture unrecorded
    and is raised again."""
    from .cublas import cublas_for

    global _capturing
    cublas_for(xp).bind(stream)
    with stream:
        stream.begin_capture()
        _capturing = stream
        try:
            function()
        except BaseException:
            _capturing = None
            with contextlib.suppress(Exception):
                stream.end_capture()
            raise
        _capturing = None
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
        driver = ctypes.CDLL("libcuda.so.1", mode=ctypes.RTLD_GLOBAL)
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
