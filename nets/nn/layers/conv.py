"""2-D convolution by im2col + matrix products, and col2im, its adjoint.

Column layout (every product of a step is then one GEMM over all samples and pixels):
    col: (K + 1, N * OH * OW), K = C * KH * KW, rows ordered (c, ki, kj) then a row of ones, columns (n, oh, ow)
    col[(c, ki, kj), (n, oh, ow)] = x_padded[n, c, oh * stride + ki, ow * stride + kj]
and with the parameter block B = [W2.T; bias] (K + 1, F), W2 = weight.reshape(F, K):
    forward   y2 = B.T @ col            (F, N * OH * OW)   (the bias rides on the row of ones)
    backward  dB = col @ dy2.T          (K + 1, F): weight and bias gradients in one GEMM
              dx = col2im(B[:K] @ dy2)
where y2/dy2 are y/dy stored channel-major, (F, N, OH, OW): Conv2d returns y as a transposed view of y2
and takes dy2 as a free view when dy comes back in that layout (see layers/base.py).

Two twins fill col and run col2im, chosen by the Layer base (layers/base.py):
    forward_cpu / backward_cpu: one strided copy per kernel offset (KH * KW of them) and, for col2im, one
        strided add per offset: long SIMD loops; thin weight matrices run in column blocks (BLOCK_COLUMNS);
    forward_gpu / backward_gpu: one `take` with an index table for im2col, and col2im as a gather and a row sum
        over the inverse table (layers/gather.py): 2 launches each instead of 9 or 18.
Both give dx in x's layout, and are tested against each other, against the reference
(nets/nn/reference/conv.py) and against PyTorch.
"""

from __future__ import annotations

import numpy

from backend import array_module, gemm, is_device_array

from nets.nn.layers import gather
from nets.nn.layers.base import Layer, he_or_torch_init
from nets.validate import whole as check_whole

__all__ = ["Conv2d", "check_pair", "check_whole", "conv_output_size", "im2col", "col2im"]

# On the host, a product whose weight matrix has at most THIN_MATRIX_ENTRIES entries (conv1's 16 x 10) runs in
# blocks of BLOCK_COLUMNS columns, where OpenBLAS takes its small-matrix kernel; wider ones (conv2's 32 x 145)
# run as one call. docs/performance.md gives the timings behind the two numbers.
BLOCK_COLUMNS = 4096
THIN_MATRIX_ENTRIES = 1024


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
    """x: (N, C, H, W) -> col: (C * KH * KW, N * OH * OW) (layout in the module docstring), strided copies.

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
    """col: (C * KH * KW, N * OH * OW) -> dx: x_shape = (N, C, H, W), the adjoint of im2col, strided adds.

    Each column entry is added back to the pixel it was copied from, so pixels shared by
    overlapping windows receive the sum: <im2col(x), y> == <x, col2im(y)>.
    dx is returned channel-major (a view of (C, N, H, W) memory), the layout the adds run in;
    `out`, if given, is a (C, N, H, W) array to add into (used when padding is 0): a transposed view of
    (N, C, H, W) memory gives dx NCHW-contiguous.
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


def _zero_in_last_cell(array):
    array[-1] = 0


def _zeros(array):
    array.fill(0)


