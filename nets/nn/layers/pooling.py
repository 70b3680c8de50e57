"""Max pooling that remembers which pixel won each window (the first maximum, as PyTorch does).

Read nets/nn/reference/pooling.py first: the same function, plainly. Ties: MNIST backgrounds are full of exact
ties, and a plain `x == max` mask would send the gradient to every tied pixel; both strategies below keep the
FIRST maximum of each window in row-major order, exactly PyTorch's choice. NaN inputs are not supported.
Two strategies, chosen per backend in `strategy_for`:

"tournament" (the CPU; MaxPool2d.forward_cpu, backward_cpu, in layers/tournament.py). Window maxima as
knockout tournaments over shifted views of the image memory: a few long SIMD loops over whole images
instead of NumPy's short inner loops over windows. The method, step by step, is in that file's docstring.

"gather" (the GPU, where a step costs its launches; MaxPool2d.forward_gpu, backward_gpu, below). One `take`
copies every window into a column of a (KH * KW, windows) matrix; `max` and `argmax` down the columns give
the result and the first maximum (3 launches in all, against 6 or more for the tournaments). With relu=True
the matrix has a leading row of zeros, so the maximum is already rectified and a window whose maximum is
<= 0 picks that row (its gradient goes nowhere). Backward spreads dy over a one-hot of the argmax and
gathers it back to the pixels through the inverse table (layers/gather.py): 3 launches, 4 where windows
overlap.
"""

from __future__ import annotations

from backend import array_module, is_device_array

from nets.nn.layers import gather
from nets.nn.layers.base import Layer
from nets.nn.layers.conv import check_pair, check_whole, conv_output_size
from nets.nn.layers.tournament import TournamentPooling, pairing_tree

__all__ = ["MaxPool2d", "STRATEGIES", "pairing_tree"]

STRATEGIES = ("tournament", "gather")


def _zero_first_row(array):
    array[0] = 0


def _zero_in_last_cell(array):
    array[-1] = 0


class MaxPool2d(TournamentPooling, Layer):
    """x: (N, C, H, W) -> y: (N, C, OH, OW), OH = (H - kernel) // stride + 1 (no padding).

    Any kernel and stride; stride defaults to the kernel size as in PyTorch. y is NCHW; dx keeps
    x's layout (NCHW or channel-major). forward chooses the strategy (`strategy_for`) and backward follows:
    forward_cpu / backward_cpu (layers/tournament.py) or forward_gpu / backward_gpu (below).

    relu=True makes it max(maxpool(x), 0), which equals maxpool(relu(x)) with the same gradient,
    ties included (a window whose first maximum is <= 0 sends no gradient either way; one with
    a positive maximum picks the same first pixel): a ReLU folded into the pass that writes y.
    strategy: "tournament" or "gather" to force one; None picks per backend (see `strategy_for`).
    """

    def __init__(self, kernel_size, stride=None, *, relu=False):
        super().__init__()
        self.relu = bool(relu)
        kh, kw = check_pair(kernel_size, "MaxPool2d kernel_size")
        if kh != kw and stride is None:
            raise ValueError("give MaxPool2d an explicit stride when the kernel is not square.")
        self.kernel_size = (kh, kw)
        self.stride = check_whole(stride, "MaxPool2d stride") if stride is not None else kh
        self.strategy = None
        self._row_tree, self._column_tree = pairing_tree(kw), pairing_tree(kh)
        self._cache = None
        self._tables = {}

    def strategy_for(self, x) -> str:
        """The one place the strategy is chosen: gather on a device (launches), tournament on the host (SIMD)."""
        if self.strategy is not None:
            return self.strategy
        return "gather" if is_device_array(x) else "tournament"

    def forward(self, x, train=True, out=None):
        """x: (N, C, H, W) -> (N, C, OH, OW); keeps what backward needs when train."""
        if x.ndim != 4:
            raise ValueError(f"MaxPool2d takes (N, C, H, W) inputs, got shape {tuple(x.shape)}.")
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"MaxPool2d got an empty input of shape {tuple(x.shape)}; pass at least one image and channel.")
        xp = array_module(x)
        if self.strategy_for(x) == "gather":
            return self.forward_gpu(x, xp, train)
        return self.forward_cpu(x, xp, train)

    def backward(self, dy, need_input_grad=True):
        """dy: (N, C, OH, OW) -> dx: (N, C, H, W) in x's layout, each dy added at its window's first maximum."""
        if self._cache is None:
            raise RuntimeError("MaxPool2d.backward needs a forward(x, train=True) first.")
        if not need_input_grad:
            return None
        xp = array_module(dy)
        if self._cache[0] == "gather":  # what forward chose
            return self.backward_gpu(dy, xp)
        return self.backward_cpu(dy, xp)

    # ------------------------------------------------------------------ gather (GPU): few launches
    def forward_gpu(self, x, xp, train):
        """x: (N, C, H, W) -> y: (N, C, OH, OW): every window gathered into a column, then max and argmax down them."""
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
            return windows.max(axis=0).reshape(out_shape)
        y = windows.max(axis=0, out=self._buffer("y", xp, (count,), x.dtype))
        winners = windows.argmax(axis=0, out=self._buffer("winners", xp, (count,), xp.int64))
        self._cache = ("gather", x.shape, layout, winners, tables)
        return y.reshape(out_shape)

    def backward_gpu(self, dy, xp):
        """dy: (N, C, OH, OW) -> dx in x's layout: dy spread over a one-hot of each argmax, gathered back to pixels."""
        _, x_shape, layout, winners, tables = self._cache
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
        """The device tables of the gather strategy for this input shape and layout: "windows" (KH*KW, windows),
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
