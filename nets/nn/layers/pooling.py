"""Max pooling that remembers which pixel won each window (the first maximum, as PyTorch does).

Ties: MNIST backgrounds are full of exact ties, and a plain `x == max` mask would send the gradient to
every tied pixel; both strategies below keep the FIRST maximum of each window in row-major order, exactly
PyTorch's choice. NaN inputs are not supported. Two strategies, chosen per backend in `strategy_for`:

"tournament" (the CPU). A window maximum is separable, a maximum over the row offsets of maxima over the
column offsets, and each stage is computed on the image memory taken as one flat vector. Along that vector,
"the pixel j columns to the right" is the vector shifted by j and "i rows down" is it shifted by i * W, so
every operation is a single long loop (SIMD) over all planes, rows and columns at once; positions whose
window would cross a row or an image edge are computed too and simply never read. (Windows of views like
x[..., ki::s, kj::s] instead run NumPy's inner loop over rows of OW (10-13) pixels, 3-5x slower per pixel.)
Within each stage the offsets play a knockout tournament (`pairing_tree`) in which the later offset wins
only when strictly greater, so a row stage keeps the first maximum of each row and the column stage the
first row holding the window maximum. Backward routes dy down the same tournaments (right = g * mask,
left = g - right, both exact) and adds where windows overlap.

"gather" (the GPU, where a step costs its launches). One `take` copies every window into a column of a
(KH * KW, windows) matrix; `max` and `argmax` down the columns give the result and the first maximum
(3 launches in all, against 6 or more for the tournaments). With relu=True the matrix has a leading row
of zeros, so the maximum is already rectified and a window whose maximum is <= 0 picks that row (its
gradient goes nowhere). Backward spreads dy over a one-hot of the argmax and gathers it back to the
pixels through the inverse table (layers/gather.py): 3 launches, 4 where windows overlap.
"""

from __future__ import annotations

from backend import array_module, is_device_array

from nets.nn.layers import gather
from nets.nn.layers.base import Layer, is_channel_major
from nets.nn.layers.conv import check_pair, check_whole, conv_output_size

__all__ = ["MaxPool2d", "STRATEGIES", "pairing_tree"]

STRATEGIES = ("tournament", "gather")


