"""Parameter-free layers: ReLU and Flatten."""

from __future__ import annotations

from nets.nn.layers.base import Layer, module_of

__all__ = ["ReLU", "Flatten"]


class ReLU(Layer):
    """x: any shape -> max(x, 0), same shape and dtype. The gradient at x == 0 is 0, as in PyTorch.

    One launch forward (into `out` when given: the next Linear's input beside its column of ones), two
    backward (the mask y > 0 is taken then, so an evaluation forward costs only the one).
    """

    writes_into_next_input = True

    def __init__(self):
        super().__init__()
        self._y = None

    def forward(self, x, train=True, out=None):
        """x -> max(x, 0), into `out` when given; keeps the result when train."""
        xp = module_of(x)
        if out is None:
            out = self._buffer("y" if train else "y_eval", xp, x.shape, x.dtype)
        y = xp.maximum(x, 0, out=out)
        if train:
            self._y = y
        return y

    def backward(self, dy, need_input_grad=True):
        """dy -> dy where the forward's result is positive, else 0."""
        if self._y is None:
            raise RuntimeError("ReLU.backward needs a forward(x, train=True) first.")
        if not need_input_grad:
            return None
        xp = module_of(dy)
        positive = xp.greater(self._y, 0, out=self._buffer("positive", xp, dy.shape, xp.bool_))
        return xp.multiply(dy, positive, out=self._buffer("dx", xp, dy.shape, dy.dtype))


class Flatten(Layer):
    """x: (N, d1, d2, ...) -> (N, d1 * d2 * ...), in C (PyTorch NCHW) order, whatever x's memory layout.

    Given `out` (the next Linear's input beside its column of ones), forward copies x there, in that order;
    otherwise a C-contiguous x is reshaped for free and any other layout copied once.
    """

    writes_into_next_input = True

    def __init__(self):
        super().__init__()
        self._x_shape = None

    def forward(self, x, train=True, out=None):
        """x: (N, ...) -> (N, prod(...)); remembers the input shape when train."""
        if train:
            self._x_shape = x.shape
        n = x.shape[0]
        if out is not None:
            out.reshape(x.shape)[...] = x
            return out
        if x.flags.c_contiguous:
            return x.reshape(n, -1)
        xp = module_of(x)
        y = self._buffer("y" if train else "y_eval", xp, (n, x.size // n), x.dtype)
        y.reshape(x.shape)[...] = x  # the one reordering copy a channel-major input needs
        return y

    def backward(self, dy, need_input_grad=True):
        """dy: (N, prod(...)) -> dx: the input shape."""
        if self._x_shape is None:
            raise RuntimeError("Flatten.backward needs a forward(x, train=True) first.")
        if not need_input_grad:
            return None
        return dy.reshape(self._x_shape)
