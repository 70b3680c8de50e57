"""Max pooling that remembers which pixel won each window (the first maximum, as PyTorch does).

Read nets/nn/reference/pooling.py first: the same function, plainly. Ties: MNIST backgrounds are full of exact
ties, and a plain `x == max` mask would send the gradient to every tied pixel; both twins below keep the
FIRST maximum of each window in row-major order, exactly PyTorch's choice. NaN inputs are not supported.
Two twins, chosen by the Layer base (layers/base.py):

forward_cpu / backward_cpu: window maxima as knockout tournaments over strided views of channel-last images
(layers/tournament.py, module functions): a few element-wise passes over whole images, each moving C-vectors
or whole rows, instead of NumPy's short inner loops over windows. y and dx come back channel-last. The method,
step by step, is in that file's docstring.

forward_gpu / backward_gpu, where a step costs its launches: one `take`
copies every window into a column of a (KH * KW, windows) matrix; `max` and `argmax` down the columns give
the result and the first maximum (3 launches in all, against 6 or more for the tournaments). With relu=True
the matrix has a leading row of zeros, so the maximum is already rectified and a window whose maximum is
<= 0 picks that row (its gradient goes nowhere). Backward spreads dy over a one-hot of the argmax and
gathers it back to the pixels through the inverse table (layers/gather.py): 3 launches, 4 where windows
overlap.
"""

from __future__ import annotations

from nets.nn.layers import gather, tournament
from nets.nn.layers.base import Layer, module_of
from nets.nn.layers.conv import check_pair, check_whole, conv_output_size
from nets.nn.layers.tournament import pairing_tree

__all__ = ["MaxPool2d", "pairing_tree"]


def _zero_first_row(array):
    array[0] = 0


def _zero_in_last_cell(array):
    array[-1] = 0


