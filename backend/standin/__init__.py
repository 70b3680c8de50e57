"""The strict CuPy stand-in: every GPU code path runs on the CPU, refused where CuPy would refuse, counted.

    xp = strict_cupy()                  # None when cupy cannot be imported (it is the reference for names)
    gpu = standin_backend()             # Backend("gpu", xp): the code takes every GPU branch
    model = build_model("cnn", backend=gpu)
    mark = xp.counter.mark()
    ... one training step ...
    tally = xp.counter.since(mark)      # tally.launches, .syncs, .allocations, .by_kind(), .by_site()

What it refuses, as CuPy does: names and keyword arguments the installed cupy lacks (module functions,
ndarray methods, ufunc keywords), NumPy arrays mixed into device operations, `numpy.asarray(device_array)`
and host arrays assigned into device arrays. What it counts: see counter.py; how each operation is
costed, from CuPy's source: see module.py. `import cupy` works without a GPU (only device work fails),
so this runs in CI through the gpu extra.
"""

from __future__ import annotations

from ..core import Backend, import_cupy
from .array import DeviceArray
from .counter import KERNEL_KINDS, Counter, Event, Tally
from .module import StrictCupy
from .signatures import MissingInCupyError, NotModelledError

__all__ = [
    "DeviceArray",
    "Event",
    "Counter",
    "KERNEL_KINDS",
    "MissingInCupyError",
    "NotModelledError",
    "StrictCupy",
    "Tally",
    "standin_backend",
    "strict_cupy",
]


def strict_cupy() -> StrictCupy | None:
    """A fresh stand-in module (its own counter), or None when cupy cannot be imported here."""
    cupy = import_cupy()
    return None if cupy is None else StrictCupy(cupy)


def standin_backend(seed: int = 0):
    """A gpu Backend whose xp is a fresh stand-in, or None when cupy cannot be imported here."""
    xp = strict_cupy()
    return None if xp is None else Backend("gpu", xp, seed)
