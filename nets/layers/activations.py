"""Parameter-free layers: ReLU and Flatten."""

from __future__ import annotations

from backend import array_module

from .base import Layer, is_channel_major

__all__ = ["ReLU", "Flatten"]


class ReLU(Layer):
    """x: any shape -> max(x, 0), same shape, dtype and layout. The gradient at x == 0 is 0, as in PyTorch."""

    def __init__(self):
        super().__init__()
        self._positive = None

    def forward(self, x, train=True):
        """x -> max(x, 0); keeps the mask x > 0 when train."""
        xp = array_module(x)
        channel_major = is_channel_major(x)
        y = self._result("y", xp, x.shape, x.dtype, reuse=train, channel_major=channel_major)
        xp.maximum(x, 0, out=y)
        if train:
            self._positive = xp.greater(y, 0, out=self._buffer("positive", xp, x.shape, xp.bool_, channel_major))
        return y

    def backward(self, dy, need_input_grad=True):
        """dy -> dy where x > 0, else 0."""
        if self._positive is None:
            raise RuntimeError("ReLU.backward needs a forward(x, train=True) first.")
        if not need_input_grad:
            return None
        xp = array_module(dy)
        dx = self._result("dx", xp, dy.shape, dy.dtype, reuse=True, channel_major=is_channel_major(dy))
        return xp.multiply(dy, self._positive, out=dx)


class Flatten(Layer):
    """x: (N, d1, d2, ...) -> (N, d1 * d2 * ...), in C (PyTorch NCHW) order, whatever x's memory layout."""

    def __init__(self):
        super().__init__()
        self._x_shape = None

    def forward(self, x, train=True):
        """x: (N, ...) -> (N, prod(...)); remembers the input shape when train."""
        if train:
            self._x_shape = x.shape
        n = x.shape[0]
        if x.flags.c_contiguous:
            return x.reshape(n, -1)
        xp = array_module(x)
        y = self._result("y", xp, (n, x.size // n), x.dtype, reuse=train)
        y.reshape(x.shape)[...] = x  # the one reordering copy a channel-major input needs
        return y

    def backward(self, dy, need_input_grad=True):
        """dy: (N, prod(...)) -> dx: the input shape."""
        if self._x_shape is None:
            raise RuntimeError("Flatten.backward needs a forward(x, train=True) first.")
        if not need_input_grad:
            return None
        return dy.reshape(self._x_shape)