class Conv2d(Layer):
    """x: (N, C, H, W) -> y: (N, F, OH, OW), OH = (H + 2 * padding - KH) // stride + 1.

    params: weight (F, C, KH, KW), bias (F,), as in PyTorch's nn.Conv2d: views of the block (K + 1, F).
    Parameters start on the host (drawn from the numpy Generator `rng`); a model (or `layer.to(backend)`)
    moves them into its parameter buffer. y comes back channel-major (see the module docstring); x and dy
    may be NCHW-contiguous or channel-major (anything else is copied to NCHW first); dx comes back in x's layout.

    The maths is nets/nn/reference/conv.py's; read that first. Here:
        forward    im2col fills col (the cpu twin by strided copies, the gpu twin by a gather), then one product
                   y2 = B.T @ col
        backward   one product dB = col @ dy2.T, then col2im makes dx from B[:K] @ dy2 (strided adds on the cpu,
                   a gather and a sum on the gpu)
    The Layer base chooses the twin (layers/base.py); `layer.twin = "cpu"` or `"gpu"` forces one.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, *, rng, init="he", dtype="float32"):
        super().__init__()
        kh, kw = check_pair(kernel_size, "Conv2d kernel_size")
        self.in_channels = check_whole(in_channels, "Conv2d in_channels")
        self.out_channels = check_whole(out_channels, "Conv2d out_channels")
        self.kernel_size = (kh, kw)
        self.stride = check_whole(stride, "Conv2d stride")
        self.padding = check_whole(padding, "Conv2d padding", least=0)
        self.columns = self.in_channels * kh * kw  # K: rows of col, without the row of ones
        self.block_shape = (self.columns + 1, self.out_channels)
        weight, bias = he_or_torch_init(rng, (self.out_channels, self.in_channels, kh, kw), self.columns, init, dtype)
        self.params = {"weight": weight, "bias": bias}
        self.grads = {"weight": weight * 0, "bias": bias * 0}
        self._cache = None  # (x shape, x's layout, col) of the last training forward
        self._tables = {}
        self._start_on_the_host()

    def block_views(self, block) -> dict:
        kh, kw = self.kernel_size
        return {"weight": block[:-1].T.reshape(self.out_channels, self.in_channels, kh, kw), "bias": block[-1]}

    def check_input(self, x) -> None:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"Conv2d({self.in_channels}, {self.out_channels}, ...) takes (N, {self.in_channels}, H, W) "
                f"inputs, got shape {tuple(x.shape)}."
            )

    def _columns(self, x, train):
        """The column matrix home for x, (K + 1, N * OH * OW), its last row ones (the bias rides on it)."""
        (kh, kw), stride, padding = self.kernel_size, self.stride, self.padding
        n, _, h, w = x.shape
        columns = n * conv_output_size(h, kh, stride, padding) * conv_output_size(w, kw, stride, padding)
        xp = array_module(x, self._block)
        return self._buffer("col" if train else "col_eval", xp, (self.columns + 1, columns), x.dtype,
                            fill=_ones_in_last_row)

    def _product(self, x, layout, col, train):
        """y2 = B.T @ col, returned as the (N, F, OH, OW) view of its channel-major memory; caches col when train."""
        xp = array_module(x, self._block)
        f, columns = self.out_channels, col.shape[1]
        y2 = self._buffer("y" if train else "y_eval", xp, (f, columns), x.dtype)
        _matmul(self._block.T, col, y2)
        if train:
            self._cache = (x.shape, layout, col)
        (kh, kw), stride, padding = self.kernel_size, self.stride, self.padding
        n, _, h, w = x.shape
        out_h, out_w = conv_output_size(h, kh, stride, padding), conv_output_size(w, kw, stride, padding)
        return y2.reshape(f, n, out_h, out_w).transpose(1, 0, 2, 3)

    def _weight_gradient(self, dy):
        """dB = col @ dy2.T into the gradient block -> dy2, dy as (F, N * OH * OW) (free when dy is channel-major)."""
        n, f, out_h, out_w = dy.shape
        dy2 = dy.transpose(1, 0, 2, 3).reshape(f, n * out_h * out_w)
        _gram(self._cache[2], dy2, self._grad_block)
        return dy2

    # ------------------------------------------------------------------ cpu: strided copies and adds, long SIMD loops
    def forward_cpu(self, x, train=True, out=None):
        """x: (N, C, H, W) -> (N, F, OH, OW) channel-major: col by one strided copy per kernel offset (the reference's
        loop), then one product; caches col when train."""
        col = self._columns(x, train)
        im2col(x, *self.kernel_size, self.stride, self.padding, out=col[:-1])
        return self._product(x, gather.layout_of(x) or "nchw", col, train)

    def backward_cpu(self, dy, need_input_grad=True):
        """dy: (N, F, OH, OW) -> dx: (N, C, H, W) in x's layout: dB in one product, then dx = col2im(B[:K] @ dy2), one
        product and one strided add per kernel offset. need_input_grad=False skips dx (returns None)."""
        dy2 = self._weight_gradient(dy)
        if not need_input_grad:
            return None
        x_shape, layout, _ = self._cache
        xp = array_module(dy, self._block)
        k, columns = self.columns, dy2.shape[1]
        dcol = _matmul(self._block[:-1], dy2, self._buffer("dcol", xp, (k, columns), dy2.dtype))
        (kh, kw), (n, c, h, w) = self.kernel_size, x_shape
        memory = self._buffer("dx", xp, (c, n, h, w) if layout == "cnhw" else (n, c, h, w), dy2.dtype)
        by_channel = memory if layout == "cnhw" else memory.transpose(1, 0, 2, 3)  # (C, N, H, W) view, x's layout
        if self.padding:  # the adds run in a zero-bordered array of col2im's own, then the inside is copied over
            by_channel[...] = col2im(dcol, x_shape, kh, kw, self.stride, self.padding).transpose(1, 0, 2, 3)
        else:
            col2im(dcol, x_shape, kh, kw, self.stride, self.padding, out=by_channel)
        return gather.from_flat(memory.reshape(-1), x_shape, layout)

    # ------------------------------------------------------------------ gpu: gathers, few launches
    def forward_gpu(self, x, train=True, out=None):
        """x: (N, C, H, W) -> (N, F, OH, OW) channel-major: col in one gather through an index table (plus one copy into
        a zero-bordered buffer when padded), then one product; x is copied to NCHW first when its memory is in
        neither layout."""
        xp = array_module(x, self._block)
        layout = gather.layout_of(x)
        if layout is None:  # the tables address NCHW or channel-major memory
            x, layout = xp.ascontiguousarray(x), "nchw"
        col = self._columns(x, train)
        table = self._table(x.shape, layout, xp, "im2col")
        source, source_layout = x, layout
        if self.padding:
            p = self.padding
            n, c, h, w = x.shape
            source = self._buffer("padded", xp, (n, c, h + 2 * p, w + 2 * p), x.dtype, fill=_zeros)
            source[:, :, p:p + h, p:p + w] = x  # the border stays zero from the allocation
            source_layout = "nchw"
        xp.take(gather.flat_memory(source, source_layout), table, out=col[:-1])
        return self._product(x, layout, col, train)

    def backward_gpu(self, dy, need_input_grad=True):
        """dy: (N, F, OH, OW) -> dx: (N, C, H, W) in x's layout: dB in one product, then dx = col2im(B[:K] @ dy2): one
        product into a vector ending in a zero, then a gather of every pixel's copies through the inverse table and
        their sum (layers/gather.py): no scattered adds. need_input_grad=False skips dx (returns None)."""
        dy2 = self._weight_gradient(dy)
        if not need_input_grad:
            return None
        x_shape, layout, _ = self._cache
        xp = array_module(dy, self._block)
        k, columns = self.columns, dy2.shape[1]
        dcol_ext = self._buffer("dcol", xp, (k * columns + 1,), dy2.dtype, fill=_zero_in_last_cell)
        gemm(self._block[:-1], dy2, dcol_ext[:-1].reshape(k, columns))
        inverse = self._table(x_shape, layout, xp, "col2im")
        parts = xp.take(dcol_ext, inverse, out=self._buffer("dx_parts", xp, inverse.shape, dy2.dtype))
        if inverse.shape[0] == 1:
            flat = parts.reshape(-1)
        else:
            flat = parts.sum(axis=0, out=self._buffer("dx", xp, (inverse.shape[1],), dy2.dtype))
        return gather.from_flat(flat, x_shape, layout)

    def _table(self, x_shape, layout, xp, which):
        """A device index table of the gpu twin for this input shape and layout, built on first use:
        "im2col" (K, N*OH*OW) for the forward, "col2im" (its inverse) for the input gradient."""
        key = (x_shape, layout, id(xp), which)
        table = self._tables.get(key)
        if table is None:
            k, p = self.kernel_size, self.padding
            as_columns = (1, 2, 3, 0, 4, 5)  # (C, KH, KW, N, OH, OW): rows of col, then its columns
            if which == "im2col" and p:  # the forward gathers from a zero-bordered copy of x
                n, c, h, w = x_shape
                offsets = gather.window_offsets((n, c, h + 2 * p, w + 2 * p), "nchw", k, self.stride, 0)[0]
                table = offsets.transpose(as_columns).reshape(self.columns, -1)
            else:
                offsets, valid = gather.window_offsets(x_shape, layout, k, self.stride, p)
                table = offsets.transpose(as_columns).reshape(self.columns, -1)
                if which == "col2im":  # (copies, pixels): the row sum runs down the leading axis (see pooling)
                    valid = valid.transpose(as_columns).reshape(table.shape)
                    positions = numpy.arange(table.size).reshape(table.shape)
                    table = gather.inverse_table(table, valid, int(numpy.prod(x_shape)), positions, table.size).T
                    table = numpy.ascontiguousarray(table)
            table = self._tables[key] = gather.device_table(table, xp)
        return table


def _thin(matrix):
    """Small enough to run in column blocks: on the host only (OpenBLAS's small-matrix kernel); on the GPU
    each block would be one more kernel launch."""
    return matrix.shape[0] * matrix.shape[1] <= THIN_MATRIX_ENTRIES and not is_device_array(matrix)


def _matmul(a, b, out):
    """out[...] = a @ b (a: (P, Q), b: (Q, M)), in column blocks when a is thin (see BLOCK_COLUMNS)."""
    if not _thin(a):
        return gemm(a, b, out)
    xp = array_module(a, b)
    for start in range(0, b.shape[1], BLOCK_COLUMNS):
        xp.matmul(a, b[:, start : start + BLOCK_COLUMNS], out=out[:, start : start + BLOCK_COLUMNS])
    return out


def _gram(a, b, out):
    """out[...] = a @ b.T (a: (K, M), b: (F, M), out: (K, F)), summed over column blocks when out is thin."""
    if not _thin(out):
        return gemm(a, b.T, out)
    xp = array_module(a, b)
    xp.matmul(a[:, :BLOCK_COLUMNS], b[:, :BLOCK_COLUMNS].T, out=out)
    for start in range(BLOCK_COLUMNS, a.shape[1], BLOCK_COLUMNS):
        out += xp.matmul(a[:, start : start + BLOCK_COLUMNS], b[:, start : start + BLOCK_COLUMNS].T)
    return out
