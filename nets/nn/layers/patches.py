"""im2col and col2im in the two layouts Conv2d's twins use (layers/conv.py), with the output size they share.

The column matrix of NCHW or channel-major images (im2col, col2im; the layout in conv.py's docstring):

    col: (K, N * OH * OW), K = C * KH * KW, rows (c, ki, kj), columns (n, oh, ow)

filled with one strided copy per kernel offset, each along image rows; col2im is its adjoint, one strided add per
offset. The patch matrix of channel-last images, (N, H, W, C) memory, where a pixel is C contiguous numbers: a row
per output pixel, so that the product with the weights comes out channel-last too:

    patches: (N * OH * OW, K), K = KH * KW * C, rows (n, oh, ow), columns (ki, kj, c)
    patches[(n, oh, ow), (ki, kj, c)] = image[n, oh * stride + ki, ow * stride + kj, c]

`patch_rows` fills it with one copy per kernel offset, each moving C-vectors for every sample and output pixel at
once (the reference's loop over offsets, nets/nn/reference/conv.py, with the channel axis last).
`add_patch_rows` is its adjoint: each entry added back to the pixel it was copied from, so pixels shared by
overlapping windows receive the sum, <patch_rows(x), p> == <x, add_patch_rows(p)>; it takes the entries grouped
by kernel offset, (KH * KW, N * OH * OW, C), so that each add runs over whole rows of C-vectors.
"""

from __future__ import annotations

import numpy

from backend import array_module

from nets.validate import whole as check_whole

__all__ = ["add_patch_rows", "col2im", "conv_output_size", "im2col", "offset_window", "patch_rows"]


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


def _offset(image, ki, kj, out_h, out_w, stride):
    """The strided view image[:, ki + stride * oh, kj + stride * ow, :] over all (oh, ow)."""
    return image[:, ki : ki + stride * (out_h - 1) + 1 : stride, kj : kj + stride * (out_w - 1) + 1 : stride, :]


def patch_rows(image, kh, kw, stride, out):
    """image: (N, H, W, C) C-contiguous -> out: (N * OH * OW, KH * KW * C) (or any array of that shape, e.g. a patch
    matrix's first K columns), the layout in the module docstring, by one copy per kernel offset; for a NumPy
    image one copy per kernel row instead, since the KW pixels of a window's row are KW * C contiguous numbers
    (NumPy's as_strided views them, overlapping, for every window at once)."""
    n, h, w, c = image.shape
    out_h, out_w = (h - kh) // stride + 1, (w - kw) // stride + 1
    if isinstance(image, numpy.ndarray) and isinstance(out, numpy.ndarray) and image.flags.c_contiguous:
        window_rows = out.reshape(n, out_h, out_w, kh, kw * c)
        step = image.itemsize
        for ki in range(kh):
            window_rows[:, :, :, ki] = numpy.lib.stride_tricks.as_strided(
                image[:, ki:], shape=(n, out_h, out_w, kw * c),
                strides=(h * w * c * step, stride * w * c * step, stride * c * step, step), writeable=False)
        return out
    windows = out.reshape(n, out_h, out_w, kh, kw, c)
    for ki in range(kh):
        for kj in range(kw):
            windows[:, :, :, ki, kj, :] = _offset(image, ki, kj, out_h, out_w, stride)
    return out


def add_patch_rows(offsets, out, kh, kw, stride):
    """The adjoint of patch_rows, from the patch matrix's entries grouped by kernel offset: offsets
    (KH * KW, N * OH * OW, C), offsets[(ki, kj), (n, oh, ow), c] = patches[(n, oh, ow), (ki, kj, c)] -> out
    (N, H, W, C) = 0, then each offset's entries added to the pixels they came from, one strided add per offset
    over whole rows of C-vectors."""
    n, h, w, c = out.shape
    out_h, out_w = (h - kh) // stride + 1, (w - kw) // stride + 1
    windows = offsets.reshape(kh, kw, n, out_h, out_w, c)
    out.fill(0)
    for ki in range(kh):
        for kj in range(kw):
            _offset(out, ki, kj, out_h, out_w, stride)[...] += windows[ki, kj]
    return out
