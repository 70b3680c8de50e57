"""2-D convolution by im2col + matrix products, and col2im, its adjoint (both in layers/patches.py).

Column layout (every product of a step is then one GEMM over all samples and pixels):
    col: (K + 1, N * OH * OW), K = C * KH * KW, rows ordered (c, ki, kj) then a row of ones, columns (n, oh, ow)
    col[(c, ki, kj), (n, oh, ow)] = x_padded[n, c, oh * stride + ki, ow * stride + kj]
and with the parameter block B = [W2.T; bias] (K + 1, F), W2 = weight.reshape(F, K):
    forward   y2 = B.T @ col            (F, N * OH * OW)   (the bias rides on the row of ones)
    backward  dB = col @ dy2.T          (K + 1, F): weight and bias gradients in one GEMM
              dx = col2im(B[:K] @ dy2)
where y2/dy2 are y/dy stored channel-major, (F, N, OH, OW): Conv2d returns y as a transposed view of y2
and takes dy2 as a free view when dy comes back in that layout (see layers/base.py).

The twins, chosen by the Layer base (layers/base.py):
    forward_gpu / backward_gpu: as above, y channel-major; im2col is one `take` with an index table, and col2im a
        gather and a row sum over the inverse table (layers/gather.py): 2 launches each instead of 9 or 18.
    forward_cpu / backward_cpu: y channel-last, (N, OH, OW, F) memory, which the pooling after it reads as whole
        C-vectors. The product's rows are output pixels: y_rows = col.T @ B for an NCHW or channel-major x (col
        filled as above, one strided copy per kernel offset), or y_rows = P @ B' for a channel-last x, P its patch
        matrix (N * OH * OW, K + 1) with columns (ki, kj, c) and B' the block's rows in that order. Backward puts
        dcol or dP into the memory of col or P, which dB no longer needs. Thin weight matrices run in column
        blocks (BLOCK_COLUMNS).
Both are tested against each other, against the reference (nets/nn/reference/conv.py) and against PyTorch.
"""

from __future__ import annotations

import numpy

from backend import gemm, is_device_array

from nets.nn.layers import gather
from nets.nn.layers.base import Layer, he_or_torch_init, is_channel_last, module_of
from nets.nn.layers.patches import add_patch_rows, col2im, conv_output_size, im2col, patch_rows
from nets.validate import whole as check_whole

__all__ = ["Conv2d", "check_pair", "check_whole", "conv_output_size", "im2col", "col2im"]

