"""Max pooling that remembers which pixel won each window (the first maximum, as PyTorch does).

How it runs fast on NumPy: a window maximum is separable, a maximum over the row offsets of
maxima over the column offsets, and each stage is computed on the image memory taken as one
flat vector. Along that vector, "the pixel j columns to the right" is the vector shifted by j
and "i rows down" is it shifted by i * W, so every operation is a single long loop (SIMD) over
all planes, rows and columns at once; positions whose window would cross a row or an image
edge are computed too and simply never read. Windows of views like x[..., ki::s, kj::s]
instead run NumPy's inner loop over rows of OW (10-13) pixels, 3-5x slower per pixel.

Ties: within each stage the offsets play a knockout tournament (`pairing_tree`) in which the
later offset wins only when strictly greater, so a row stage keeps the first maximum of each
row and the column stage the first row holding the window maximum: the FIRST maximum of the
window in row-major order, exactly PyTorch's choice (MNIST backgrounds are full of ties, and a
plain `x == max` mask would send the gradient to every tied pixel). Backward routes dy down
the same tournaments (right = g * mask, left = g - right, both exact) and adds where
windows overlap. NaN inputs are not supported.
"""

from __future__ import annotations

from backend import array_module

from .base import Layer, is_channel_major
from .conv import check_pair, check_whole, conv_output_size

__all__ = ["MaxPool2d", "pairing_tree"]


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


