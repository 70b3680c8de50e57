"""Parameter-free layers: ReLU and Flatten."""

from __future__ import annotations

from backend import array_module

from .base import Layer

__all__ = ["ReLU", "Flatten"]


class ReLU(Layer):
    """x: any shape -> max(x, 0), same shape and dtype. The gradient at x == 0 is 0, as in PyTorch."""

    def __init__(self):
        super().__init__()
        self._positive = None

    def forward(self, x, train=True):
        """x -> max(x, 0); caches the mask x > 0 when train."""
        xp = array_module(x)
        y = xp.maximum(x, 0)
        self._positive = (y > 0) if train else None
        return y

    def backward(self, dy, need_input_grad=True):
        """dy -> dy where x > 0, else 0."""
        if self._positive is None:
            raise RuntimeError("ReLU.backward needs a forward(x, train=True) first.")
        if not need_input_grad:
            return None
        xp = array_module(dy)
        return xp.multiply(dy, self._positive)


class Flatten(Layer):
    """x: (N, d1, d2, ...) -> (N, d1 * d2 * ...), in C (PyTorch NCHW) order."""

    def __init__(self):
        super().__init__()
        self._x_shape = None

    def forward(self, x, train=True):
        """x: (N, ...) -> (N, prod(...)); remembers the input shape when train."""
        self._x_shape = x.shape if train else None
        return x.reshape(x.shape[0], -1)

    def backward(self, dy, need_input_grad=True):
        """dy: (N, prod(...)) -> dx: the input shape."""
        if self._x_shape is None:
            raise RuntimeError("Flatten.backward needs a forward(x, train=True) first.")
        if not need_input_grad:
            return None
        return dy.reshape(self._x_shape)
