"""CuPy's streams and CUDA-graph capture in the stand-in: work issued on a capturing stream is recorded, not
run, and a Graph replays the record; what CUDA and CuPy refuse during capture is refused here, in their words.

    stream = xp.cuda.Stream(non_blocking=True)
    with stream:
        stream.begin_capture()            # RuntimeError on the default stream, as CuPy
        step()                            # each operation is recorded with its arrays and scalars, not run
        graph = stream.end_capture()      # a Graph: graph.kernels launches, graph.tally their events
    graph.launch(stream)                  # runs the record again (one "graph" event on the counter)

Refused while the current stream captures (cupy/cuda/memory.pyx, stream.pyx, cupy_backends/cuda/libs/cublas.pyx
of CuPy 14.2, and the CUDA runtime's own errors):

    a read to the host (get, item, float, int, bool, asnumpy)   RuntimeError: ... so D2H transfers are disallowed
    a copy from the host (asarray of a host array, set)         RuntimeError: ... so H2D transfers are disallowed
    Stream.synchronize, Device.synchronize                      CUDARuntimeError cudaErrorStreamCaptureUnsupported,
                                                                and the capture is invalidated (end_capture fails)
    cupy.matmul, cupy.dot (cuBLAS)                              NotImplementedError: calling cuBLAS API during ...
    begin_capture on the default stream                         RuntimeError: cannot capture on the default ...
    an allocation from the default memory pool                  CaptureAllocationError (the stand-in's rule)
    work on another stream while one captures                   CaptureStreamError (the stand-in's rule)
    a kernel launched for the first time                        KernelNotLoadedError (the stand-in's rule)

The last three are stricter than CuPy, which lets both through in its default relaxed capture mode, because both
break a replayed step silently: a block the default pool hands out during capture is not owned by the graph,
so after capture the pool can give it to another array and every replay writes into that array (cupy#8318);
work on another stream runs once, now, and never again. Allocate before capture, or use MemoryAsyncPool
(`xp.cuda.set_allocator(xp.cuda.MemoryAsyncPool().malloc)`), whose blocks a graph owns. A kernel (its name and the
dtypes it runs on, a cuBLAS GEMM by its arguments) that this device never ran before the capture would be compiled
(NVRTC) and its module loaded while the stream captures, or cuBLAS's loaded lazily: the stand-in remembers every
kernel run outside a capture and refuses a new one inside it, so a step is run eagerly with the same kernels first
(CuPy's own cache key also holds the arrays' dimensions and layout, which the stand-in leaves out). A replay also
refuses to run when an array it recorded was freed since (CUDA would read and write memory given to someone else).
`xp.cuda.Memory(size)` is a raw allocation outside the pool (cudaMalloc), refused during capture too.
"""

from __future__ import annotations

import itertools
import weakref

from .counter import Tally
from .signatures import NotModelledError

D2H_REFUSED = "the current stream is capturing, so D2H transfers are disallowed"
H2D_REFUSED = "the current stream is capturing, so H2D transfers are disallowed"
CUBLAS_REFUSED = "calling cuBLAS API during stream capture is currently unsupported"
DEFAULT_STREAM_REFUSED = "cannot capture on the default (legacy) stream"
STREAM_CAPTURE_UNSUPPORTED = 900  # cudaErrorStreamCaptureUnsupported
STREAM_CAPTURE_INVALIDATED = 901  # cudaErrorStreamCaptureInvalidated
STREAM_CAPTURE_IMPLICIT = 906  # cudaErrorStreamCaptureImplicit
ILLEGAL_STATE = 401  # cudaErrorIllegalState

__all__ = ["CaptureAllocationError", "CaptureStreamError", "KernelNotLoadedError", "Recording", "StandinGraph",
           "StreamState", "make_cuda"]


class CaptureAllocationError(RuntimeError):
    """An allocation from the default memory pool while the current stream captures (see the module docstring)."""


class CaptureStreamError(RuntimeError):
    """Device work on a stream other than the one capturing (see the module docstring)."""


class KernelNotLoadedError(RuntimeError):
    """A kernel launched for the first time while a stream captures (see the module docstring)."""


class Allocation:
    """The identity of one block of stand-in device memory: every view of it holds this object, so a capture can
    tell, by a weak reference, whether the block it recorded is still alive."""

    __slots__ = ("name", "__weakref__")

    def __init__(self, name: str = "?"):
        self.name = name


class Recording:
    """What a capture has recorded so far: the work (callables that redo each operation on the same memory), the
    events it would have counted, and the blocks of memory it touched (weak references)."""

    def __init__(self, stream):
        self.stream = stream
        self.work: list = []
        self.events: list = []
        self.blocks: dict = {}  # id(Allocation) -> (weakref, name)
        self.invalidated_by: str | None = None

    def touch(self, arrays) -> None:
        for array in arrays:
            owner = getattr(array, "_owner", None)
            if owner is not None and id(owner) not in self.blocks:
                self.blocks[id(owner)] = (weakref.ref(owner), owner.name)


