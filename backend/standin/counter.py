"""What the strict CuPy stand-in counts, and where each count came from.

Every operation on a stand-in array records events, one per thing CuPy would do on a GPU:

    kernel launches, by kind:  elementwise (a ufunc or a fill), reduction, gemm (one cuBLAS call),
                               copy (CuPy's elementwise copy kernel), gather (take), scatter
    memset                     cudaMemsetAsync (zeros, fill(0) of a contiguous array)
    memcpy                     a device-to-device cudaMemcpyAsync (CuPy's same-layout assignment)
    graph                      one launch of a captured CUDA graph (its kernels were counted when captured)
    alloc                      one block from CuPy's memory pool
    sync                       the host waits for the device (item, float, int, bool, get, tolist, synchronize)
    h2d, d2h                   a copy between host and device memory

Each event carries the CuPy operation and its call site (the first frame outside `backend/`), so a count
can be traced to a line. `Tally` is a slice of the events with the sums tests and reports ask for.
"""

from __future__ import annotations

import os
import sys
from collections import Counter as _Multiset
from dataclasses import dataclass

KERNEL_KINDS = ("elementwise", "reduction", "gemm", "copy", "gather", "scatter")
OTHER_KINDS = ("memset", "memcpy", "graph", "alloc", "sync", "h2d", "d2h")

_BACKEND_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass(frozen=True)
class Event:
    """One thing CuPy would do: kind (see the module docstring), the operation, the call site."""

    kind: str
    name: str
    site: str


def call_site() -> str:
    """'path/to/file.py:123 function' of the first frame outside backend/ (the code that asked)."""
    frame = sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_BACKEND_DIR):
        frame = frame.f_back
    if frame is None:
        return "?"
    path = frame.f_code.co_filename
    try:
        path = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        pass
    return f"{path}:{frame.f_lineno} {frame.f_code.co_name}"


class Tally:
    """A run of events with the counts tests assert on: launches, syncs, allocations, ..."""

    def __init__(self, events):
        self.events = list(events)

    def _count(self, kinds) -> int:
        return sum(1 for event in self.events if event.kind in kinds)

    @property
    def launches(self) -> int:
        """Kernel launches of every kind (memsets, memcpys and transfers are not kernels)."""
        return self._count(KERNEL_KINDS)

    @property
    def syncs(self) -> int:
        return self._count(("sync",))

    @property
    def allocations(self) -> int:
        return self._count(("alloc",))

    @property
    def memsets(self) -> int:
        return self._count(("memset",))

    @property
    def memcpys(self) -> int:
        return self._count(("memcpy",))

    @property
    def graph_launches(self) -> int:
        return self._count(("graph",))

    @property
    def host_calls(self) -> int:
        """Calls the host makes into CUDA: kernel launches, memsets, memcpys, graph launches and transfers (a read
        back is one, its sync is part of it)."""
        return self._count(KERNEL_KINDS + ("memset", "memcpy", "graph", "h2d", "d2h"))

    @property
    def transfers(self) -> int:
        """Copies between host and device, either way."""
        return self._count(("h2d", "d2h"))

    def by_kind(self) -> dict:
        """{kind: count} over every event kind present, kernels first."""
        counts = _Multiset(event.kind for event in self.events)
        order = KERNEL_KINDS + OTHER_KINDS
        return {kind: counts[kind] for kind in order if counts[kind]}

    def by_site(self, kinds=KERNEL_KINDS) -> dict:
        """{call site: count} of the given kinds (kernel launches by default), most frequent first."""
        counts = _Multiset(event.site for event in self.events if event.kind in kinds)
        return dict(counts.most_common())

    def where(self, kind: str) -> list:
        """The events of one kind, e.g. where('sync') to see what waited for the device."""
        return [event for event in self.events if event.kind == kind]

    def __repr__(self):
        return f"Tally({self.launches} launches, {self.syncs} syncs, {self.allocations} allocations)"


class Counter:
    """The event log of one stand-in module; `mark()` and `since(mark)` cut it into steps."""

    def __init__(self):
        self.events: list[Event] = []

    def record(self, kind: str, name: str) -> None:
        self.events.append(Event(kind, name, call_site()))

    def mark(self) -> int:
        return len(self.events)

    def since(self, mark: int) -> Tally:
        return Tally(self.events[mark:])

    def reset(self) -> None:
        self.events.clear()