# On the host, a product whose weight matrix has at most THIN_MATRIX_ENTRIES entries (conv1's 16 x 10) runs in
# blocks of BLOCK_COLUMNS columns, where OpenBLAS takes its small-matrix kernel; wider ones (conv2's 32 x 145)
# run as one call. docs/performance.md gives the timings behind the two numbers.
BLOCK_COLUMNS = 4096
THIN_MATRIX_ENTRIES = 1024


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
    moves them into its parameter buffer. x and dy may be in any memory layout; y comes back channel-major from
    the gpu twin and channel-last from the cpu twin (see the module docstring).

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
        self._cache = None  # what the last training forward kept for backward (its twin's own form)
        self._tables = {}
        self._sizes = {}  # input shape -> (OH, OW)
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
        out_h, out_w = self._output_size(x.shape)
        columns = x.shape[0] * out_h * out_w
        xp = module_of(x, self._block)
        return self._buffer("col" if train else "col_eval", xp, (self.columns + 1, columns), x.dtype,
                            fill=_ones_in_last_row)

    def _product(self, x, layout, col, train):
        """y2 = B.T @ col, returned as the (N, F, OH, OW) view of its channel-major memory; caches col when train."""
        xp = module_of(x, self._block)
        f, columns = self.out_channels, col.shape[1]
        y2 = self._buffer("y" if train else "y_eval", xp, (f, columns), x.dtype)
        _matmul(self._block.T, col, y2)
        if train:
            self._cache = (x.shape, layout, col)
        out_h, out_w = self._output_size(x.shape)
        return y2.reshape(f, x.shape[0], out_h, out_w).transpose(1, 0, 2, 3)

    def _weight_gradient(self, dy):
        """dB = col @ dy2.T into the gradient block -> dy2, dy as (F, N * OH * OW) (free when dy is channel-major)."""
        n, f, out_h, out_w = dy.shape
        dy2 = dy.transpose(1, 0, 2, 3).reshape(f, n * out_h * out_w)
        _gram(self._cache[2], dy2, self._grad_block)
        return dy2

    # ------------------------------------------------------------------ cpu: channel-last products, strided copies
    def forward_cpu(self, x, train=True, out=None):
        """x: (N, C, H, W) -> (N, F, OH, OW) channel-last: one product whose rows are output pixels, y = P @ B_rows
        (patches of a channel-last x, layers/patches.py) or y = col.T @ B (the column matrix of an NCHW or
        channel-major x, filled as im2col does); caches P or col when train."""
        xp = module_of(x, self._block)
        n, out_h, out_w = x.shape[0], *self._output_size(x.shape)
        layout = gather.layout_of(x)
        # one home for y in training and evaluation: backward never reads it (it reads P or col)
        y = self._buffer("y_rows", xp, (n * out_h * out_w, self.out_channels), x.dtype)
        if layout is not None:  # NCHW or channel-major memory: copies along image rows
            col = self._columns(x, train)
            im2col(x, *self.kernel_size, self.stride, self.padding, out=col[:-1])
            _matmul_rows(col.T, self._block, y)
            cache = ("columns", x.shape, layout, col)
        else:  # channel-last (or other) memory: copies of C-vectors
            patches = self._patches(x, train)
            _matmul_rows(patches, self._rows_block(xp), y)
            cache = ("rows", x.shape, "nhwc", patches)
        if train:
            self._cache = cache
        return y.reshape(n, out_h, out_w, self.out_channels).transpose(0, 3, 1, 2)

    def backward_cpu(self, dy, need_input_grad=True):
        """dy: (N, F, OH, OW), any layout -> dx: (N, C, H, W) (channel-last after patches, x's layout after col): dB in
        one product, then dx from one product into the memory of P or col (no longer needed) and one strided add
        per kernel offset. need_input_grad=False skips dx (returns None)."""
        kind, x_shape, layout, matrix = self._cache
        xp = module_of(dy, self._block)
        n, f, out_h, out_w = dy.shape
        if is_channel_last(dy):
            dy_rows = dy.transpose(0, 2, 3, 1).reshape(-1, f)
        else:
            dy_rows = self._buffer("dy_rows", xp, (n * out_h * out_w, f), dy.dtype)
            dy_rows.reshape(n, out_h, out_w, f)[...] = dy.transpose(0, 2, 3, 1)
        if kind == "columns":
            _gram(matrix, dy_rows.T, self._grad_block)
        else:
            self._store_rows_gradient(_gram(matrix.T, dy_rows.T, self._rows_gradient(xp)))
        if not need_input_grad:
            return None
        self._trained_twin = None  # the products below overwrite P or col: a second backward needs a new forward
        k, columns = self.columns, dy_rows.shape[0]
        (kh, kw), (_, c, h, w), p = self.kernel_size, x_shape, self.padding
        if kind == "columns":
            dcol = _matmul(self._block[:-1], dy_rows.T, matrix[:-1])
            memory = self._buffer("dx", xp, (c, n, h, w) if layout == "cnhw" else (n, c, h, w), dy.dtype)
            by_channel = memory if layout == "cnhw" else memory.transpose(1, 0, 2, 3)  # (C, N, H, W) view
            if p:  # the adds run in a zero-bordered array of col2im's own, then the inside is copied over
                by_channel[...] = col2im(dcol, x_shape, kh, kw, self.stride, p).transpose(1, 0, 2, 3)
            else:
                col2im(dcol, x_shape, kh, kw, self.stride, p, out=by_channel)
            return gather.from_flat(memory.reshape(-1), x_shape, layout)
        # dP grouped by kernel offset, dP[(ki, kj)] = dy_rows @ W(ki, kj).T (M, C), one batched product into the first
        # K * M numbers of P's memory
        offsets = matrix.reshape(-1)[: columns * k].reshape(kh * kw, columns, c)
        weights = self._rows_block(xp)[:-1].reshape(kh * kw, c, self.out_channels).transpose(0, 2, 1)
        xp.matmul(dy_rows, weights, out=offsets)
        padded = self._buffer("dx_padded" if p else "dx", xp, (n, h + 2 * p, w + 2 * p, c), dy.dtype)
        add_patch_rows(offsets, padded, kh, kw, self.stride)
        if p:
            dx = self._buffer("dx", xp, (n, h, w, c), dy.dtype)
            dx[...] = padded[:, p:p + h, p:p + w]
            padded = dx
        return padded.transpose(0, 3, 1, 2)

    def _output_size(self, x_shape):
        """(OH, OW) for an input of x_shape (ValueError, one sentence, when the kernel does not fit)."""
        sizes = self._sizes.get(x_shape)
        if sizes is None:
            (kh, kw), stride, padding = self.kernel_size, self.stride, self.padding
            sizes = self._sizes[x_shape] = (conv_output_size(x_shape[2], kh, stride, padding),
                                            conv_output_size(x_shape[3], kw, stride, padding))
        return sizes

    def _patches(self, x, train):
        """P (N * OH * OW, K + 1): the patches of channel-last x (zero-bordered when padded) and a column of ones."""
        xp = module_of(x, self._block)
        (kh, kw), p = self.kernel_size, self.padding
        n, c, h, w = x.shape
        out_h, out_w = self._output_size(x.shape)
        if p or not is_channel_last(x):
            image = self._buffer("image", xp, (n, h + 2 * p, w + 2 * p, c), x.dtype, fill=_zeros)
            image[:, p:p + h, p:p + w] = x.transpose(0, 2, 3, 1)  # the border stays zero from the allocation
        else:
            image = x.transpose(0, 2, 3, 1)
        patches = self._buffer("patches" if train else "patches_eval", xp, (n * out_h * out_w, self.columns + 1),
                               x.dtype)
        patch_rows(image, kh, kw, self.stride, patches[:, :-1])
        patches[:, -1] = 1  # the bias rides on it (a backward may have used this memory)
        return patches

    def _rows_block(self, xp):
        """The parameter block with its rows in the patches' (ki, kj, c) order (the block itself for one channel)."""
        if self.in_channels == 1:
            return self._block
        (kh, kw), c, f = self.kernel_size, self.in_channels, self.out_channels
        rows = self._buffer("block_rows", xp, self.block_shape, self._block.dtype)
        rows[:-1].reshape(kh, kw, c, f)[...] = self._block[:-1].reshape(c, kh, kw, f).transpose(1, 2, 0, 3)
        rows[-1] = self._block[-1]
        return rows

    def _rows_gradient(self, xp):
        """Where dB lands in the patches' row order: the gradient block itself for one channel, else a buffer."""
        if self.in_channels == 1:
            return self._grad_block
        return self._buffer("grad_rows", xp, self.block_shape, self._grad_block.dtype)

    def _store_rows_gradient(self, rows):
        """dB from the patches' (ki, kj, c) row order into the gradient block's (c, ki, kj)."""
        if rows is self._grad_block:
            return
        (kh, kw), c, f = self.kernel_size, self.in_channels, self.out_channels
        self._grad_block[:-1].reshape(c, kh, kw, f)[...] = rows[:-1].reshape(kh, kw, c, f).transpose(2, 0, 1, 3)
        self._grad_block[-1] = rows[-1]

    # ------------------------------------------------------------------ gpu: gathers, few launches
    def forward_gpu(self, x, train=True, out=None):
        """x: (N, C, H, W) -> (N, F, OH, OW) channel-major: col in one gather through an index table (plus one copy into
        a zero-bordered buffer when padded), then one product; x is copied to NCHW first when its memory is in
        neither layout."""
        xp = module_of(x, self._block)
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
        xp = module_of(dy, self._block)
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
    xp = module_of(a, b)
    for start in range(0, b.shape[1], BLOCK_COLUMNS):
        xp.matmul(a, b[:, start : start + BLOCK_COLUMNS], out=out[:, start : start + BLOCK_COLUMNS])
    return out


def _matmul_rows(a, b, out):
    """out[...] = a @ b (a: (M, Q), b: (Q, F)), in row blocks when b is thin (see BLOCK_COLUMNS)."""
    if not _thin(b):
        return gemm(a, b, out)
    xp = module_of(a, b)
    for start in range(0, a.shape[0], BLOCK_COLUMNS):
        xp.matmul(a[start : start + BLOCK_COLUMNS], b, out=out[start : start + BLOCK_COLUMNS])
    return out


def _gram(a, b, out):
    """out[...] = a @ b.T (a: (K, M), b: (F, M), out: (K, F)), summed over column blocks when out is thin."""
    if not _thin(out):
        return gemm(a, b.T, out)
    xp = module_of(a, b)
    xp.matmul(a[:, :BLOCK_COLUMNS], b[:, :BLOCK_COLUMNS].T, out=out)
    for start in range(BLOCK_COLUMNS, a.shape[1], BLOCK_COLUMNS):
        out += xp.matmul(a[:, start : start + BLOCK_COLUMNS], b[:, start : start + BLOCK_COLUMNS].T)
    return out
