"""Max pooling that keeps, for every window, which of its elements won (see MaxPool2d)."""

from __future__ import annotations

from backend import array_module

from nets.nn.reference.conv import col2im, im2col

__all__ = ["MaxPool2d"]


class MaxPool2d:
    """x: (N, C, H, W) -> y: (N, C, OH, OW), each output the maximum of a KH x KW window, windows every `stride`
    pixels, no padding (stride defaults to the kernel size, as in PyTorch).

    Forward keeps the argmax of each window: the FIRST maximum in row-major order, PyTorch's choice where values
    tie (and MNIST's black background ties everywhere). Backward sends each dy to that one pixel only, adding
    where overlapping windows (stride < kernel) picked the same pixel. The windows come from the convolution's
    im2col, and col2im, its adjoint, does that adding.
    """

    def __init__(self, kernel_size, stride=None):
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        self.kernel_size = (kh, kw)
        self.stride = kh if stride is None else stride
        self.params, self.grads = {}, {}
        self.x_shape = self.winner = None

    def forward(self, x, train=True):
        """x: (N, C, H, W) -> y: (N, C, OH, OW); keeps the winner of each window, an index in 0..KH*KW-1."""
        (kh, kw), (n, c) = self.kernel_size, x.shape[:2]
        col = im2col(x, kh, kw, self.stride)  # (N, C, KH, KW, OH, OW)
        windows = col.reshape(n, c, kh * kw, *col.shape[4:])  # each window's KH*KW elements down axis 2
        if train:
            self.x_shape, self.winner = x.shape, windows.argmax(axis=2)  # argmax: the first maximum
        return windows.max(axis=2)

    def backward(self, dy):
        """dy: (N, C, OH, OW) -> dx: (N, C, H, W), every dy added at the pixel that won its window."""
        xp = array_module(dy)
        (kh, kw), (n, c, out_h, out_w) = self.kernel_size, dy.shape
        offsets = xp.arange(kh * kw).reshape(1, 1, kh * kw, 1, 1)
        dwindows = (self.winner[:, :, None] == offsets) * dy[:, :, None]  # dy at each winner, zero elsewhere
        return col2im(dwindows.reshape(n, c, kh, kw, out_h, out_w), self.x_shape, self.stride)
