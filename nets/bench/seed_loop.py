"""The "from minutes to seconds" baseline: the course notebook's per-sample NumPy MLP loop."""

from __future__ import annotations

import time

import numpy

from nets.bench import EPOCH_IMAGES, NUM_CLASSES

SEED_LOOP_SIZES = (784, 128, 64, 10)


def seed_loop_epoch_seconds(samples: int) -> dict:
    """The course notebook's per-sample NumPy MLP (784-128-64-10, batch 1, SGD), a plain loop, extrapolated.

    Written the way a student would: float64 (NumPy's default), one image at a time, np.outer for the
    weight gradients.
    """
    rng = numpy.random.default_rng(0)
    x = rng.random((samples, SEED_LOOP_SIZES[0]))
    y = rng.integers(0, NUM_CLASSES, samples)
    sizes = SEED_LOOP_SIZES
    weights = [rng.standard_normal((o, i)) * numpy.sqrt(2.0 / i) for i, o in zip(sizes[:-1], sizes[1:])]
    biases = [numpy.zeros(o) for o in sizes[1:]]
    learning_rate = 0.01
    start = time.perf_counter()
    for i in range(samples):
        a0 = x[i]
        z1 = weights[0] @ a0 + biases[0]
        a1 = numpy.maximum(z1, 0)
        z2 = weights[1] @ a1 + biases[1]
        a2 = numpy.maximum(z2, 0)
        z3 = weights[2] @ a2 + biases[2]
        p = numpy.exp(z3 - z3.max())
        p /= p.sum()
        d3 = p.copy()
        d3[y[i]] -= 1.0
        d2 = (weights[2].T @ d3) * (z2 > 0)
        d1 = (weights[1].T @ d2) * (z1 > 0)
        weights[2] -= learning_rate * numpy.outer(d3, a2)
        biases[2] -= learning_rate * d3
        weights[1] -= learning_rate * numpy.outer(d2, a1)
        biases[1] -= learning_rate * d2
        weights[0] -= learning_rate * numpy.outer(d1, a0)
        biases[0] -= learning_rate * d1
    seconds = time.perf_counter() - start
    return {
        "samples": samples,
        "seconds": seconds,
        "epoch_seconds_extrapolated": seconds * EPOCH_IMAGES / samples,
        "dtype": "float64",
        "sizes": list(SEED_LOOP_SIZES),
    }
