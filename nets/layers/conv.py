"""2-D convolution by im2col + matrix products, and col2im, its adjoint.

Column layout (chosen because every product of a step is then one GEMM over all samples and
pixels, or a few column blocks of it for thin weights, see BLOCK_COLUMNS):
    col: (C * KH * KW, N * OH * OW), rows ordered (c, ki, kj), columns ordered (n, oh, ow).
    col[(c, ki, kj), (n, oh, ow)] = x_padded[n, c, oh * stride + ki, ow * stride + kj]
so that with W2 = weight.reshape(F, C * KH * KW):
    forward   y2 = W2 @ col          (F, N * OH * OW)
    backward  dW = dy2 @ col.T,  dx = col2im(W2.T @ dy2)
where y2/dy2 are y/dy stored channel-major, (F, N, OH, OW): Conv2d returns y as a transposed
view of y2 and takes dy2 as a free view when dy comes back in that layout (see layers/base.py).
"""

from __future__ import annotations

import numpy

from backend import array_module, is_device_array

from .base import Layer, he_or_torch_init

__all__ = ["Conv2d", "check_pair", "check_whole", "conv_output_size", "im2col", "col2im"]

# Products with a thin weight matrix (conv1: 16 x 10) over N * OH * OW = 86528 columns ran 1.5-2.5x
# faster, single-threaded, in blocks of 4096 columns: OpenBLAS then takes its small-matrix kernel.
# Wider layers (conv2: 32 x 145) ran 3-14% slower blocked, so they get one call.
BLOCK_COLUMNS = 4096
THIN_MATRIX_ENTRIES = 1024


def check_whole(value, what: str, least: int = 1) -> int:
    """`value` as an int when it is a whole number >= least; ValueError saying what `what` must be otherwise."""
    if isinstance(value, (bool, numpy.bool_)) or not isinstance(value, (int, numpy.integer)) or value < least:
        raise ValueError(f"{what} must be a whole number >= {least}, got {value!r}.")
    return int(value)


def conv_output_size(size, kernel, stride, padding):
    """Output length along one axis: floor((size + 2 * padding - kernel) / stride) + 1."""
    check_whole(kernel, "the kernel size")
    check_whole(stride, "the stride")
    check_whole(padding, "the padding", least=0)
    out = (size + 2 * padding - kernel) // stride + 1
    if out < 1:
        raise ValueError(
            f"input size {size} with padding {padding} is smaller than the kernel {kernel}; "
            "use a larger input or a smaller kernel."
        )
    return out


def offset_window(array, ki, kj, out_h, out_w, stride):
    """The strided view array[..., ki + stride * oh, kj + stride * ow] over all (oh, ow)."""
    return array[..., ki : ki + stride * (out_h - 1) + 1 : stride, kj : kj + stride * (out_w - 1) + 1 : stride]


def im2col(x, kh, kw, stride=1, padding=0, out=None):
    """x: (N, C, H, W) -> col: (C * KH * KW, N * OH * OW) (layout in the module docstring).

    One strided copy per kernel offset (KH * KW of them), each over all samples, channels and
    output pixels. `out`, if given, is a C-contiguous (C * KH * KW, N * OH * OW) array of x's dtype.
    """
    xp = array_module(x)
    n, c, h, w = x.shape
    out_h = conv_output_size(h, kh, stride, padding)
    out_w = conv_output_size(w, kw, stride, padding)
    if out is None:
        out = xp.empty((c * kh * kw, n * out_h * out_w), dtype=x.dtype)
    col = out.reshape(c, kh, kw, n, out_h, out_w)
    if padding:
        x = xp.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    x_by_channel = x.transpose(1, 0, 2, 3)  # (C, N, H, W): the order of a column block
    for ki in range(kh):
        for kj in range(kw):
            col[:, ki, kj] = offset_window(x_by_channel, ki, kj, out_h, out_w, stride)
    return out


def col2im(col, x_shape, kh, kw, stride=1, padding=0, out=None):
    """col: (C * KH * KW, N * OH * OW) -> dx: x_shape = (N, C, H, W), the adjoint of im2col.

    Each column entry is added back to the pixel it was copied from, so pixels shared by
    overlapping windows receive the sum: <im2col(x), y> == <x, col2im(y)>.
    dx is returned channel-major (a view of (C, N, H, W) memory), the layout the adds run in;
    `out`, if given, is that (C, N, H, W) memory (used when padding is 0).
    """
    xp = array_module(col)
    n, c, h, w = x_shape
    out_h = conv_output_size(h, kh, stride, padding)
    out_w = conv_output_size(w, kw, stride, padding)
    col6 = col.reshape(c, kh, kw, n, out_h, out_w)
    if out is None or padding:
        out = xp.empty((c, n, h + 2 * padding, w + 2 * padding), dtype=col.dtype)
    out.fill(0)
    for ki in range(kh):
        for kj in range(kw):
            offset_window(out, ki, kj, out_h, out_w, stride)[...] += col6[:, ki, kj]
    if padding:
        out = out[:, :, padding : padding + h, padding : padding + w]
    return out.transpose(1, 0, 2, 3)


def check_pair(size, what: str) -> tuple[int, int]:
    """An int or a pair of ints -> (height, width), each a whole number >= 1."""
    pair = (size, size) if not isinstance(size, (tuple, list)) else tuple(size)
    if len(pair) != 2:
        raise ValueError(f"{what} must be one number or two (height, width), got {size!r}.")
    return check_whole(pair[0], what), check_whole(pair[1], what)


def _ones_in_last_row(col):
    col[-1] = 1


