"""MaxPool2d: finite differences on tie-free inputs, exact torch agreement on inputs full of ties."""

import numpy
import pytest

from conftest import torch_or_skip
from layer_checks import check_layer_gradients, mnist_like_images, tie_free
from nets.nn.layers import MaxPool2d
from nets.nn.layers.base import TWINS, is_channel_last

POOL_CASES = [  # (kernel, stride)
    (2, 2), (2, 1), (3, 2), (3, 1), (2, 3), (3, 3), (1, 1), (1, 2), ((2, 3), 2), ((1, 2), 2), ((2, 1), 1)
]


@pytest.fixture(params=TWINS)
def twin(request):
    """Both twins (the cpu's tournaments, the gpu's gathers), forced on every backend (each is the default of one)."""
    return request.param


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("kernel, stride", POOL_CASES)
def test_pool_gradients_match_finite_differences(backend, kernel, stride, relu, twin):
    rng = numpy.random.default_rng(0)
    layer = MaxPool2d(kernel, stride, relu=relu)
    layer.twin = twin
    check_layer_gradients(layer, backend.asarray(tie_free(rng, (2, 3, 7, 8))), backend)


def torch_max_pool(x_host, dy_host, kernel, stride, relu=False):
    torch = torch_or_skip()
    x = torch.from_numpy(x_host).requires_grad_(True)
    y = torch.nn.functional.max_pool2d(torch.relu(x) if relu else x, kernel, stride)
    y.backward(torch.from_numpy(dy_host))
    return y.detach().numpy(), x.grad.numpy()


def tied_inputs(rng, dtype):
    """Mostly zeros and a handful of repeated small values: every window has ties."""
    relu_like = numpy.maximum(rng.integers(-3, 3, size=(3, 4, 9, 10)), 0).astype(dtype)
    mnist_like = mnist_like_images(rng, 3, size=10, channels=4)[:, :, :9, :].astype(dtype)
    return [relu_like, mnist_like, numpy.zeros((2, 2, 6, 6), dtype=dtype)]


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("kernel, stride", POOL_CASES)
def test_pool_with_ties_gives_exactly_torchs_gradient(backend, dtype, kernel, stride, relu, twin):
    rng = numpy.random.default_rng(1)
    for x_host in tied_inputs(rng, dtype):
        if relu:  # ties among negatives and at zero too
            x_host = x_host - numpy.asarray(1, dtype=dtype)
        layer = MaxPool2d(kernel, stride, relu=relu)
        layer.twin = twin
        y = layer.forward(backend.asarray(x_host))
        # small integers: every sum of gradients is exact, so any difference is a wrong pixel
        dy_host = rng.integers(1, 9, size=y.shape).astype(dtype)
        dx = layer.backward(backend.asarray(dy_host))
        y_torch, dx_torch = torch_max_pool(x_host, dy_host, kernel, stride, relu)
        assert y.dtype == dtype and dx.dtype == dtype
        numpy.testing.assert_array_equal(backend.to_numpy(y), y_torch)
        numpy.testing.assert_array_equal(backend.to_numpy(dx), dx_torch)


def test_ties_go_to_the_first_maximum_in_row_major_order(backend):
    x = numpy.array([[[[0.0, 1.0], [1.0, 1.0]]]])
    layer = MaxPool2d(2, 2)
    layer.forward(backend.asarray(x))
    dx = backend.to_numpy(layer.backward(backend.asarray(numpy.array([[[[5.0]]]]))))
    numpy.testing.assert_array_equal(dx, [[[[0.0, 5.0], [0.0, 0.0]]]])


def test_overlapping_windows_add_at_a_shared_maximum(backend):
    x = numpy.zeros((1, 1, 3, 3))
    x[0, 0, 1, 1] = 1.0  # the centre wins all four 2x2 windows of stride 1
    layer = MaxPool2d(2, 1)
    layer.forward(backend.asarray(x))
    dx = backend.to_numpy(layer.backward(backend.asarray(numpy.arange(1.0, 5.0).reshape(1, 1, 2, 2))))
    assert dx[0, 0, 1, 1] == 10.0 and dx.sum() == 10.0


