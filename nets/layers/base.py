"""The Layer base class: parameters, gradients, moving to a backend, reusable work buffers.

A layer is a plain object:
    params: dict[str, array]   "weight", "bias" (empty for parameter-free layers)
    grads:  dict[str, array]   same keys and shapes; overwritten in place by each backward
    forward(x, train=True) -> y          caches what backward needs, only when train
    backward(dy, need_input_grad=True) -> dx   (None when need_input_grad is False)

Arrays returned by forward and backward are fresh arrays the caller owns; only temporaries
that never leave the layer live in its work buffers (see `_buffer`).
"""

from __future__ import annotations

import numpy

__all__ = ["Layer", "he_or_torch_init"]

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


class Layer:
    """Common plumbing; subclasses implement forward and backward."""

    def __init__(self):
        self.params: dict = {}
        self.grads: dict = {}
        self._buffers: dict = {}

    def to(self, backend):
        """Move parameters (and gradient arrays) to `backend`; returns self."""
        for name, value in self.params.items():
            self.params[name] = backend.asarray(value)
            self.grads[name] = backend.xp.zeros_like(self.params[name])
        self._buffers.clear()
        return self

    def _buffer(self, key, xp, shape, dtype):
        """An uninitialised work array kept by the layer and reused while shape and dtype match.

        Allocating several-megabyte temporaries anew every step made glibc hand the pages back
        to the OS and fault them in again, which cost a large share of a step.
        """
        cached = self._buffers.get(key)
        if cached is not None:
            cached_xp, buffer = cached
            if cached_xp is xp and buffer.shape == tuple(shape) and buffer.dtype == dtype:
                return buffer
        buffer = xp.empty(shape, dtype=dtype)
        self._buffers[key] = (xp, buffer)
        return buffer

    def forward(self, x, train=True):
        raise NotImplementedError

    def backward(self, dy, need_input_grad=True):
        raise NotImplementedError

    def __call__(self, x, train=True):
        return self.forward(x, train=train)
