"""How a layer's first weights are drawn: the one rule every builder (reference, fast, PyTorch twin) follows, so for
one seed all of them start from the same numbers."""

from __future__ import annotations

import numpy

__all__ = ["INITS", "he_or_torch_init"]

INITS = ("he", "torch")


def he_or_torch_init(rng, weight_shape, fan_in, init, dtype):
    """Host (numpy) weight and bias for a layer with `fan_in` inputs per output.

    init="he": weight ~ N(0, 1) * sqrt(2 / fan_in), bias = 0 (the course notebook's).
    init="torch": weight, bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), which is what PyTorch's
        kaiming_uniform_(a=sqrt(5)) and its bias rule give for nn.Linear and nn.Conv2d.
    Draws the weight first, then (torch only) the bias, from the numpy Generator `rng`.
    """
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose one of {', '.join(INITS)}.")
    dtype = numpy.dtype(dtype)
    out_features = weight_shape[0]
    if init == "he":
        weight = rng.standard_normal(weight_shape) * numpy.sqrt(2.0 / fan_in)
        bias = numpy.zeros(out_features)
    else:
        bound = 1.0 / numpy.sqrt(fan_in)
        weight = rng.uniform(-bound, bound, size=weight_shape)
        bias = rng.uniform(-bound, bound, size=out_features)
    return weight.astype(dtype), bias.astype(dtype)
