"""2-D convolution by im2col + one matrix product, and col2im, its adjoint.

Column layout (chosen because it makes every product of a step one large GEMM):
    col: (C * KH * KW, N * OH * OW), rows ordered (c, ki, kj), columns ordered (n, oh, ow).
    col[(c, ki, kj), (n, oh, ow)] = x_padded[n, c, oh * stride + ki, ow * stride + kj]
so that with W2 = weight.reshape(F, C * KH * KW):
    forward   y2 = W2 @ col          (F, N * OH * OW)
    backward  dW = dy2 @ col.T,  dcol = W2.T @ dy2,  dx = col2im(dcol)
where y2/dy2 are y/dy with the batch and channel axes swapped.
"""

from __future__ import annotations

from backend import array_module

from .base import Layer, he_or_torch_init

__all__ = ["Conv2d", "conv_output_size", "im2col", "col2im"]


def conv_output_size(size, kernel, stride, padding):
    """Output length along one axis: floor((size + 2 * padding - kernel) / stride) + 1."""
    out = (size + 2 * padding - kernel) // stride + 1
    if out < 1:
        raise ValueError(
            f"input size {size} with padding {padding} is smaller than the kernel {kernel}; "
            "use a larger input or a smaller kernel."
        )
    return out


def _offset_window(array, ki, kj, out_h, out_w, stride):
    """The strided view array[..., ki + stride * oh, kj + stride * ow] over all (oh, ow)."""
    return array[..., ki : ki + stride * (out_h - 1) + 1 : stride, kj : kj + stride * (out_w - 1) + 1 : stride]


def _pad(x, padding):
    if padding == 0:
        return x
    xp = array_module(x)
    return xp.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))


def im2col(x, kh, kw, stride=1, padding=0, out=None):
    """x: (N, C, H, W) -> col: (C * KH * KW, N * OH * OW) (layout in the module docstring).

    One strided copy per kernel offset (KH * KW of them), each over all samples, channels and
    output pixels. `out`, if given, is a (C * KH * KW, N * OH * OW) array of x's dtype to fill.
    """
    xp = array_module(x)
    n, c, h, w = x.shape
    out_h = conv_output_size(h, kh, stride, padding)
    out_w = conv_output_size(w, kw, stride, padding)
    if out is None:
        out = xp.empty((c * kh * kw, n * out_h * out_w), dtype=x.dtype)
    col = out.reshape(c, kh, kw, n, out_h, out_w)
    x_padded = _pad(x, padding)
    for ki in range(kh):
        for kj in range(kw):
            # (N, C, OH, OW) window -> (C, N, OH, OW) slot of the column matrix
            col[:, ki, kj] = _offset_window(x_padded, ki, kj, out_h, out_w, stride).transpose(1, 0, 2, 3)
    return out


def col2im(col, x_shape, kh, kw, stride=1, padding=0):
    """col: (C * KH * KW, N * OH * OW) -> dx: x_shape = (N, C, H, W), the adjoint of im2col.

    Each column entry is added back to the pixel it was copied from, so pixels shared by
    overlapping windows receive the sum: <im2col(x), y> == <x, col2im(y)>.
    """
    xp = array_module(col)
    n, c, h, w = x_shape
    out_h = conv_output_size(h, kh, stride, padding)
    out_w = conv_output_size(w, kw, stride, padding)
    col6 = col.reshape(c, kh, kw, n, out_h, out_w)
    dx_padded = xp.zeros((n, c, h + 2 * padding, w + 2 * padding), dtype=col.dtype)
    for ki in range(kh):
        for kj in range(kw):
            _offset_window(dx_padded, ki, kj, out_h, out_w, stride)[...] += col6[:, ki, kj].transpose(1, 0, 2, 3)
    if padding == 0:
        return dx_padded
    return xp.ascontiguousarray(dx_padded[:, :, padding : padding + h, padding : padding + w])


class Conv2d(Layer):
    """x: (N, C, H, W) -> y: (N, F, OH, OW), OH = (H + 2 * padding - KH) // stride + 1.

    params: weight (F, C, KH, KW), bias (F,), as in PyTorch's nn.Conv2d.
    Parameters start on the host (drawn from the numpy Generator `rng`); `layer.to(backend)` moves them.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, *, rng, init="he", dtype="float32"):
        super().__init__()
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size, self.stride, self.padding = (kh, kw), int(stride), int(padding)
        fan_in = self.in_channels * kh * kw
        weight, bias = he_or_torch_init(rng, (self.out_channels, self.in_channels, kh, kw), fan_in, init, dtype)
        self.params = {"weight": weight, "bias": bias}
        self.grads = {"weight": weight * 0, "bias": bias * 0}
        self._x_shape = None

    def forward(self, x, train=True):
        """x: (N, C, H, W) -> (N, F, OH, OW); caches the column matrix when train."""
        weight, bias = self.params["weight"], self.params["bias"]
        xp = array_module(x, weight)
        (kh, kw), stride, padding = self.kernel_size, self.stride, self.padding
        n, c, h, w = x.shape
        out_h, out_w = conv_output_size(h, kh, stride, padding), conv_output_size(w, kw, stride, padding)
        f = self.out_channels
        col_shape = (c * kh * kw, n * out_h * out_w)
        col = im2col(x, kh, kw, stride, padding, out=self._buffer("col" if train else "col_eval", xp, col_shape, x.dtype))
        y2 = xp.matmul(weight.reshape(f, -1), col, out=self._buffer("y2", xp, (f, n * out_h * out_w), x.dtype))
        y = xp.empty((n, f, out_h, out_w), dtype=x.dtype)
        y[...] = y2.reshape(f, n, out_h, out_w).transpose(1, 0, 2, 3)
        y += bias.reshape(1, f, 1, 1)
        self._x_shape = x.shape if train else None
        return y

    def backward(self, dy, need_input_grad=True):
        """dy: (N, F, OH, OW) -> dx: (N, C, H, W); fills grads["weight"], grads["bias"].

        need_input_grad=False skips dx (returns None): the first layer of a net never needs it.
        """
        if self._x_shape is None:
            raise RuntimeError("Conv2d.backward needs a forward(x, train=True) first.")
        weight = self.params["weight"]
        xp = array_module(dy, weight)
        n, f, out_h, out_w = dy.shape
        col = self._buffers["col"][1]
        dy2 = self._buffer("dy2", xp, (f, n, out_h, out_w), dy.dtype)
        dy2[...] = dy.transpose(1, 0, 2, 3)
        dy2 = dy2.reshape(f, n * out_h * out_w)
        xp.matmul(dy2, col.T, out=self.grads["weight"].reshape(f, -1))
        xp.sum(dy2, axis=1, out=self.grads["bias"])
        if not need_input_grad:
            return None
        dcol = xp.matmul(weight.reshape(f, -1).T, dy2, out=self._buffer("dcol", xp, col.shape, dy.dtype))
        (kh, kw) = self.kernel_size
        return col2im(dcol, self._x_shape, kh, kw, self.stride, self.padding)
