"""im2col / col2im and Conv2d: layout, adjointness, finite differences, parity with torch."""

import numpy
import pytest

from conftest import torch_or_skip
from layer_checks import check_layer_gradients, mnist_like_images, parity_tolerance, relative_error, tie_free
from nets.nn.layers import Conv2d, col2im, im2col
from nets.nn.layers import gather
from nets.nn.layers.base import TWINS, is_channel_last

CONV_CASES = [  # (in_channels, out_channels, kernel, stride, padding, height, width)
    (1, 4, 3, 1, 0, 7, 7),
    (3, 4, 3, 2, 1, 7, 6),
    (2, 3, 3, 1, 1, 5, 5),
    (2, 3, 2, 2, 0, 6, 7),
    (3, 2, (2, 3), 1, 0, 5, 6),
]


def reference_im2col(x, kh, kw, stride, padding):
    """Pixel-by-pixel im2col straight from the documented layout (slow, for tests only)."""
    n, c, h, w = x.shape
    padded = numpy.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    out_h = (h + 2 * padding - kh) // stride + 1
    out_w = (w + 2 * padding - kw) // stride + 1
    col = numpy.zeros((c, kh, kw, n, out_h, out_w), dtype=x.dtype)
    for ci, ki, kj, ni, oh, ow in numpy.ndindex(*col.shape):
        col[ci, ki, kj, ni, oh, ow] = padded[ni, ci, oh * stride + ki, ow * stride + kj]
    return col.reshape(c * kh * kw, n * out_h * out_w)


@pytest.mark.parametrize("kh, kw, stride, padding", [(3, 3, 1, 0), (3, 3, 2, 1), (2, 3, 2, 0), (1, 1, 1, 0)])
def test_im2col_matches_the_documented_layout(backend, dtype, kh, kw, stride, padding):
    x = numpy.random.default_rng(1).standard_normal((2, 3, 5, 6)).astype(dtype)
    col = im2col(backend.asarray(x), kh, kw, stride, padding)
    assert col.dtype == dtype
    numpy.testing.assert_array_equal(backend.to_numpy(col), reference_im2col(x, kh, kw, stride, padding))


@pytest.mark.parametrize(
    "x_shape, kh, kw, stride, padding",
    [
        ((2, 3, 7, 7), 3, 3, 1, 0),
        ((2, 3, 7, 7), 3, 3, 2, 1),
        ((1, 2, 8, 5), 3, 2, 1, 1),
        ((3, 1, 6, 6), 2, 2, 2, 0),
        ((2, 2, 9, 9), 3, 3, 3, 2),
        ((2, 4, 5, 5), 5, 5, 1, 2),
    ],
)
def test_col2im_is_the_adjoint_of_im2col(backend, x_shape, kh, kw, stride, padding):
    rng = numpy.random.default_rng(2)
    x = backend.asarray(rng.standard_normal(x_shape))
    col = im2col(x, kh, kw, stride, padding)
    y = backend.asarray(rng.standard_normal(col.shape))
    left = float((col * y).sum())
    right = float((x * col2im(y, x_shape, kh, kw, stride, padding)).sum())
    assert left == pytest.approx(right, rel=1e-12, abs=1e-12)


def test_col2im_adds_overlapping_windows(backend):
    """A stride-1 3x3 im2col copies the centre of a 5x5 image 9 times; col2im of ones counts the copies."""
    ones = backend.asarray(numpy.ones((9, 9)))
    counts = backend.to_numpy(col2im(ones, (1, 1, 5, 5), 3, 3, 1, 0))[0, 0]
    assert counts[2, 2] == 9 and counts[0, 0] == 1 and counts[0, 2] == 3


def test_too_small_input_is_a_clear_error():
    with pytest.raises(ValueError, match="smaller than the kernel"):
        im2col(numpy.zeros((1, 1, 2, 2)), 3, 3)


@pytest.fixture(params=TWINS)
def twin(request):
    """Both twins (the cpu's strided copies, the gpu's gathers), forced on every backend (each is the default of
    one)."""
    return request.param


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("layout", ["nchw", "channel-last"])
def test_conv_gradients_match_finite_differences(backend, case, product_mode, twin, layout):
    c, f, kernel, stride, padding, h, w = case
    rng = numpy.random.default_rng(3)
    layer = Conv2d(c, f, kernel, stride, padding, rng=rng, init="torch", dtype="float64").to(backend)
    layer.twin = twin
    x = in_layout(backend, backend.asarray(tie_free(rng, (2, c, h, w))), layout)
    check_layer_gradients(layer, x, backend)


