"""MaxPool2d's cpu twin: window maxima as knockout tournaments over shifted views of the image, as module functions.

Read nets/nn/reference/pooling.py first. It computes the same numbers (each window's FIRST maximum wins, and
dy goes back to it) by copying every window out, which is clear but slow on a CPU, where NumPy would then run
its inner loop over rows of 10-13 pixels. Here every pass runs over whole images:

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

    y, saved = pool_forward(x, kernel, stride, relu, buffer, train)   # saved: what backward reads (train only)
    dx = pool_backward(dy, saved, buffer)

`buffer(key, shape, dtype)` hands out the work arrays (MaxPool2d passes its own kept buffers), so a step allocates
nothing; `saved` holds the geometry (`plan`), the matches' results and, with relu, where y > 0.
"""

from __future__ import annotations

from dataclasses import dataclass

from backend import array_module

from nets.nn.layers.base import is_channel_major
from nets.nn.layers.conv import conv_output_size

__all__ = ["Saved", "pairing_tree", "plan", "pool_backward", "pool_forward"]


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


@dataclass
class Saved:
    """What a training pool_forward keeps for pool_backward: the geometry, the trees, the layout of x, each
    match's result (won[(stage, node)] = right > left) and, with relu, where y > 0 (else None)."""

    plan: dict
    trees: tuple
    stride: int
    channel_major: bool
    won: dict
    positive: object


def plan(shape, kernel, stride) -> dict:
    """Flat-vector geometry for an (N, C, H, W) input (see the module docstring): how many positions each stage
    computes (row_length, column_length), and row_step, the distance between the row stage's positions."""
    (kh, kw) = kernel
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


def pool_forward(x, kernel, stride, relu, buffer, train):
    """x: (N, C, H, W), NCHW or channel-major -> (y: (N, C, OH, OW) NCHW, Saved or None): a row stage, a column
    stage, y read at the window corners (and rectified when relu)."""
    xp = array_module(x)
    channel_major = is_channel_major(x)
    if not (channel_major or x.flags.c_contiguous):
        x = xp.ascontiguousarray(x)
    geometry = plan(x.shape, kernel, stride)
    row_tree, column_tree = pairing_tree(kernel[1]), pairing_tree(kernel[0])
    flat = (x.transpose(1, 0, 2, 3) if channel_major else x).reshape(-1)
    row_step, row_width, row_length = geometry["row_step"], geometry["row_width"], geometry["row_length"]
    won = {}

    def row_leaf(j):
        return flat[j : j + row_step * (row_length - 1) + 1 : row_step]

    # Both stages return vectors of planes * H * row_width entries (the first row_length or
    # column_length of them valid), so the column stage's can be read at the window corners.
    size = geometry["planes"] * geometry["x_shape"][2] * row_width
    row_max = _play(xp, row_tree, row_leaf, size, row_length, "row", x.dtype, buffer, won if train else None)

    def column_leaf(i):
        return row_max[i * row_width : i * row_width + geometry["column_length"]]

    if isinstance(column_tree, int):  # kernel height 1
        column_max = row_max
    else:
        column_max = _play(xp, column_tree, column_leaf, size, geometry["column_length"], "column", x.dtype, buffer,
                           won if train else None)
    # y is NCHW whatever x's layout: the reordering rides on this copy, and Flatten gets a free reshape
    out_shape = geometry["out_shape"]
    y = buffer("y" if train else "y_eval", out_shape, x.dtype)
    corners = _corners(column_max, geometry, stride, channel_major)
    positive = None
    if relu:
        xp.maximum(corners, 0, out=y)
        if train:
            positive = xp.greater(y, 0, out=buffer("positive", y.shape, xp.bool_))
    else:
        y[...] = corners
    saved = Saved(geometry, (row_tree, column_tree), stride, channel_major, won, positive) if train else None
    return y, saved