def test_pool_shapes_dtype_and_errors(backend, dtype):
    layer = MaxPool2d(2, 1)
    assert layer.params == {} and layer.grads == {}
    y = layer.forward(backend.asarray(numpy.ones((2, 3, 11, 11), dtype=dtype)), train=False)
    assert y.shape == (2, 3, 10, 10) and y.dtype == dtype
    with pytest.raises(RuntimeError, match="forward"):
        layer.backward(y)
    assert MaxPool2d(2).stride == 2
    with pytest.raises(ValueError, match="smaller than the kernel"):
        layer.forward(backend.asarray(numpy.ones((1, 1, 1, 1), dtype=dtype)))


@pytest.mark.parametrize("layout", ["channel-major", "strided view"])
def test_pool_accepts_other_memory_layouts(backend, layout):
    rng = numpy.random.default_rng(2)
    x_host = numpy.maximum(rng.integers(-2, 3, size=(3, 4, 9, 12)), 0).astype("float64")
    dy_host = rng.integers(1, 9, size=(3, 4, 4, 6)).astype("float64")
    if layout == "channel-major":
        x = backend.xp.ascontiguousarray(backend.asarray(x_host).transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
    else:
        x = backend.asarray(numpy.pad(x_host, ((0, 0), (0, 0), (0, 0), (0, 3))))[..., :12]
    layer = MaxPool2d(2, 2)
    y = layer.forward(x)
    dx = layer.backward(backend.asarray(dy_host))
    y_torch, dx_torch = torch_max_pool(x_host, dy_host, 2, 2)
    numpy.testing.assert_array_equal(backend.to_numpy(y), y_torch)
    numpy.testing.assert_array_equal(backend.to_numpy(dx), dx_torch)


def test_pairing_tree_keeps_earlier_offsets_on_the_left():
    from nets.nn.layers.pooling import pairing_tree

    assert pairing_tree(1) == 0
    assert pairing_tree(4) == ((0, 1), (2, 3))
    assert pairing_tree(9) == ((((0, 1), (2, 3)), ((4, 5), (6, 7))), 8)


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("kernel, stride", POOL_CASES)
@pytest.mark.parametrize("layout", ["nchw", "channel-major"])
def test_the_two_twins_agree_exactly(backend, kernel, stride, relu, layout):
    rng = numpy.random.default_rng(2)
    x_host = rng.integers(-2, 3, size=(2, 3, 7, 8)).astype(numpy.float64)  # ties everywhere
    results = {}
    for twin in TWINS:
        layer = MaxPool2d(kernel, stride, relu=relu)
        layer.twin = twin
        x = backend.asarray(x_host)
        if layout == "channel-major":
            x = backend.xp.ascontiguousarray(x.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
        y = layer.forward(x)
        dy = backend.asarray(numpy.random.default_rng(3).integers(1, 9, size=y.shape).astype(numpy.float64))
        dx = layer.backward(dy)
        if twin == "gpu":
            assert dx.flags.c_contiguous == (layout == "nchw")  # dx keeps x's layout
        else:
            assert is_channel_last(y) and is_channel_last(dx)  # the cpu twin works channel-last, whatever x's layout
        results[twin] = [backend.to_numpy(a).copy() for a in (y, dx)]
    for ours, theirs in zip(results["cpu"], results["gpu"]):
        numpy.testing.assert_array_equal(ours, theirs)
    assert MaxPool2d(2).twin_for(backend.asarray(numpy.zeros(1))) == ("gpu" if backend.is_gpu else "cpu")


@pytest.mark.parametrize("kernel, stride, message", [
    (0, None, "MaxPool2d kernel_size must be a whole number >= 1, got 0."),
    ((2, 0), 1, "MaxPool2d kernel_size must be a whole number >= 1, got 0."),
    (2, 0, "MaxPool2d stride must be a whole number >= 1, got 0."),
    (2, -1, "MaxPool2d stride must be a whole number >= 1, got -1."),
])
def test_impossible_pools_are_refused_in_one_sentence(kernel, stride, message):
    with pytest.raises(ValueError) as info:
        MaxPool2d(kernel, stride)
    assert str(info.value) == message


@pytest.mark.parametrize("shape", [(0, 3, 4, 4), (2, 0, 4, 4)])
def test_an_empty_batch_is_refused_in_one_sentence(backend, shape):
    with pytest.raises(ValueError) as info:
        MaxPool2d(2, relu=True).forward(backend.asarray(numpy.zeros(shape, dtype=numpy.float32)))
    assert str(info.value) == (f"MaxPool2d got an empty input of shape {shape}; "
                               "pass at least one image and channel.")