@pytest.fixture(params=["one product", "column blocks"])
def product_mode(request, monkeypatch):
    """Run Conv2d's matrix products both as one call and in (tiny) column blocks."""
    from nets.nn.layers import conv

    if request.param == "one product":
        monkeypatch.setattr(conv, "THIN_MATRIX_ENTRIES", 0)
    else:
        monkeypatch.setattr(conv, "THIN_MATRIX_ENTRIES", 10**9)
        monkeypatch.setattr(conv, "BLOCK_COLUMNS", 7)
    return request.param


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_matches_torch(backend, dtype, case, product_mode, twin):
    torch = torch_or_skip()
    c, f, kernel, stride, padding, h, w = case
    rng = numpy.random.default_rng(4)
    layer = Conv2d(c, f, kernel, stride, padding, rng=rng, init="torch", dtype=dtype).to(backend)
    layer.twin = twin
    x_host = mnist_like_images(rng, 3, size=max(h, w), channels=c)[:, :, :h, :w].astype(dtype)
    y = layer.forward(backend.asarray(x_host))
    dy_host = rng.standard_normal(y.shape).astype(dtype)
    dx = layer.backward(backend.asarray(dy_host))

    reference = torch.nn.Conv2d(c, f, kernel, stride, padding).to(getattr(torch, str(dtype)))
    with torch.no_grad():
        reference.weight.copy_(torch.from_numpy(backend.to_numpy(layer.params["weight"])))
        reference.bias.copy_(torch.from_numpy(backend.to_numpy(layer.params["bias"])))
    x_torch = torch.from_numpy(x_host).requires_grad_(True)
    y_torch = reference(x_torch)
    y_torch.backward(torch.from_numpy(dy_host))

    tolerance = parity_tolerance(dtype)
    assert y.dtype == dtype and dx.dtype == dtype
    assert relative_error(backend.to_numpy(y), y_torch.detach().numpy()) < tolerance
    assert relative_error(backend.to_numpy(dx), x_torch.grad.numpy()) < tolerance
    assert relative_error(backend.to_numpy(layer.grads["weight"]), reference.weight.grad.numpy()) < tolerance
    assert relative_error(backend.to_numpy(layer.grads["bias"]), reference.bias.grad.numpy()) < tolerance


def test_conv_keeps_dtype_and_can_skip_the_input_gradient(backend, dtype):
    rng = numpy.random.default_rng(5)
    layer = Conv2d(2, 3, 3, rng=rng, dtype=dtype).to(backend)
    assert layer.params["weight"].dtype == dtype and layer.grads["bias"].dtype == dtype
    y = layer.forward(backend.asarray(rng.standard_normal((2, 2, 6, 6)).astype(dtype)))
    assert y.shape == (2, 3, 4, 4) and y.dtype == dtype
    assert layer.backward(backend.xp.ones_like(y), need_input_grad=False) is None
    assert layer.grads["weight"].dtype == dtype and layer.grads["weight"].shape == (3, 2, 3, 3)


def test_conv_forward_without_train_caches_nothing(backend):
    layer = Conv2d(1, 2, 3, rng=numpy.random.default_rng(0), dtype="float64").to(backend)
    y = layer.forward(backend.asarray(numpy.ones((1, 1, 4, 4))), train=False)
    with pytest.raises(RuntimeError, match="forward"):
        layer.backward(y)


def in_layout(backend, x, layout):
    """The same (N, C, H, W) values stored NCHW, channel-major (C, N, H, W) or channel-last (N, H, W, C)."""
    order = {"nchw": (0, 1, 2, 3), "channel-major": (1, 0, 2, 3), "channel-last": (0, 2, 3, 1)}[layout]
    back = tuple(order.index(axis) for axis in range(4))
    return backend.xp.ascontiguousarray(x.transpose(order)).transpose(back)


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("layout", ["nchw", "channel-major", "channel-last"])
def test_the_two_twins_agree_exactly_on_integers(backend, case, layout):
    """Small integers make every sum exact, so the cpu and gpu twins must agree bit for bit, whatever x's layout:
    the gpu twin gives dx in x's layout (NCHW for a channel-last x, which it copies so), the cpu twin in x's for
    NCHW or channel-major x and channel-last for a channel-last one; y comes channel-last from the cpu twin. The
    default is the gpu twin on a device, the cpu twin on the host."""
    c, f, kernel, stride, padding, h, w = case
    rng = numpy.random.default_rng(6)
    x_host = rng.integers(-3, 4, size=(3, c, h, w)).astype(numpy.float64)
    results = {}
    for twin in TWINS:
        layer = Conv2d(c, f, kernel, stride, padding, rng=numpy.random.default_rng(7), dtype="float64").to(backend)
        weights = numpy.random.default_rng(9).integers(-2, 3, size=layer.params["weight"].shape)
        layer.params["weight"][...] = backend.asarray(weights.astype(numpy.float64))
        layer.twin = twin
        x = in_layout(backend, backend.asarray(x_host), layout)
        y = layer.forward(x)
        dy = backend.asarray(numpy.random.default_rng(8).integers(-3, 4, size=y.shape).astype(numpy.float64))
        dx = layer.backward(dy)
        if twin == "cpu":
            assert is_channel_last(y) and (is_channel_last(dx) if layout == "channel-last" else
                                           gather.layout_of(dx) == gather.layout_of(x))
        else:
            assert gather.layout_of(dx) == (gather.layout_of(x) or "nchw")
        results[twin] = [backend.to_numpy(a).copy() for a in (y, dx, layer.grads["weight"], layer.grads["bias"])]
    for ours, theirs in zip(results["cpu"], results["gpu"]):
        numpy.testing.assert_array_equal(ours, theirs)
    assert Conv2d(1, 1, 3, rng=numpy.random.default_rng(0)).twin_for(backend.asarray(numpy.zeros(1))) == (
        "gpu" if backend.is_gpu else "cpu")