class StandinGraph:
    """cupy.cuda.graph.Graph of the stand-in: launch() redoes the recorded work, in order, on the same memory.

    kernels: the kernel launches recorded (what one replay runs); tally: all recorded events (counter.Tally)."""

    def __init__(self, xp, recording: Recording):
        self._xp = xp
        self._work = tuple(recording.work)
        self._blocks = tuple(recording.blocks.values())
        self.tally = Tally(recording.events)
        self.kernels = self.tally.launches

    def _check_stream(self, stream):
        xp = self._xp
        stream = xp.cuda.get_current_stream() if stream is None else stream
        if not isinstance(stream, StandinStream) or stream._xp is not xp:
            raise TypeError("Graph.launch/upload takes a stream of this device (cupy.cuda.Stream).")
        return stream

    def upload(self, stream=None) -> None:
        self._check_stream(stream)

    def launch(self, stream=None) -> None:
        xp = self._xp
        self._check_stream(stream)
        if xp._streams.capture is not None:
            raise NotModelledError("launching a graph inside a capture (a child graph) "
                                   "is not modelled by the stand-in.")
        freed = [name for reference, name in self._blocks if reference() is None]
        if freed:
            raise RuntimeError("a captured graph was launched after memory it uses was freed "
                               f"({', '.join(freed[:3])}); CUDA would read and write memory handed to other arrays. "
                               "Keep every array a graph uses alive (and in place) "
                               "for as long as the graph is replayed.")
        xp._event("graph", f"Graph.launch ({self.kernels} kernels)")
        for work in self._work:
            work()


class StreamState:
    """Per stand-in device: the current-stream stack, the capture under way, and the allocator."""

    def __init__(self):
        self.stack: list = []
        self.capture: Recording | None = None
        self.allocator = None  # None: CuPy's default memory pool

    def current(self, null):
        return self.stack[-1] if self.stack else null

    def async_pool(self) -> bool:
        return isinstance(getattr(self.allocator, "__self__", None), MemoryAsyncPool)


class StandinStream:
    """cupy.cuda.Stream of the stand-in (a class per stand-in device, made by make_cuda)."""

    _xp = None
    _ids = itertools.count(16)
    null = None

    def __init__(self, null=False, non_blocking=False, ptds=False, priority=None):
        self.ptr = 0 if null else 2 if ptds else next(self._ids)
        self.non_blocking = bool(non_blocking)
        self.device_id = 0

    def __repr__(self):
        return f"<stand-in stream {self.ptr}{' (null)' if self.ptr == 0 else ''}>"

    def __enter__(self):
        self._xp._streams.stack.append(self)
        return self

    def __exit__(self, *exc):
        stack = self._xp._streams.stack
        if stack and stack[-1] is self:
            stack.pop()
        return False

    def use(self):
        self._xp._streams.stack[:] = [self]
        return self

    def is_non_blocking(self) -> bool:
        return self.non_blocking

    def begin_capture(self, mode=None):
        state = self._xp._streams
        if self.ptr in (0, 1):
            raise RuntimeError(DEFAULT_STREAM_REFUSED)
        if state.capture is not None:
            raise NotModelledError("capturing two streams at once is not modelled by the stand-in.")
        state.capture = Recording(self)

    def is_capturing(self) -> bool:
        capture = self._xp._streams.capture
        if self.ptr == 0 and capture is not None and not capture.stream.non_blocking:
            raise self._xp._cuda_error(STREAM_CAPTURE_IMPLICIT)
        return capture is not None and capture.stream is self

    def end_capture(self):
        xp = self._xp
        capture = xp._streams.capture
        if capture is None or capture.stream is not self:
            raise xp._cuda_error(ILLEGAL_STATE)
        xp._streams.capture = None
        if capture.invalidated_by is not None:
            raise xp._cuda_error(STREAM_CAPTURE_INVALIDATED)
        return StandinGraph(xp, capture)

    def synchronize(self):
        self._xp._stream_sync("Stream.synchronize", self)


class MemoryAsyncPool:
    """cupy.cuda.MemoryAsyncPool of the stand-in: its malloc, set as the allocator, may allocate during capture
    (the graph owns such blocks)."""

    def __init__(self, pool_handles="current"):
        self.pool_handles = pool_handles

    def malloc(self, size):
        raise NotImplementedError("the stand-in allocates through its arrays; "
                                  "set_allocator(pool.malloc) selects this pool.")


class _Runtime:
    def __init__(self, xp):
        self._xp = xp

    def getDeviceCount(self):  # noqa: N802 (CuPy's name)
        return 1

    def getDeviceProperties(self, device_id):  # noqa: N802
        return {"name": b"CuPy stand-in (NumPy)"}

    def deviceSynchronize(self):  # noqa: N802
        self._xp._stream_sync("runtime.deviceSynchronize")


class _Device:
    def __init__(self, xp, device_id=0):
        self._xp, self.id = xp, device_id

    def synchronize(self):
        self._xp._stream_sync("Device.synchronize")


class _Cuda:
    """The cupy.cuda names the project touches: streams, capture, allocators, the device and its runtime."""

    def __init__(self, xp):
        self._xp = xp
        self.runtime = _Runtime(xp)
        self.Stream = type("Stream", (StandinStream,), {"_xp": xp})
        self.Stream.null = self.Stream(null=True)
        self.MemoryAsyncPool = MemoryAsyncPool

    def Memory(self, size):  # noqa: N802 (CuPy's name)
        return self._xp._raw_memory(size)

    def get_current_stream(self, device_id=-1):
        return self._xp._streams.current(self.Stream.null)

    def Device(self, device_id=0):  # noqa: N802 (CuPy's name)
        return _Device(self._xp, device_id)

    def set_allocator(self, allocator=None):
        self._xp._streams.allocator = allocator

    def get_allocator(self):
        return self._xp._streams.allocator


def make_cuda(xp) -> _Cuda:
    return _Cuda(xp)
