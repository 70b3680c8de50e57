"""The CPU strategy of MaxPool2d: window maxima as knockout tournaments over shifted views of the image.

Read nets/nn/reference/pooling.py first. It computes the same numbers (each window's FIRST maximum wins, and
dy goes back to it) by copying every window out, which is clear but slow on a CPU, where NumPy would then run
its inner loop over rows of 10-13 pixels (3-5x slower per pixel). Here every pass runs over whole images:

1. Separable. The maximum of a KH x KW window is the maximum over its KH rows of the maxima over its KW
   columns, so forward runs a row stage (along each row: the maximum over KW neighbouring columns), then a
   column stage (the maximum of KH of those, from neighbouring rows).
2. Shifts instead of windows. Take the image memory as one flat vector v (every plane, row after row). v
   shifted by j, v[j:], is "the pixel j columns to the right" of every pixel at once; in the column stage the
   row stage's vector shifted by i * W is "i rows down". So a stage is a few element-wise passes over whole
   vectors, each one long SIMD loop. Positions whose window would cross a row's or an image's edge are
   computed too, and never read.
3. A knockout tournament keeps the first maximum. A stage's offsets play in pairs (`pairing_tree`): with
   kernel 3 the tree is ((0, 1), 2): offset 0 plays 1, and the winner plays 2. The right player (the later
   offset) wins only when STRICTLY greater, so among equal values the earliest offset wins. Forward keeps
   each match's result as a boolean vector, won[(stage, node)] = right > left.
4. Backward routes dy down the same matches. The gradient g reaching a match splits exactly into
   right = g * won and left = g - right (one of them is g, the other 0). The column stage's leaves fill the
   row stage's gradient; each row-stage leaf j adds its share into dx shifted by j, so windows that overlap
   add up there (where the leaves' targets do not overlap, they write instead of adding, saving a pass).

One row, kernel 2, stride 1, v = [3, 5, 5, 1]: the leaves are offset 0, v[0:3] = [3, 5, 5], and offset 1,
v[1:4] = [5, 5, 1]; won = [T, F, F] and the maxima are [5, 5, 5] (the tie in window 1 goes to offset 0, that
is pixel 1). Backward with dy = [a, b, c]: right = [a, 0, 0] is added into dx[1:4], left = [0, b, c] into
dx[0:3], so dx = [0, a + b, c, 0]: pixel 1 won windows 0 and 1, pixel 2 window 2.

With relu=True, y = max(maxpool(x), 0) and dy passes only where y > 0 (see MaxPool2d).
"""

from __future__ import annotations

from nets.nn.layers.base import is_channel_major
from nets.nn.layers.conv import conv_output_size

__all__ = ["TournamentPooling", "pairing_tree"]


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


class TournamentPooling:
    """MaxPool2d's CPU methods (forward_cpu, backward_cpu), mixed into the layer: they use its kernel_size, stride,
    relu, _row_tree and _column_tree (pairing trees of the kernel's width and height), _buffer and _cache."""

    def forward_cpu(self, x, xp, train):
        """x: (N, C, H, W) -> y: (N, C, OH, OW) NCHW: a row stage, a column stage, y read at the window corners."""
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

    def backward_cpu(self, dy, xp):
        """dy: (N, C, OH, OW) -> dx in x's layout: dy down the column stage's matches, then the row stage's."""
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

    def _plan(self, shape):
        """Flat-vector geometry for an (N, C, H, W) input (see the module docstring): how many positions each stage
        computes (row_length, column_length), and row_step, the distance between the row stage's positions."""
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