@pytest.mark.parametrize("changes, message", [
    ({"stride": 0}, "Conv2d stride must be a whole number >= 1, got 0."),
    ({"kernel_size": 0}, "Conv2d kernel_size must be a whole number >= 1, got 0."),
    ({"kernel_size": (3, 0)}, "Conv2d kernel_size must be a whole number >= 1, got 0."),
    ({"kernel_size": (3, 3, 3)}, "Conv2d kernel_size must be one number or two (height, width), got (3, 3, 3)."),
    ({"padding": -1}, "Conv2d padding must be a whole number >= 0, got -1."),
    ({"in_channels": 0}, "Conv2d in_channels must be a whole number >= 1, got 0."),
    ({"out_channels": 2.5}, "Conv2d out_channels must be a whole number >= 1, got 2.5."),
])
def test_conv2d_refuses_impossible_geometry_in_one_sentence(changes, message):
    arguments = {"in_channels": 1, "out_channels": 2, "kernel_size": 3, "stride": 1, "padding": 0, **changes}
    with pytest.raises(ValueError) as info:
        Conv2d(**arguments, rng=numpy.random.default_rng(0))
    assert str(info.value) == message


@pytest.mark.parametrize("kernel, stride, padding, message", [
    (3, 0, 0, "the stride must be a whole number >= 1, got 0."),
    (0, 1, 0, "the kernel size must be a whole number >= 1, got 0."),
    (3, 1, -2, "the padding must be a whole number >= 0, got -2."),
])
def test_im2col_and_conv_output_size_refuse_impossible_geometry(kernel, stride, padding, message):
    from nets.nn.layers import conv_output_size

    with pytest.raises(ValueError) as info:
        conv_output_size(7, kernel, stride, padding)
    assert str(info.value) == message
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        im2col(numpy.zeros((1, 1, 7, 7)), kernel, kernel, stride, padding)


@pytest.mark.parametrize("kh, kw, stride", [(3, 3, 1), (2, 3, 2), (1, 1, 1), (3, 2, 3)])
def test_the_patch_matrix_and_its_adjoint(backend, kh, kw, stride):
    """patch_rows lays channel-last windows out as rows (columns (ki, kj, c)), the same numbers im2col puts in
    columns; add_patch_rows, fed the entries grouped by kernel offset, is its adjoint."""
    from nets.nn.layers.patches import add_patch_rows, patch_rows

    rng = numpy.random.default_rng(11)
    x_host = rng.standard_normal((2, 3, 7, 8))
    image = backend.xp.ascontiguousarray(backend.asarray(x_host).transpose(0, 2, 3, 1))
    out_h, out_w = (7 - kh) // stride + 1, (8 - kw) // stride + 1
    rows = patch_rows(image, kh, kw, stride, backend.xp.empty((2 * out_h * out_w, kh * kw * 3)))
    col = reference_im2col(x_host, kh, kw, stride, 0).reshape(3, kh, kw, 2 * out_h * out_w)
    numpy.testing.assert_array_equal(backend.to_numpy(rows), col.transpose(3, 1, 2, 0).reshape(rows.shape))
    y_host = rng.standard_normal(rows.shape)
    offsets = backend.asarray(y_host.reshape(-1, kh * kw, 3).transpose(1, 0, 2).copy())
    dx = add_patch_rows(offsets, backend.xp.empty((2, 7, 8, 3)), kh, kw, stride)
    left = float((backend.to_numpy(rows) * y_host).sum())
    assert left == pytest.approx(float((x_host.transpose(0, 2, 3, 1) * backend.to_numpy(dx)).sum()), rel=1e-12)
