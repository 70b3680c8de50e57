"""2-D convolution as im2col and one matrix product; col2im, the adjoint of im2col, carries the gradient back.

    col = im2col(x, kh, kw, stride, padding)           (N, C, KH, KW, OH, OW): every window of x, copied out
    dx = col2im(dcol, x.shape, stride, padding)         (N, C, H, W): each entry added back where it came from
"""

from __future__ import annotations

import numpy

from backend import array_module

from nets.nn.reference.init import he_or_torch_init

__all__ = ["Conv2d", "col2im", "im2col", "output_size"]


def output_size(size, kernel, stride, padding):
    """How many windows fit along one axis: (size + 2 * padding - kernel) // stride + 1."""
    return (size + 2 * padding - kernel) // stride + 1


def im2col(x, kh, kw, stride=1, padding=0):
    """x: (N, C, H, W) -> col: (N, C, KH, KW, OH, OW), with
    col[n, c, i, j, oh, ow] = x_padded[n, c, stride*oh + i, stride*ow + j].

    A loop over the KH * KW kernel offsets, not over pixels: offset (i, j) of every window reads rows
    i, i + stride, ... and columns j, j + stride, ... of the padded image, one strided slice copied at once for
    all samples, channels and windows.
    """
    xp = array_module(x)
    n, c, h, w = x.shape
    out_h, out_w = output_size(h, kh, stride, padding), output_size(w, kw, stride, padding)
    x_padded = xp.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))  # zeros around each image
    col = xp.empty((n, c, kh, kw, out_h, out_w), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            col[:, :, i, j] = x_padded[:, :, i : i + stride * out_h : stride, j : j + stride * out_w : stride]
    return col


def col2im(col, x_shape, stride=1, padding=0):
    """col: (N, C, KH, KW, OH, OW) -> dx: x_shape = (N, C, H, W); the same loop as im2col, with += for =.

    The adjoint of im2col, not its inverse: a pixel that several windows copied receives the sum of their
    entries, so <im2col(x), col> == <x, col2im(col)> for every x and col. That sum is exactly the chain rule
    for a pixel used by several windows.
    """
    xp = array_module(col)
    n, c, kh, kw, out_h, out_w = col.shape
    h, w = x_shape[2], x_shape[3]
    dx_padded = xp.zeros((n, c, h + 2 * padding, w + 2 * padding), dtype=col.dtype)
    for i in range(kh):
        for j in range(kw):
            dx_padded[:, :, i : i + stride * out_h : stride, j : j + stride * out_w : stride] += col[:, :, i, j]
    return dx_padded[:, :, padding : padding + h, padding : padding + w]  # the padding's share is dropped


class Conv2d:
    """x: (N, C, H, W) -> y: (N, F, OH, OW), OH = (H + 2 * padding - KH) // stride + 1 (OW alike).

    params: weight (F, C, KH, KW), bias (F,), as torch.nn.Conv2d, drawn as the fast Conv2d draws them.
    Each output pixel is the dot product of a filter with the window under it, plus the filter's bias. With
    every window laid out as a row of a matrix (im2col), the whole layer is one matrix product:
        rows (N*OH*OW, C*KH*KW) @ weight.reshape(F, C*KH*KW).T  ->  (N*OH*OW, F)
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, *, rng, init="he",
                 dtype="float32", xp=numpy):
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        self.kernel_size, self.stride, self.padding = (kh, kw), stride, padding
        weight, bias = he_or_torch_init(rng, (out_channels, in_channels, kh, kw), in_channels * kh * kw, init, dtype)
        self.params = {"weight": xp.asarray(weight), "bias": xp.asarray(bias)}
        self.grads = {}
        self.x_shape = self.rows = None

    def forward(self, x, train=True):
        """x: (N, C, H, W) -> y: (N, F, OH, OW); keeps the window rows, which the weight gradient needs."""
        weight, bias = self.params["weight"], self.params["bias"]
        n, f = x.shape[0], weight.shape[0]
        col = im2col(x, *self.kernel_size, self.stride, self.padding)  # (N, C, KH, KW, OH, OW)
        out_h, out_w = col.shape[4:]
        rows = col.transpose(0, 4, 5, 1, 2, 3).reshape(n * out_h * out_w, -1)  # a window per row, (c, i, j) order
        y = rows @ weight.reshape(f, -1).T + bias  # (N*OH*OW, F)
        if train:
            self.x_shape, self.rows = x.shape, rows
        return y.reshape(n, out_h, out_w, f).transpose(0, 3, 1, 2)

    def backward(self, dy):
        """dy: (N, F, OH, OW) -> dx: (N, C, H, W); sets grads weight (F, C, KH, KW) and bias (F,).

        The matrix product's gradients, as in Linear (rows play x), then col2im takes each window row's
        gradient back to the pixels it was copied from.
        """
        weight = self.params["weight"]
        n, f, out_h, out_w = dy.shape
        dy_rows = dy.transpose(0, 2, 3, 1).reshape(-1, f)  # (N*OH*OW, F), y's rows
        self.grads = {"weight": (dy_rows.T @ self.rows).reshape(weight.shape), "bias": dy_rows.sum(axis=0)}
        drows = dy_rows @ weight.reshape(f, -1)  # (N*OH*OW, C*KH*KW)
        dcol = drows.reshape(n, out_h, out_w, *weight.shape[1:]).transpose(0, 3, 4, 5, 1, 2)
        return col2im(dcol, self.x_shape, self.stride, self.padding)
