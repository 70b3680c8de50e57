"""Helpers shared by the layer, loss and model tests: finite differences, torch comparison, test images."""

from __future__ import annotations

import numpy


def numerical_gradient(scalar_function, array, eps=1e-6):
    """Central-difference gradient of scalar_function() with respect to `array`, perturbed in place.

    array: a float64 array of any backend; returns a host numpy array of its shape.
    """
    gradient = numpy.zeros(array.shape)
    for index in numpy.ndindex(*array.shape):
        original = float(array[index])
        array[index] = original + eps
        plus = float(scalar_function())
        array[index] = original - eps
        minus = float(scalar_function())
        array[index] = original
        gradient[index] = (plus - minus) / (2 * eps)
    return gradient


def check_layer_gradients(layer, x, backend, rtol=1e-6, atol=1e-8, seed=0):
    """Compare layer.backward with finite differences of sum(forward(x) * r), for x and every parameter."""
    rng = numpy.random.default_rng(seed)
    y = layer.forward(x, train=True)
    weights = backend.asarray(rng.standard_normal(y.shape))
    dx = layer.backward(weights)
    analytic = {"input": backend.to_numpy(dx).copy()}
    analytic.update({name: backend.to_numpy(grad).copy() for name, grad in layer.grads.items()})

    def loss():
        return (layer.forward(x, train=False) * weights).sum()

    numeric = {"input": numerical_gradient(loss, x)}
    for name, param in layer.params.items():
        numeric[name] = numerical_gradient(loss, param)
    for name in numeric:
        numpy.testing.assert_allclose(analytic[name], numeric[name], rtol=rtol, atol=atol, err_msg=name)


def relative_error(ours, theirs):
    """max |ours - theirs| / max |theirs|: the error measured against the tensor's own scale."""
    ours, theirs = numpy.asarray(ours, dtype=numpy.float64), numpy.asarray(theirs, dtype=numpy.float64)
    scale = numpy.abs(theirs).max() if theirs.size else 0.0
    difference = numpy.abs(ours - theirs).max() if theirs.size else 0.0
    return difference / scale if scale > 0 else difference


def parity_tolerance(dtype):
    """The agreed bound on relative_error against PyTorch: 1e-10 in float64, 1e-4 in float32."""
    return 1e-10 if numpy.dtype(dtype) == numpy.float64 else 1e-4


def tie_free(rng, shape, spacing=0.01):
    """Values that are all distinct by at least `spacing` (and never 0), in random order."""
    size = int(numpy.prod(shape))
    values = (rng.permutation(size) - size / 2 + 0.5) * spacing
    return values.reshape(shape)


def mnist_like_images(rng, count, size=28, channels=1):
    """(count, channels, size, size) images that are mostly exact zeros with a few blobs in [0, 1],
    quantised to k/255 and clipped at 1, so they are full of exact ties like real MNIST digits."""
    rows, cols = numpy.mgrid[0:size, 0:size]
    images = numpy.zeros((count, channels, size, size))
    for image in images.reshape(count * channels, size, size):
        for _ in range(rng.integers(2, 5)):
            centre_row, centre_col = rng.uniform(size * 0.2, size * 0.8, 2)
            radius = rng.uniform(1.0, max(1.5, size / 6))
            blob = 1.6 * numpy.exp(-((rows - centre_row) ** 2 + (cols - centre_col) ** 2) / (2 * radius**2))
            image += numpy.where(blob > 0.1, blob, 0.0)
    return numpy.round(numpy.clip(images, 0.0, 1.0) * 255) / 255