class MaxPool2d(Layer):
    """x: (N, C, H, W) -> y: (N, C, OH, OW), OH = (H - kernel) // stride + 1 (no padding).

    Any kernel and stride; stride defaults to the kernel size as in PyTorch. x may be in any memory layout. The
    twins: forward_cpu / backward_cpu (the tournaments of layers/tournament.py; y and dx channel-last) and
    forward_gpu / backward_gpu (below; y NCHW, dx in x's layout); `layer.twin` forces one (layers/base.py).

    relu=True makes it max(maxpool(x), 0), which equals maxpool(relu(x)) with the same gradient,
    ties included (a window whose first maximum is <= 0 sends no gradient either way; one with
    a positive maximum picks the same first pixel): a ReLU folded into the pass that writes y.
    """

    def __init__(self, kernel_size, stride=None, *, relu=False):
        super().__init__()
        self.relu = bool(relu)
        kh, kw = check_pair(kernel_size, "MaxPool2d kernel_size")
        if kh != kw and stride is None:
            raise ValueError("give MaxPool2d an explicit stride when the kernel is not square.")
        self.kernel_size = (kh, kw)
        self.stride = check_whole(stride, "MaxPool2d stride") if stride is not None else kh
        self._cache = None  # what the last training forward kept for backward (its twin's own form)
        self._tables = {}
        self._trees = (pairing_tree(kw), pairing_tree(kh))  # the cpu twin's tournaments: row stage, column stage

    def check_input(self, x) -> None:
        if x.ndim != 4:
            raise ValueError(f"MaxPool2d takes (N, C, H, W) inputs, got shape {tuple(x.shape)}.")
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"MaxPool2d got an empty input of shape {tuple(x.shape)}; "
                             "pass at least one image and channel.")

    # ------------------------------------------------------------------ cpu: tournaments (layers/tournament.py)
    def forward_cpu(self, x, train=True, out=None):
        """x: (N, C, H, W) -> y: (N, C, OH, OW) channel-last: a row stage, then a column stage, over strided views."""
        xp = module_of(x)
        y, saved = tournament.pool_forward(x, self.kernel_size, self.stride, self.relu, self._buffers_on(xp), train,
                                           self._trees)
        if train:
            self._cache = saved
        return y

    def backward_cpu(self, dy, need_input_grad=True):
        """dy: (N, C, OH, OW) -> dx channel-last: dy down the column stage's matches, then the row stage's."""
        if not need_input_grad:
            return None
        return tournament.pool_backward(dy, self._cache, self._buffers_on(module_of(dy)))

    def _buffers_on(self, xp):
        """buffer(key, shape, dtype): this layer's kept work arrays on xp, as the tournament functions take them."""
        return lambda key, shape, dtype: self._buffer(key, xp, shape, dtype)

    # ------------------------------------------------------------------ gpu: gathers, few launches
    def forward_gpu(self, x, train=True, out=None):
        """x: (N, C, H, W) -> y: (N, C, OH, OW): every window gathered into a column, then max and argmax down them."""
        xp = module_of(x)
        layout = gather.layout_of(x)
        if layout is None:
            x, layout = xp.ascontiguousarray(x), "nchw"
        n, c, h, w = x.shape
        (kh, kw), stride = self.kernel_size, self.stride
        out_shape = (n, c, conv_output_size(h, kh, stride, 0), conv_output_size(w, kw, stride, 0))
        tables = self._gather_tables(x.shape, layout, xp)
        windows_table = tables["windows"]
        count, width = windows_table.shape[1], tables["width"]
        fill = _zero_first_row if self.relu else None
        windows = self._buffer("windows" if train else "windows_eval", xp, (width, count), x.dtype, fill=fill)
        xp.take(gather.flat_memory(x, layout), windows_table, out=windows[1:] if self.relu else windows)
        if not train:
            return windows.max(axis=0, out=self._buffer("y_eval", xp, (count,), x.dtype)).reshape(out_shape)
        y = windows.max(axis=0, out=self._buffer("y", xp, (count,), x.dtype))
        winners = windows.argmax(axis=0, out=self._buffer("winners", xp, (count,), xp.int64))
        self._cache = (x.shape, layout, winners, tables)
        return y.reshape(out_shape)

    def backward_gpu(self, dy, need_input_grad=True):
        """dy: (N, C, OH, OW) -> dx in x's layout: dy spread over a one-hot of each argmax, gathered back to pixels."""
        if not need_input_grad:
            return None
        xp = module_of(dy)
        x_shape, layout, winners, tables = self._cache
        count, width = winners.shape[0], tables["width"]
        spread_ext = self._buffer("spread", xp, (width * count + 1,), dy.dtype, fill=_zero_in_last_cell)
        spread = spread_ext[:-1].reshape(width, count)
        xp.equal(winners[None, :], tables["rows"], out=spread)  # one-hot of each window's first maximum
        spread *= xp.ascontiguousarray(dy).reshape(1, count)
        inverse = self._gather_tables(x_shape, layout, xp, inverse=True)["inverse"]  # (copies, pixels)
        parts = xp.take(spread_ext, inverse, out=self._buffer("dx_parts", xp, inverse.shape, dy.dtype))
        if inverse.shape[0] == 1:  # every pixel in at most one window: the gather is the gradient
            flat = parts.reshape(-1)
        else:
            flat = parts.sum(axis=0, out=self._buffer("dx", xp, (inverse.shape[1],), dy.dtype))
        return gather.from_flat(flat, x_shape, layout)

    def _gather_tables(self, x_shape, layout, xp, inverse=False):
        """The device tables of the gpu twin for this input shape and layout: "windows" (KH*KW, windows),
        a window per column in NCHW output order, and "columns" at once; "inverse" (for backward) on first use.

        Windows run along the columns (the fast axis) so that the reductions over a window (max, argmax, the
        gradient's sum) run over the leading axis: CuPy's own reduction kernel, one launch writing straight
        into its `out=` buffer, rather than CUB's per-row reduction with one thread block per tiny row."""
        key = (x_shape, layout, id(xp))
        tables = self._tables.get(key)
        if tables is None or (inverse and "inverse" not in tables):
            import numpy

            offsets, valid = gather.window_offsets(x_shape, layout, self.kernel_size, self.stride, 0)
            as_columns = (2, 3, 0, 1, 4, 5)  # (KH, KW, N, C, OH, OW): a window per column, NCHW output order
            sources = offsets.transpose(as_columns).reshape(self.kernel_size[0] * self.kernel_size[1], -1)
            lead = 1 if self.relu else 0
            width = sources.shape[0] + lead  # rows of the window matrix (a leading row of zeros with relu)
            windows = sources.shape[1]
            if tables is None:
                tables = self._tables[key] = {"windows": gather.device_table(sources, xp), "width": width,
                                              "rows": xp.asarray(numpy.arange(width)[:, None])}
            if inverse:
                valid = valid.transpose(as_columns).reshape(sources.shape)
                positions = (numpy.arange(sources.shape[0])[:, None] + lead) * windows + numpy.arange(windows)
                table = gather.inverse_table(sources, valid, int(numpy.prod(x_shape)), positions, width * windows)
                tables["inverse"] = gather.device_table(numpy.ascontiguousarray(table.T), xp)
        return tables
