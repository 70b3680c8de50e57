"""A NumPy stand-in that refuses every name CuPy lacks: checks CuPy portability without a GPU.

`import cupy` works on a machine with no GPU (only creating arrays fails), so the names CuPy offers
can be listed anywhere. `CupyApiStandIn` computes with NumPy but raises `MissingInCupyError` for
any `xp.<name>` (also in submodules such as `xp.lib.stride_tricks`) that CuPy does not have.

    standin = cupy_api_standin()           # None when cupy is not importable
    with forced_array_module(standin):
        model.forward(x)                   # every xp.* the layers touch is checked
    standin.names_used                     # which names were looked up
"""

from __future__ import annotations

import types

import numpy

from . import _import_cupy


class MissingInCupyError(AttributeError):
    """Code used an `xp.` name that CuPy does not provide."""


class CupyApiStandIn:
    """Wraps a NumPy (sub)module; lets through only names that exist in the matching CuPy module."""

    def __init__(self, numpy_module, cupy_module, path="xp", names_used=None):
        self._numpy_module = numpy_module
        self._cupy_module = cupy_module
        self._path = path
        self.names_used = names_used if names_used is not None else set()

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        full_name = f"{self._path}.{name}"
        if not hasattr(self._cupy_module, name):
            raise MissingInCupyError(f"{full_name} does not exist in CuPy; the layer would fail on the GPU.")
        value = getattr(self._numpy_module, name)
        self.names_used.add(full_name)
        if isinstance(value, types.ModuleType):
            return CupyApiStandIn(value, getattr(self._cupy_module, name), full_name, self.names_used)
        return value

    def __repr__(self):
        return f"<CupyApiStandIn {self._path}>"


def cupy_api_standin():
    """A stand-in for `xp` at the top level, or None when cupy cannot be imported."""
    cupy = _import_cupy()
    if cupy is None:
        return None
    return CupyApiStandIn(numpy, cupy)
