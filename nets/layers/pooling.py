"""Max pooling that remembers which pixel won each window (the first maximum, as PyTorch does)."""

from __future__ import annotations

from backend import array_module

from .base import Layer
from .conv import _offset_window, conv_output_size

__all__ = ["MaxPool2d"]


class MaxPool2d(Layer):
    """x: (N, C, H, W) -> y: (N, C, OH, OW), OH = (H - kernel) // stride + 1 (no padding).

    Any kernel and stride; stride defaults to the kernel size as in PyTorch.
    Forward keeps, per output pixel, the offset (row-major within the window) of the FIRST
    maximum: MNIST backgrounds are full of ties, and a plain `x == max` mask would send the
    gradient to every tied pixel. Backward sends each gradient to that pixel, adding where
    overlapping windows (stride < kernel) picked the same one. NaN inputs are not supported.
    """

    def __init__(self, kernel_size, stride=None):
        super().__init__()
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        self.kernel_size = (kh, kw)
        self.stride = int(stride) if stride is not None else kh
        if kh != kw and stride is None:
            raise ValueError("give MaxPool2d an explicit stride when the kernel is not square.")
        self._x_shape = None
        self._argmax = None

    def _offsets(self):
        kh, kw = self.kernel_size
        return [(ki, kj) for ki in range(kh) for kj in range(kw)]

    def forward(self, x, train=True):
        """x: (N, C, H, W) -> (N, C, OH, OW); caches the winning offset per output pixel when train."""
        xp = array_module(x)
        (kh, kw), stride = self.kernel_size, self.stride
        n, c, h, w = x.shape
        out_h, out_w = conv_output_size(h, kh, stride, 0), conv_output_size(w, kw, stride, 0)
        offsets = self._offsets()
        y = xp.empty((n, c, out_h, out_w), dtype=x.dtype)
        y[...] = _offset_window(x, *offsets[0], out_h, out_w, stride)
        argmax = xp.zeros((n, c, out_h, out_w), dtype=xp.uint8) if train else None
        for index, (ki, kj) in enumerate(offsets[1:], start=1):
            window = _offset_window(x, ki, kj, out_h, out_w, stride)
            if train:
                # strictly greater: an equal value later in the window does not replace the first max
                better = window > y
                xp.copyto(argmax, xp.uint8(index), where=better)
            xp.maximum(y, window, out=y)
        self._x_shape = x.shape if train else None
        self._argmax = argmax
        return y

    def backward(self, dy, need_input_grad=True):
        """dy: (N, C, OH, OW) -> dx: (N, C, H, W), each dy added at its window's first maximum."""
        if self._argmax is None:
            raise RuntimeError("MaxPool2d.backward needs a forward(x, train=True) first.")
        if not need_input_grad:
            return None
        xp = array_module(dy)
        n, c, out_h, out_w = dy.shape
        dx = xp.zeros(self._x_shape, dtype=dy.dtype)
        for index, (ki, kj) in enumerate(self._offsets()):
            _offset_window(dx, ki, kj, out_h, out_w, self.stride)[...] += xp.multiply(dy, self._argmax == index)
        return dx
