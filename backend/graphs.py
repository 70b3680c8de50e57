"""A function captured once as a CUDA graph and replayed with one host call: on CuPy, or on the strict stand-in,
which records and replays the same way on any machine (backend/standin/capture.py).

    stream = side_stream(xp)                  # capture cannot use the default stream
    with on_stream(xp, stream):               # every step of the run on it, in order
        prepare(xp, stream)                   # the stream's cuBLAS handle, before any of the step's device work
        with direct_cublas(xp, stream) as warm_up:
            step()                            # eagerly, its products through that handle: kernels loaded now
        graph = capture(xp, stream, step)     # step's work recorded, not run; its GEMMs go to cuBLAS directly
        graph.launch()                        # one host call runs every kernel of the step

While `capture` runs, and inside `direct_cublas`, `direct_path()` says so, and backend.gemm calls cuBLAS through the
stream's own handle (backend/cublas.py): the warm-up loads the very kernels the capture records, with the same
handle and workspace. A product the handle cannot take during the warm-up (an operand layout cuBLAS cannot read,
a refused call) is computed by xp.matmul instead, and `warm_up.refused` keeps the first such error: that step must
not be captured. What the function touches must stay where it is (no allocation, no copy to or from the host, no
sync): a graph replays the same kernels on the same memory with the same scalars.
"""

from __future__ import annotations

import contextlib
import ctypes

from .cublas import Cublas, cublas_for

__all__ = ["CapturedGraph", "DirectPath", "capture", "direct_cublas", "direct_path", "on_stream", "prepare",
           "side_stream"]


class DirectPath:
    """Products sent to cuBLAS directly through `cublas` on `stream`: while a graph is captured (capturing), or in a
    step's eager warm-up before it, where `refused` keeps the first error of a product cuBLAS could not take."""

    def __init__(self, stream, cublas: Cublas, capturing: bool):
        self.stream, self.cublas, self.capturing = stream, cublas, capturing
        self.refused: Exception | None = None

    def refuse(self, error: Exception) -> None:
        if self.refused is None:
            self.refused = error


_direct: DirectPath | None = None  # during `capture` and `direct_cublas`


def direct_path() -> DirectPath | None:
    """Where backend.gemm sends products to cuBLAS directly now, or None (it calls xp.matmul)."""
    return _direct


def prepare(xp, stream) -> Cublas:
    """The cuBLAS handle of `stream`, made now if need be (library lookup, cublasCreate, its stream, its workspace,
    its math mode): a step's set-up, before any of its device work. CublasError when it cannot be made."""
    return cublas_for(xp, stream)


@contextlib.contextmanager
def _directed(path: DirectPath):
    global _direct
    previous, _direct = _direct, path
    try:
        with path.stream:
            yield path
    finally:
        _direct = previous


@contextlib.contextmanager
def direct_cublas(xp, stream):
    """Inside the block, backend.gemm calls cuBLAS directly on `stream` (current inside), through the handle a capture
    on it will use: run a step's warm-up so, and its capture records kernels already loaded. Yields the DirectPath,
    whose `refused` says whether a product had to go through xp.matmul instead."""
    with _directed(DirectPath(stream, prepare(xp, stream), capturing=False)) as path:
        yield path


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
    go to cuBLAS through the stream's own handle, made and bound before capture begins. Whatever function() raises
    ends the capture unrecorded and is raised again. The graph keeps its stream, and so the stream's handle and
    workspace, which its cuBLAS kernels use."""
    with _directed(DirectPath(stream, prepare(xp, stream), capturing=True)):
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