def pairing_tree(count):
    """Leaves 0..count-1 paired with their neighbour, level by level, into nested (left, right) tuples.

    Every left subtree holds earlier leaves than its right sibling, so "right wins only when
    strictly greater" picks the first maximum: pairing_tree(4) == ((0, 1), (2, 3)).
    """
    level = list(range(count))
    while len(level) > 1:
        paired = [(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        level = paired + level[len(paired) * 2 :]
    return level[0]


def _zero_first_row(array):
    array[0] = 0


def _zero_in_last_cell(array):
    array[-1] = 0


class MaxPool2d(Layer):
    """x: (N, C, H, W) -> y: (N, C, OH, OW), OH = (H - kernel) // stride + 1 (no padding).

    Any kernel and stride; stride defaults to the kernel size as in PyTorch. y is NCHW; dx keeps
    x's layout (NCHW or channel-major). Method in the module docstring.

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
            return self._gather_forward(x, xp, train)
        return self._tournament_forward(x, xp, train)

    def backward(self, dy, need_input_grad=True):
        """dy: (N, C, OH, OW) -> dx: (N, C, H, W) in x's layout, each dy added at its window's first maximum."""
        if self._cache is None:
            raise RuntimeError("MaxPool2d.backward needs a forward(x, train=True) first.")
        if not need_input_grad:
            return None
        xp = array_module(dy)
        if self._cache[0] == "gather":
            return self._gather_backward(dy, xp)
        return self._tournament_backward(dy, xp)

    # ------------------------------------------------------------------ gather (GPU)
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

    def _gather_forward(self, x, xp, train):
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

    def _gather_backward(self, dy, xp):
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

    # ------------------------------------------------------------------ tournament (CPU)
    def _plan(self, shape):
        """Flat-vector geometry for an (N, C, H, W) input; see the module docstring."""
        (kh, kw), stride = self.kernel_size, self.stride
        n, c, h, w = shape
        out_h, out_w = conv_output_size(h, kh, stride, 0), conv_output_size(w, kw, stride, 0)
        # With W a multiple of the stride, the row stage need only visit every stride-th column.
        row_step = stride if stride > 1 and w % stride == 0 else 1
        row_width = w // row_step
        length = n * c * h * w
        row_length = (length - kw) // row_step + 1  # row-stage positions q: row_step * q + kw - 1 < length
        return {
            "x_shape": tuple(shape), "out_shape": (n, c, out_h, out_w), "planes": n * c,
            "row_step": row_step, "row_width": row_width, "length": length, "row_length": row_length,
            "column_length": row_length - (kh - 1) * row_width,
            # the row stage's leaves partition the image exactly: gradients can be written, not added
            "row_partition": row_step == kw and row_step * row_length == length,
        }

    def _anchors(self, array, plan, channel_major):
        """Window maxima at the windows' top-left corners, from a column-stage vector, as an
        (N, C, OH, OW) view (planes ordered as in x's memory, so the view is N-C swapped when channel-major)."""
        n, c, out_h, out_w = plan["out_shape"]
        h, stride, column_step = plan["x_shape"][2], self.stride, self.stride // plan["row_step"]
        grid = array.reshape((c, n, h, plan["row_width"]) if channel_major else (n, c, h, plan["row_width"]))
        corners = grid[:, :, : stride * (out_h - 1) + 1 : stride, : column_step * (out_w - 1) + 1 : column_step]
        return corners.transpose(1, 0, 2, 3) if channel_major else corners

    def _tournament_forward(self, x, xp, train):
        channel_major = is_channel_major(x)
        if not (channel_major or x.flags.c_contiguous):
            x = xp.ascontiguousarray(x)
        plan = self._plan(x.shape)
        flat = (x.transpose(1, 0, 2, 3) if channel_major else x).reshape(-1)
        row_step, row_width, row_length = plan["row_step"], plan["row_width"], plan["row_length"]
        won = {}

        def row_leaf(j):
            return flat[j : j + row_step * (row_length - 1) + 1 : row_step]

        # Both stages return vectors of planes * H * row_width entries (the first row_length or
        # column_length of them valid), so the column stage's can be read at the window corners.
        size = plan["planes"] * plan["x_shape"][2] * row_width
        row_max = self._play(xp, self._row_tree, row_leaf, size, row_length, "row", x.dtype, train, won)

        def column_leaf(i):
            return row_max[i * row_width : i * row_width + plan["column_length"]]

        if isinstance(self._column_tree, int):  # kernel height 1
            column_max = row_max
        else:
            column_max = self._play(xp, self._column_tree, column_leaf, size, plan["column_length"], "column",
                                    x.dtype, train, won)
        # y is NCHW whatever x's layout: the reordering rides on this copy, and Flatten gets a free reshape
        y = self._buffer("y", xp, plan["out_shape"], x.dtype) if train else xp.empty(plan["out_shape"], x.dtype)
        positive = None
        if self.relu:
            xp.maximum(self._anchors(column_max, plan, channel_major), 0, out=y)
            if train:
                positive = xp.greater(y, 0, out=self._buffer("positive", xp, y.shape, xp.bool_))
        else:
            y[...] = self._anchors(column_max, plan, channel_major)
        if train:
            self._cache = ("tournament", plan, channel_major, won, positive)
        return y

    def _play(self, xp, tree, leaf, size, length, stage, dtype, train, won):
        """Maximum over a stage's tournament: a (size,) vector whose first `length` entries are valid."""
        if isinstance(tree, int):  # kernel width 1: the row stage is the image itself (size entries)
            return leaf(tree)

        def play(node, out):
            if isinstance(node, int):
                return leaf(node)
            left, right = play(node[0], None), play(node[1], None)
            if train:
                won[(stage, node)] = xp.greater(right, left, out=self._buffer((stage, "won", node), xp, (length,),
                                                                              xp.bool_))
            if out is None:
                out = self._buffer((stage, "max", node), xp, (length,), dtype)
            return xp.maximum(left, right, out=out)

        result = self._buffer((stage, "result"), xp, (size,), dtype)
        play(tree, result[:length])
        return result

    def _tournament_backward(self, dy, xp):
        _, plan, channel_major, won, positive = self._cache
        h, row_width, row_step = plan["x_shape"][2], plan["row_width"], plan["row_step"]
        row_length, column_length = plan["row_length"], plan["column_length"]

        # dy onto the window corners of an otherwise zero column-stage vector
        column_gradient = self._buffer("column_gradient", xp, (plan["planes"] * h * row_width,), dy.dtype)
        column_gradient.fill(0)
        corners = self._anchors(column_gradient, plan, channel_major)
        if self.relu:
            xp.multiply(dy, positive, out=corners)
        else:
            corners[...] = dy

        # column stage: row i of a window is the row-stage vector shifted by i * row_width
        row_gradient = self._buffer("row_gradient", xp, (row_length,), dy.dtype)
        if isinstance(self._column_tree, int):
            row_gradient[...] = column_gradient[:row_length]
        else:
            row_gradient[column_length:] = 0  # leaf 0, delivered first, writes the rest
            self._route(xp, self._column_tree, column_gradient[:column_length], "column", won,
                        lambda i: row_gradient[i * row_width : i * row_width + column_length], first_writes=True)

        # row stage: column j of a window is the image vector shifted by j
        n, c, hh, w = plan["x_shape"]
        memory = self._buffer("dx", xp, (c, n, hh, w) if channel_major else (n, c, hh, w), dy.dtype)
        dx = memory.transpose(1, 0, 2, 3) if channel_major else memory
        dx_flat = memory.reshape(-1)

        def row_target(j):
            return dx_flat[j : j + row_step * (row_length - 1) + 1 : row_step]

        if plan["row_partition"]:
            self._route(xp, self._row_tree, row_gradient, "row", won, row_target, all_write=True)
        elif row_step == 1 and not isinstance(self._row_tree, int):
            dx_flat[row_length:] = 0  # leaf 0, delivered first, writes dx_flat[:row_length]
            self._route(xp, self._row_tree, row_gradient, "row", won, row_target, first_writes=True)
        else:
            dx_flat.fill(0)
            self._route(xp, self._row_tree, row_gradient, "row", won, row_target)
        return dx

    def _route(self, xp, tree, gradient, stage, won, target, first_writes=False, all_write=False):
        """Send `gradient` down a stage's tournament into target(leaf) views.

        Leaves add into their targets, except: all_write (targets partition the output) writes
        every leaf; first_writes writes leaf 0, which this depth-first, left-first walk reaches first.
        A leaf that writes gets its gradient computed straight into its target (no extra copy).
        """
        def writes(leaf):
            return all_write or (first_writes and leaf == 0)

        def slot(node):
            """(array to compute the node's gradient into, whether it already is the leaf's target)."""
            if isinstance(node, int) and writes(node):
                return target(node), True
            return self._buffer((stage, "gradient", node), xp, gradient.shape, gradient.dtype), False

        def route(node, g, in_target):
            if isinstance(node, int):
                if not writes(node):
                    target(node)[...] += g
                elif not in_target:
                    target(node)[...] = g
                return
            (right, right_in_target), (left, left_in_target) = slot(node[1]), slot(node[0])
            xp.multiply(g, won[(stage, node)], out=right)
            xp.subtract(g, right, out=left)
            route(node[0], left, left_in_target)
            route(node[1], right, right_in_target)

        route(tree, gradient, False)