class Conv2d(Layer):
    """x: (N, C, H, W) -> y: (N, F, OH, OW), OH = (H + 2 * padding - KH) // stride + 1.

    params: weight (F, C, KH, KW), bias (F,), as in PyTorch's nn.Conv2d.
    Parameters start on the host (drawn from the numpy Generator `rng`); `layer.to(backend)` moves them.
    y comes back channel-major (see the module docstring); x and dy may be in either layout.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, *, rng, init="he", dtype="float32"):
        super().__init__()
        kh, kw = check_pair(kernel_size, "Conv2d kernel_size")
        self.in_channels = check_whole(in_channels, "Conv2d in_channels")
        self.out_channels = check_whole(out_channels, "Conv2d out_channels")
        self.kernel_size = (kh, kw)
        self.stride = check_whole(stride, "Conv2d stride")
        self.padding = check_whole(padding, "Conv2d padding", least=0)
        fan_in = self.in_channels * kh * kw
        weight, bias = he_or_torch_init(rng, (self.out_channels, self.in_channels, kh, kw), fan_in, init, dtype)
        self.params = {"weight": weight, "bias": bias}
        self.grads = {"weight": weight * 0, "bias": bias * 0}
        self._x_shape = None

    def forward(self, x, train=True):
        """x: (N, C, H, W) -> (N, F, OH, OW); caches the column matrix when train.

        The bias rides in the product: col gets a last row of ones and the weight matrix a last
        column holding the bias, which saves a pass over y here and one over dy in backward.
        """
        weight, bias = self.params["weight"], self.params["bias"]
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"Conv2d({self.in_channels}, {self.out_channels}, ...) takes (N, {self.in_channels}, H, W) "
                f"inputs, got shape {tuple(x.shape)}."
            )
        xp = array_module(x, weight)
        (kh, kw), stride, padding = self.kernel_size, self.stride, self.padding
        n, c, h, w = x.shape
        out_h, out_w = conv_output_size(h, kh, stride, padding), conv_output_size(w, kw, stride, padding)
        f, k, columns = self.out_channels, c * kh * kw, n * out_h * out_w
        col = self._buffer("col" if train else "col_eval", xp, (k + 1, columns), x.dtype, fill=_ones_in_last_row)
        im2col(x, kh, kw, stride, padding, out=col[:k])
        weight_and_bias = self._buffer("weight_and_bias", xp, (f, k + 1), x.dtype)
        weight_and_bias[:, :k] = weight.reshape(f, k)
        weight_and_bias[:, k] = bias
        y2 = self._result("y", xp, (f, columns), x.dtype, reuse=train)
        _matmul(weight_and_bias, col, y2)
        if train:
            self._x_shape = x.shape
        return y2.reshape(f, n, out_h, out_w).transpose(1, 0, 2, 3)

    def backward(self, dy, need_input_grad=True):
        """dy: (N, F, OH, OW) -> dx: (N, C, H, W) channel-major; fills grads["weight"], grads["bias"].

        need_input_grad=False skips dx (returns None): the first layer of a net never needs it.
        """
        if self._x_shape is None:
            raise RuntimeError("Conv2d.backward needs a forward(x, train=True) first.")
        weight = self.params["weight"]
        xp = array_module(dy, weight)
        n, f, out_h, out_w = dy.shape
        col = self._buffers["col"][2]
        k = col.shape[0] - 1
        dy2 = dy.transpose(1, 0, 2, 3).reshape(f, n * out_h * out_w)  # free when dy is channel-major
        grad_and_bias = self._buffer("grad_and_bias", xp, (f, k + 1), dy.dtype)
        _gram(dy2, col, grad_and_bias)
        self.grads["weight"][...] = grad_and_bias[:, :k].reshape(weight.shape)
        self.grads["bias"][...] = grad_and_bias[:, k]
        if not need_input_grad:
            return None
        dcol = _matmul(weight.reshape(f, k).T, dy2, self._buffer("dcol", xp, (k, dy2.shape[1]), dy.dtype))
        (kh, kw), (n, c, h, w) = self.kernel_size, self._x_shape
        dx_by_channel = None if self.padding else self._result("dx", xp, (c, n, h, w), dy.dtype, reuse=True)
        return col2im(dcol, self._x_shape, kh, kw, self.stride, self.padding, out=dx_by_channel)


def _thin(matrix):
    """Small enough to run in column blocks: on the host only (OpenBLAS's small-matrix kernel); on the GPU
    each block would be one more kernel launch."""
    return matrix.shape[0] * matrix.shape[1] <= THIN_MATRIX_ENTRIES and not is_device_array(matrix)


def _matmul(a, b, out):
    """out[...] = a @ b (a: (P, Q), b: (Q, M)), in column blocks when a is thin (see BLOCK_COLUMNS)."""
    xp = array_module(a, b)
    if not _thin(a):
        return xp.matmul(a, b, out=out)
    for start in range(0, b.shape[1], BLOCK_COLUMNS):
        xp.matmul(a, b[:, start : start + BLOCK_COLUMNS], out=out[:, start : start + BLOCK_COLUMNS])
    return out


def _gram(a, b, out):
    """out[...] = a @ b.T (a: (F, M), b: (K, M), out: (F, K)), summed over column blocks when out is thin."""
    xp = array_module(a, b)
    if not _thin(out):
        return xp.matmul(a, b.T, out=out)
    xp.matmul(a[:, :BLOCK_COLUMNS], b[:, :BLOCK_COLUMNS].T, out=out)
    for start in range(BLOCK_COLUMNS, a.shape[1], BLOCK_COLUMNS):
        out += xp.matmul(a[:, start : start + BLOCK_COLUMNS], b[:, start : start + BLOCK_COLUMNS].T)
    return out