def pool_backward(dy, saved: Saved, buffer):
    """dy: (N, C, OH, OW) -> dx in x's layout: dy down the column stage's matches, then the row stage's."""
    xp = array_module(dy)
    geometry, (row_tree, column_tree), won = saved.plan, saved.trees, saved.won
    h, row_width, row_step = geometry["x_shape"][2], geometry["row_width"], geometry["row_step"]
    row_length, column_length = geometry["row_length"], geometry["column_length"]

    # dy onto the window corners of an otherwise zero column-stage vector
    column_gradient = buffer("column_gradient", (geometry["planes"] * h * row_width,), dy.dtype)
    column_gradient.fill(0)
    corners = _corners(column_gradient, geometry, saved.stride, saved.channel_major)
    if saved.positive is not None:
        xp.multiply(dy, saved.positive, out=corners)
    else:
        corners[...] = dy

    # column stage: row i of a window is the row-stage vector shifted by i * row_width
    row_gradient = buffer("row_gradient", (row_length,), dy.dtype)
    if isinstance(column_tree, int):
        row_gradient[...] = column_gradient[:row_length]
    else:
        row_gradient[column_length:] = 0  # leaf 0, delivered first, writes the rest
        _route(xp, column_tree, column_gradient[:column_length], "column", won, buffer,
               lambda i: row_gradient[i * row_width : i * row_width + column_length], first_writes=True)

    # row stage: column j of a window is the image vector shifted by j
    n, c, hh, w = geometry["x_shape"]
    memory = buffer("dx", (c, n, hh, w) if saved.channel_major else (n, c, hh, w), dy.dtype)
    dx = memory.transpose(1, 0, 2, 3) if saved.channel_major else memory
    dx_flat = memory.reshape(-1)

    def row_target(j):
        return dx_flat[j : j + row_step * (row_length - 1) + 1 : row_step]

    if geometry["row_partition"]:
        _route(xp, row_tree, row_gradient, "row", won, buffer, row_target, all_write=True)
    elif row_step == 1 and not isinstance(row_tree, int):
        dx_flat[row_length:] = 0  # leaf 0, delivered first, writes dx_flat[:row_length]
        _route(xp, row_tree, row_gradient, "row", won, buffer, row_target, first_writes=True)
    else:
        dx_flat.fill(0)
        _route(xp, row_tree, row_gradient, "row", won, buffer, row_target)
    return dx


def _corners(array, geometry, stride, channel_major):
    """Window maxima at the windows' top-left corners, from a column-stage vector, as an
    (N, C, OH, OW) view (planes ordered as in x's memory, so the view is N-C swapped when channel-major)."""
    n, c, out_h, out_w = geometry["out_shape"]
    h, column_step = geometry["x_shape"][2], stride // geometry["row_step"]
    grid = array.reshape((c, n, h, geometry["row_width"]) if channel_major else (n, c, h, geometry["row_width"]))
    corners = grid[:, :, : stride * (out_h - 1) + 1 : stride, : column_step * (out_w - 1) + 1 : column_step]
    return corners.transpose(1, 0, 2, 3) if channel_major else corners


def _play(xp, tree, leaf, size, length, stage, dtype, buffer, won):
    """Maximum over a stage's tournament: a (size,) vector whose first `length` entries are valid; each match's
    result goes into `won` (None: an evaluation forward, which keeps none)."""
    if isinstance(tree, int):  # kernel width 1: the row stage is the image itself (size entries)
        return leaf(tree)

    def play(node, out):
        if isinstance(node, int):
            return leaf(node)
        left, right = play(node[0], None), play(node[1], None)
        if won is not None:
            won[(stage, node)] = xp.greater(right, left, out=buffer((stage, "won", node), (length,), xp.bool_))
        if out is None:
            out = buffer((stage, "max", node), (length,), dtype)
        return xp.maximum(left, right, out=out)

    result = buffer((stage, "result"), (size,), dtype)
    play(tree, result[:length])
    return result


def _route(xp, tree, gradient, stage, won, buffer, target, first_writes=False, all_write=False):
    """Send `gradient` down a stage's tournament into target(leaf) views.

    Leaves add into their targets, except: all_write (targets partition the output) writes
    every leaf; first_writes writes leaf 0, which this depth-first, left-first walk reaches first.
    A leaf that writes gets its gradient computed straight into its target (no extra copy).
    """
    def writes(leaf):
        return all_write or (first_writes and leaf == 0)

    def destination(node):
        """(array to compute the node's gradient into, whether it already is the leaf's target)."""
        if isinstance(node, int) and writes(node):
            return target(node), True
        return buffer((stage, "gradient", node), gradient.shape, gradient.dtype), False

    def route(node, g, in_target):
        if isinstance(node, int):
            if not writes(node):
                target(node)[...] += g
            elif not in_target:
                target(node)[...] = g
            return
        (right, right_in_target), (left, left_in_target) = destination(node[1]), destination(node[0])
        xp.multiply(g, won[(stage, node)], out=right)
        xp.subtract(g, right, out=left)
        route(node[0], left, left_in_target)
        route(node[1], right, right_in_target)

    route(tree, gradient, False)
