"""MaxPool2d's cpu twin: window maxima as knockout tournaments over strided views of channel-last images, as
module functions.

Read nets/nn/reference/pooling.py first. It computes the same numbers (each window's FIRST maximum wins, and
dy goes back to it) by copying every window out, which is clear but slow on a CPU. Here the image is held
channel-last, (N, H, W, C) memory, so a pixel is C contiguous numbers and every pass moves whole C-vectors:

1. Separable. The maximum of a KH x KW window is the maximum over its KH rows of the maxima over its KW
   columns, so forward runs a row stage (along each row: the maximum over KW neighbouring columns), then a
   column stage (the maximum of KH of those, from neighbouring rows).
2. Views instead of windows. Offset j of every window along a row is one strided view of the image,
   x[:, :, j :: stride] (its first OW columns): "the pixel j columns to the right" of every window's corner at
   once; in the column stage, row i of every window is the row stage's result viewed i rows down. A stage is a
   few element-wise passes over whole images, each inner loop a run of C numbers (stride > 1) or a whole row of
   OW * C numbers (stride 1).
3. A knockout tournament keeps the first maximum. A stage's offsets play in pairs (`pairing_tree`): with
   kernel 3 the tree is ((0, 1), 2): offset 0 plays 1, and the winner plays 2. The right player (the later
   offset) wins only when STRICTLY greater, so among equal values the earliest offset wins; and the row stage
   runs first, so a tie between rows goes to the upper one, as row-major order wants. Forward keeps each
   match's result as a boolean array, won[(stage, node)] = right > left.
4. Backward routes dy down the same matches. The gradient g reaching a match splits exactly into
   right = g * won and left = g - right (one of them is g, the other 0). The column stage's leaves fill the
   row stage's gradient; each row-stage leaf j adds its share into dx viewed j columns to the right, so
   windows that overlap add up there (where the leaves' views partition dx, they write instead of adding, and
   the first leaf writes where the others only add, saving a pass of zeros).

One row, kernel 2, stride 1, x = [3, 5, 5, 1]: the leaves are offset 0, [3, 5, 5], and offset 1, [5, 5, 1];
won = [T, F, F] and the maxima are [5, 5, 5] (the tie in window 1 goes to offset 0, that is pixel 1). Backward
with dy = [a, b, c]: right = [a, 0, 0] is added into dx[1:4], left = [0, b, c] written into dx[0:3], so
dx = [0, a + b, c, 0]: pixel 1 won windows 0 and 1, pixel 2 window 2.

With relu=True, y = max(maxpool(x), 0) (the rectification rides on the last pass) and dy passes only where
y > 0 (see MaxPool2d).

    y, saved = pool_forward(x, kernel, stride, relu, buffer, train)   # y channel-last; saved: for backward
    dx = pool_backward(dy, saved, buffer)                             # dx channel-last

`buffer(key, shape, dtype)` hands out the work arrays (MaxPool2d passes its own kept buffers), so a step allocates
nothing. x and dy may be in any memory layout; anything but channel-last is copied to it first.
"""

from __future__ import annotations

from dataclasses import dataclass

from nets.nn.layers.base import is_channel_last, module_of
from nets.nn.layers.conv import conv_output_size

__all__ = ["Saved", "channel_last", "pairing_tree", "pool_backward", "pool_forward"]


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
    """What a training pool_forward keeps for pool_backward: x's shape (N, C, H, W), the trees of the row and column
    stages, the results of the matches (won[(stage, node)] = right > left) and, with relu, where y > 0 (else
    None)."""

    x_shape: tuple
    trees: tuple
    stride: int
    won: dict
    positive: object


def channel_last(x, buffer, key):
    """The (N, H, W, C) memory of an (N, C, H, W) array: a free view when x is channel-last, else a copy into the
    buffer `key`."""
    if is_channel_last(x):
        return x.transpose(0, 2, 3, 1)
    n, c, h, w = x.shape
    memory = buffer(key, (n, h, w, c), x.dtype)
    memory[...] = x.transpose(0, 2, 3, 1)
    return memory


def _leaf(array, axis, offset, count, stride):
    """array viewed `offset` steps along axis 1 (rows) or 2 (columns): its entries offset, offset + stride, ...,
    `count` of them."""
    index = [slice(None)] * 4
    index[axis] = slice(offset, offset + stride * (count - 1) + 1, stride)
    return array[tuple(index)]