class MaxPool2d(Layer):
    """x: (N, C, H, W) -> y: (N, C, OH, OW), OH = (H - kernel) // stride + 1 (no padding).

    Any kernel and stride; stride defaults to the kernel size as in PyTorch. y is NCHW; dx keeps
    x's layout (NCHW or channel-major). Method in the module docstring.

    relu=True makes it max(maxpool(x), 0), which equals maxpool(relu(x)) with the same gradient,
    ties included (a window whose first maximum is <= 0 sends no gradient either way; one with
    a positive maximum picks the same first pixel): a ReLU folded into the pass that writes y.
    """

    def __init__(self, kernel_size, stride=None, *, relu=False):
        super().__init__()
        self.relu = bool(relu)
        self._positive = None
        kh, kw = check_pair(kernel_size, "MaxPool2d kernel_size")
        if kh != kw and stride is None:
            raise ValueError("give MaxPool2d an explicit stride when the kernel is not square.")
        self.kernel_size = (kh, kw)
        self.stride = check_whole(stride, "MaxPool2d stride") if stride is not None else kh
        self._row_tree, self._column_tree = pairing_tree(kw), pairing_tree(kh)
        self._geometry = None

    def _plan(self, shape):
        """Flat-vector geometry for an (N, C, H, W) input; see the module docstring."""
        (kh, kw), stride = self.kernel_size, self.stride
        n, c, h, w = shape
        if n == 0 or c == 0:
            raise ValueError(f"MaxPool2d got an empty input of shape {tuple(shape)}; pass at least one image and channel.")
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

    def forward(self, x, train=True):
        """x: (N, C, H, W) -> (N, C, OH, OW); keeps the tournaments' masks when train."""
        if x.ndim != 4:
            raise ValueError(f"MaxPool2d takes (N, C, H, W) inputs, got shape {tuple(x.shape)}.")
        xp = array_module(x)
        channel_major = is_channel_major(x)
        if not (channel_major or x.flags.c_contiguous):
            x = xp.ascontiguousarray(x)
        plan = self._plan(x.shape)
        flat = (x.transpose(1, 0, 2, 3) if channel_major else x).reshape(-1)
        row_step, row_width, row_length = plan["row_step"], plan["row_width"], plan["row_length"]

        def row_leaf(j):
            return flat[j : j + row_step * (row_length - 1) + 1 : row_step]

        # Both stages return vectors of planes * H * row_width entries (the first row_length or
        # column_length of them valid), so the column stage's can be read at the window corners.
        size = plan["planes"] * plan["x_shape"][2] * row_width
        row_max = self._play(xp, self._row_tree, row_leaf, size, row_length, "row", x.dtype, train)

        def column_leaf(i):
            return row_max[i * row_width : i * row_width + plan["column_length"]]

        if isinstance(self._column_tree, int):  # kernel height 1
            column_max = row_max
        else:
            column_max = self._play(xp, self._column_tree, column_leaf, size, plan["column_length"], "column",
                                    x.dtype, train)
        # y is NCHW whatever x's layout: the reordering rides on this copy, and Flatten gets a free reshape
        y = self._result("y", xp, plan["out_shape"], x.dtype, reuse=train)
        if self.relu:
            xp.maximum(self._anchors(column_max, plan, channel_major), 0, out=y)
            if train:
                positive = self._buffer("positive", xp, y.shape, xp.bool_)
                self._positive = xp.greater(y, 0, out=positive)
        else:
            y[...] = self._anchors(column_max, plan, channel_major)
        if train:
            self._geometry = (plan, channel_major)
        return y

    def _play(self, xp, tree, leaf, size, length, stage, dtype, train):
        """Maximum over a stage's tournament: a (size,) vector whose first `length` entries are valid."""
        if isinstance(tree, int):  # kernel width 1: the row stage is the image itself (size entries)
            return leaf(tree)

        def play(node, out):
            if isinstance(node, int):
                return leaf(node)
            left, right = play(node[0], None), play(node[1], None)
            if train:
                xp.greater(right, left, out=self._buffer((stage, "won", node), xp, (length,), xp.bool_))
            if out is None:
                out = self._buffer((stage, "max", node), xp, (length,), dtype)
            return xp.maximum(left, right, out=out)

        result = self._buffer((stage, "result"), xp, (size,), dtype)
        play(tree, result[:length])
        return result

    def backward(self, dy, need_input_grad=True):
        """dy: (N, C, OH, OW) -> dx: (N, C, H, W) in x's layout, each dy added at its window's first maximum."""
        if self._geometry is None:
            raise RuntimeError("MaxPool2d.backward needs a forward(x, train=True) first.")
        if not need_input_grad:
            return None
        xp = array_module(dy)
        plan, channel_major = self._geometry
        h, row_width, row_step = plan["x_shape"][2], plan["row_width"], plan["row_step"]
        row_length, column_length = plan["row_length"], plan["column_length"]

        # dy onto the window corners of an otherwise zero column-stage vector
        column_gradient = self._buffer("column_gradient", xp, (plan["planes"] * h * row_width,), dy.dtype)
        column_gradient.fill(0)
        corners = self._anchors(column_gradient, plan, channel_major)
        if self.relu:
            xp.multiply(dy, self._positive, out=corners)
        else:
            corners[...] = dy

        # column stage: row i of a window is the row-stage vector shifted by i * row_width
        row_gradient = self._buffer("row_gradient", xp, (row_length,), dy.dtype)
        if isinstance(self._column_tree, int):
            row_gradient[...] = column_gradient[:row_length]
        else:
            row_gradient[column_length:] = 0  # leaf 0, delivered first, writes the rest
            self._route(xp, self._column_tree, column_gradient[:column_length], "column",
                        lambda i: row_gradient[i * row_width : i * row_width + column_length], first_writes=True)

        # row stage: column j of a window is the image vector shifted by j
        dx = self._result("dx", xp, plan["x_shape"], dy.dtype, reuse=True, channel_major=channel_major)
        dx_flat = (dx.transpose(1, 0, 2, 3) if channel_major else dx).reshape(-1)

        def row_target(j):
            return dx_flat[j : j + row_step * (row_length - 1) + 1 : row_step]

        if plan["row_partition"]:
            self._route(xp, self._row_tree, row_gradient, "row", row_target, all_write=True)
        elif row_step == 1 and not isinstance(self._row_tree, int):
            dx_flat[row_length:] = 0  # leaf 0, delivered first, writes dx_flat[:row_length]
            self._route(xp, self._row_tree, row_gradient, "row", row_target, first_writes=True)
        else:
            dx_flat.fill(0)
            self._route(xp, self._row_tree, row_gradient, "row", row_target)
        return dx

    def _route(self, xp, tree, gradient, stage, target, first_writes=False, all_write=False):
        """Send `gradient` down a stage's tournament into target(leaf) views.

        Leaves add into their targets, except: all_write (targets partition the output) writes
        every leaf; first_writes writes leaf 0, which this depth-first, left-first walk reaches first.
        """
        def writes(leaf):
            return all_write or (first_writes and leaf == 0)

        def slot(node):
            if isinstance(node, int) and writes(node):
                return target(node)
            return self._buffer((stage, "gradient", node), xp, gradient.shape, gradient.dtype)

        def route(node, g):
            if isinstance(node, int):
                if writes(node):
                    if g is not target(node):
                        target(node)[...] = g
                else:
                    target(node)[...] += g
                return
            won = self._buffers[(stage, "won", node)][2]
            right, left = slot(node[1]), slot(node[0])
            xp.multiply(g, won, out=right)
            xp.subtract(g, right, out=left)
            route(node[0], left)
            route(node[1], right)

        route(tree, gradient)
