"""Index tables for the gather strategies: im2col and pooling windows as one `take`, and their adjoints.

On a GPU a step costs its kernel launches, so the device strategies of Conv2d and MaxPool2d move data
with one gather each instead of a loop of strided copies:

    im2col:   col     = take(x_memory, im2col_table)         (C*KH*KW, N*OH*OW) in one launch
    pooling:  windows = take(x_memory, window_table)         (KH*KW, N*C*OH*OW) in one launch

and run their adjoints (col2im, the pooling backward) as a gather and a sum over an inverse table that
lists, for every input element, where it went (padded with a cell holding zero):

    dx = take(gathered_gradient_with_zero_cell, inverse_table).sum(axis=0)     inverse: (copies, elements)

which is deterministic (no atomic adds) and needs no zero-filling. The reductions run down the leading axis
of a C-ordered matrix: on CuPy that is its own reduction kernel, one launch into an `out=` buffer, rather
than CUB's segmented reduction, which spends a thread block on each of hundreds of thousands of rows of
4-9 elements (and copies its result into `out=`). Tables are built once per input shape, layout and
direction, on the host with NumPy, and copied to the device once.

Inputs are (N, C, H, W) arrays stored NCHW-contiguous or channel-major (C, N, H, W memory, what the
convolution's products produce); `layout_of` tells which, and tables address that memory directly.
"""

from __future__ import annotations

import numpy

__all__ = ["device_table", "flat_memory", "from_flat", "inverse_table", "layout_of", "window_offsets"]


def layout_of(x) -> str | None:
    """"nchw" for a C-contiguous (N, C, H, W) array, "cnhw" for a channel-major one, else None."""
    if x.flags.c_contiguous:
        return "nchw"
    if x.transpose(1, 0, 2, 3).flags.c_contiguous:
        return "cnhw"
    return None


def flat_memory(x, layout):
    """x's memory as a 1-D view (free for either layout)."""
    return (x if layout == "nchw" else x.transpose(1, 0, 2, 3)).reshape(-1)


def from_flat(flat, shape, layout):
    """The (N, C, H, W) view of a flat array holding that shape in `layout`'s memory order."""
    n, c, h, w = shape
    if layout == "nchw":
        return flat.reshape(n, c, h, w)
    return flat.reshape(c, n, h, w).transpose(1, 0, 2, 3)


def _element_strides(shape, layout):
    n, c, h, w = shape
    return (c * h * w, h * w, w, 1) if layout == "nchw" else (h * w, n * h * w, w, 1)


def window_offsets(shape, layout, kernel, stride, padding):
    """Where every window element of a (N, C, H, W) input sits, for a KH x KW window every `stride` pixels.

    Returns (offsets, valid), both (N, C, KH, KW, OH, OW): offsets into x's memory (in `layout`), and
    whether the element is inside the image (False where it falls on the zero padding; its offset is 0).
    """
    n, c, h, w = shape
    kh, kw = kernel
    out_h = (h + 2 * padding - kh) // stride + 1
    out_w = (w + 2 * padding - kw) // stride + 1
    sn, sc, sh, sw = _element_strides(shape, layout)
    rows = (numpy.arange(kh)[:, None] + stride * numpy.arange(out_h)[None, :]) - padding  # (KH, OH)
    cols = (numpy.arange(kw)[:, None] + stride * numpy.arange(out_w)[None, :]) - padding  # (KW, OW)
    rows = rows[None, None, :, None, :, None]
    cols = cols[None, None, None, :, None, :]
    valid = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    offsets = (numpy.arange(n)[:, None, None, None, None, None] * sn
               + numpy.arange(c)[None, :, None, None, None, None] * sc
               + numpy.clip(rows, 0, h - 1) * sh + numpy.clip(cols, 0, w - 1) * sw)
    valid = numpy.broadcast_to(valid, offsets.shape)
    return numpy.where(valid, offsets, 0), valid


def inverse_table(sources, valid, size, positions, zero_index):
    """For each of `size` source elements, the positions in the gathered matrix that copied it.

    sources: (A, B) source offsets of a gathered matrix; valid: which of them are real (not padding);
    positions: (A, B) the flat position each entry has in the matrix the backward gathers from;
    zero_index: the position of a cell holding zero there, which pads the rows.
    Returns an int64 (size, width) table, width the most copies of any one element (1 when every
    element was copied at most once: then the adjoint is a plain gather, no sum); callers store its
    transpose, (width, size), for the reason in the module docstring.
    """
    sources = numpy.asarray(sources)[valid]
    positions = numpy.asarray(positions)[valid]
    order = numpy.argsort(sources, kind="stable")
    sources, positions = sources[order], positions[order]
    counts = numpy.bincount(sources, minlength=size)
    width = max(1, int(counts.max()) if counts.size else 1)
    starts = numpy.cumsum(counts) - counts
    rank = numpy.arange(sources.size) - starts[sources]
    table = numpy.full((size, width), zero_index, dtype=numpy.int64)
    table[sources, rank] = positions
    return table


def device_table(table, xp):
    """A host index table on the device, as int32 when every index fits (half the memory and bandwidth of a
    gather's indices; CuPy's take accepts either)."""
    table = numpy.asarray(table)
    if table.size and int(table.max()) < 2**31 and xp is not numpy:
        table = table.astype(numpy.int32)
    return xp.asarray(table)