def pool_forward(x, kernel, stride, relu, buffer, train, trees=None):
    """x: (N, C, H, W) -> (y: an (N, C, OH, OW) view of channel-last memory, Saved or None): a row stage, then a
    column stage (rectified on its last pass when relu). trees: (pairing_tree(KW), pairing_tree(KH)), if made."""
    xp = module_of(x)
    (kh, kw), (n, c, h, w) = kernel, x.shape
    out_h, out_w = conv_output_size(h, kh, stride, 0), conv_output_size(w, kw, stride, 0)
    row_tree, column_tree = trees or (pairing_tree(kw), pairing_tree(kh))
    image = channel_last(x, buffer, "x")
    won = {} if train else None
    rows = buffer("row_max", (n, h, out_w, c), x.dtype)
    _play(xp, row_tree, lambda j: _leaf(image, 2, j, out_w, stride), rows, "row", buffer, won)
    y = buffer("y", (n, out_h, out_w, c), x.dtype)  # training and evaluation alike: backward never reads it
    _play(xp, column_tree, lambda i: _leaf(rows, 1, i, out_h, stride), y, "column", buffer, won)
    positive = None
    if relu:
        xp.maximum(y, 0, out=y)
        if train:
            positive = xp.greater(y, 0, out=buffer("positive", y.shape, xp.bool_))
    saved = Saved(tuple(x.shape), (row_tree, column_tree), stride, won, positive) if train else None
    return y.transpose(0, 3, 1, 2), saved


def pool_backward(dy, saved: Saved, buffer):
    """dy: (N, C, OH, OW), any layout -> dx: an (N, C, H, W) view of channel-last memory: dy down the column stage's
    matches into the row stage's gradient, then down the row stage's into dx."""
    xp = module_of(dy)
    (row_tree, column_tree), stride, (n, c, h, w) = saved.trees, saved.stride, saved.x_shape
    out_h, out_w = dy.shape[2:]
    gradient = buffer("gradient", (n, out_h, out_w, c), dy.dtype)
    if saved.positive is not None:
        xp.multiply(dy.transpose(0, 2, 3, 1), saved.positive, out=gradient)
    else:
        gradient[...] = dy.transpose(0, 2, 3, 1)
    rows = buffer("row_gradient", (n, h, out_w, c), dy.dtype)
    _route_stage(xp, column_tree, gradient, rows, 1, out_h, stride, "column", saved.won, buffer)
    dx = buffer("dx", (n, h, w, c), dy.dtype)
    _route_stage(xp, row_tree, rows, dx, 2, out_w, stride, "row", saved.won, buffer)
    return dx.transpose(0, 3, 1, 2)


def _play(xp, tree, leaf, out, stage, buffer, won):
    """The maximum over a stage's tournament into `out`; each match's result into `won` (None: an evaluation
    forward, which keeps none)."""
    if isinstance(tree, int):  # a kernel of 1 along this axis: the stage is a copy
        out[...] = leaf(tree)
        return

    def play(node, into):
        if isinstance(node, int):
            return leaf(node)
        left, right = play(node[0], None), play(node[1], None)
        if won is not None:
            won[(stage, node)] = xp.greater(right, left, out=buffer((stage, "won", node), out.shape, xp.bool_))
        if into is None:
            into = buffer((stage, "max", node), out.shape, out.dtype)
        return xp.maximum(left, right, out=into)

    play(tree, out)


def _route_stage(xp, tree, gradient, target, axis, count, stride, stage, won, buffer):
    """Send a stage's `gradient` down its tournament into `target`, leaf k's share into target viewed k steps along
    `axis`. The views partition target when stride equals the kernel and covers it exactly: every leaf writes.
    With stride 1, leaf 0 writes its view and the rest of target is zeroed; otherwise target is zeroed and every
    leaf adds."""
    leaves = _leaf_count(tree)
    size = target.shape[axis]
    if stride == leaves and stride * count == size:
        all_write, first_writes = True, False
    elif stride == 1:
        all_write, first_writes = False, True
        _leaf(target, axis, count, size - count, 1)[...] = 0  # what leaf 0's view leaves out
    else:
        all_write = first_writes = False
        target.fill(0)
    _route(xp, tree, gradient, stage, won, buffer, lambda k: _leaf(target, axis, k, count, stride),
           first_writes=first_writes, all_write=all_write)


def _leaf_count(tree) -> int:
    return 1 if isinstance(tree, int) else _leaf_count(tree[0]) + _leaf_count(tree[1])


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
