"""Every layer, the loss and both models run through the CuPy-API stand-in and match plain NumPy.

The stand-in computes with NumPy but refuses any xp.<name> CuPy lacks, so a layer that passes here
runs on CuPy exactly as written. Skips only where cupy cannot be imported.
"""

import numpy
import pytest

from backend import forced_array_module, get_backend
from layer_checks import mnist_like_images, tie_free
from nets.layers import Conv2d, Flatten, Linear, MaxPool2d, ReLU, col2im, im2col
from nets.losses import softmax_cross_entropy
from nets.models import CNN, MLP

CPU = get_backend("cpu")


def layer_cases():
    rng = numpy.random.default_rng(0)
    return [
        ("linear", lambda: Linear(6, 4, rng=numpy.random.default_rng(1)).to(CPU), rng.standard_normal((3, 6))),
        ("conv", lambda: Conv2d(2, 3, 3, rng=numpy.random.default_rng(1)).to(CPU), rng.standard_normal((2, 2, 7, 7))),
        ("conv-s2-p1", lambda: Conv2d(2, 3, 3, 2, 1, rng=numpy.random.default_rng(1)).to(CPU), rng.standard_normal((2, 2, 7, 7))),
        ("conv-1ch", lambda: Conv2d(1, 4, 3, rng=numpy.random.default_rng(1)).to(CPU), rng.standard_normal((2, 1, 8, 8))),
        ("pool-2-2", lambda: MaxPool2d(2, 2), tie_free(rng, (2, 3, 6, 6))),
        ("pool-2-1", lambda: MaxPool2d(2, 1), mnist_like_images(rng, 2, size=8)),
        ("pool-3-2", lambda: MaxPool2d(3, 2), tie_free(rng, (2, 3, 7, 7))),
        ("relu-pool-2-2", lambda: MaxPool2d(2, 2, relu=True), tie_free(rng, (2, 3, 6, 6))),
        ("relu", ReLU, rng.standard_normal((3, 5))),
        ("flatten", Flatten, rng.standard_normal((2, 3, 2, 2))),
    ]


def forward_backward(make_layer, x, dtype):
    layer = make_layer()
    for name, value in layer.params.items():
        layer.params[name] = value.astype(dtype)
        layer.grads[name] = numpy.zeros_like(layer.params[name])
    y = layer.forward(x.astype(dtype))
    dy = numpy.random.default_rng(2).standard_normal(y.shape).astype(dtype)
    dx = layer.backward(dy)
    return [y.copy(), dx.copy(), *(g.copy() for g in layer.grads.values())]


@pytest.mark.parametrize("name, make_layer, x", layer_cases(), ids=[case[0] for case in layer_cases()])
def test_layers_run_through_the_standin(cupy_standin, dtype, name, make_layer, x):
    expected = forward_backward(make_layer, x, dtype)
    with forced_array_module(cupy_standin):
        got = forward_backward(make_layer, x, dtype)
    if name != "flatten":  # Flatten only reshapes; it never needs xp
        assert cupy_standin.names_used, "the stand-in was never consulted"
    for ours, reference in zip(got, expected):
        assert ours.dtype == dtype
        numpy.testing.assert_array_equal(ours, reference)


def test_im2col_col2im_run_through_the_standin(cupy_standin):
    x = numpy.random.default_rng(3).standard_normal((2, 3, 6, 6))
    expected = col2im(im2col(x, 3, 3, 2, 1), x.shape, 3, 3, 2, 1)
    with forced_array_module(cupy_standin):
        got = col2im(im2col(x, 3, 3, 2, 1), x.shape, 3, 3, 2, 1)
    assert cupy_standin.names_used
    numpy.testing.assert_array_equal(got, expected)


def test_loss_runs_through_the_standin(cupy_standin, dtype):
    logits = numpy.random.default_rng(4).standard_normal((5, 10)).astype(dtype)
    labels = numpy.array([0, 9, 3, 3, 1])
    expected = softmax_cross_entropy(logits, labels)
    with forced_array_module(cupy_standin):
        got = softmax_cross_entropy(logits, labels)
    assert cupy_standin.names_used
    for ours, reference in zip(got, expected):
        numpy.testing.assert_array_equal(ours, reference)


@pytest.mark.parametrize("model_class", [MLP, CNN])
def test_models_run_through_the_standin(cupy_standin, dtype, model_class):
    rng = numpy.random.default_rng(5)
    images = mnist_like_images(rng, 6)
    labels = rng.integers(0, 10, size=6)

    def run():
        model = model_class(backend=CPU, dtype=dtype, rng=numpy.random.default_rng(6))
        x = images.reshape((6, *model.input_shape))
        loss, logits = model.loss_and_gradients(x, labels)
        return [loss, logits, *(g.copy() for g in model.gradients().values())]

    expected = run()
    with forced_array_module(cupy_standin):
        got = run()
    assert cupy_standin.names_used
    for ours, reference in zip(got, expected):
        numpy.testing.assert_array_equal(ours, reference)
