"""The Layer base class: parameters, gradients, moving to a backend, reusable work buffers.

A layer is a plain object:
    params: dict[str, array]   "weight", "bias" (empty for parameter-free layers)
    grads:  dict[str, array]   same keys and shapes; overwritten in place by each backward
    forward(x, train=True) -> y          caches what backward needs, only when train (an evaluation
                                         forward in between leaves the training cache alone)
    backward(dy, need_input_grad=True) -> dx   (None when need_input_grad is False)

Results are fresh arrays unless `reuse_outputs` is set (models set it for their layers): then
forward(train=True) and backward return arrays the layer owns and overwrites on its next call.
Temporaries that never leave the layer always live in its work buffers (see `_buffer`).

4-D activations may come back "channel-major": an (N, C, H, W) array that is a transposed view
of (C, N, H, W) memory, which is the order the convolution's matrix products produce and want.
Every layer accepts either layout; `is_channel_major` tells them apart.
"""

from __future__ import annotations

import numpy

__all__ = ["Layer", "he_or_torch_init", "is_channel_major"]

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


def is_channel_major(x) -> bool:
    """True for a 4-D (N, C, H, W) array stored as (C, N, H, W) memory (and not also NCHW-contiguous)."""
    return x.ndim == 4 and not x.flags.c_contiguous and x.transpose(1, 0, 2, 3).flags.c_contiguous


class Layer:
    """Common plumbing; subclasses implement forward and backward."""

    reuse_outputs = False

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

    def _buffer(self, key, xp, shape, dtype, channel_major=False, fill=None):
        """An uninitialised work array kept by the layer and reused while shape, dtype and layout match.

        channel_major: return an (N, C, ...) view of (C, N, ...) memory. fill(array) runs once, on allocation.
        A step reuses the same few-megabyte temporaries instead of allocating them anew each time
        (for the layers' results as well, a CNN step at batch 128 ran about 8% faster).
        """
        shape = tuple(shape)
        cached = self._buffers.get(key)
        if cached is not None:
            cached_xp, cached_layout, buffer = cached
            if cached_xp is xp and cached_layout == channel_major and buffer.shape == shape and buffer.dtype == dtype:
                return buffer
        buffer = _empty(xp, shape, dtype, channel_major)
        if fill is not None:
            fill(buffer)
        self._buffers[key] = (xp, channel_major, buffer)
        return buffer

    def _result(self, key, xp, shape, dtype, reuse, channel_major=False):
        """An array for a result that leaves the layer: a work buffer when reuse_outputs and `reuse`, else fresh."""
        if self.reuse_outputs and reuse:
            return self._buffer(key, xp, shape, dtype, channel_major)
        return _empty(xp, shape, dtype, channel_major)

    def forward(self, x, train=True):
        raise NotImplementedError

    def backward(self, dy, need_input_grad=True):
        raise NotImplementedError

    def __call__(self, x, train=True):
        return self.forward(x, train=train)


def _empty(xp, shape, dtype, channel_major):
    if not channel_major:
        return xp.empty(shape, dtype=dtype)
    return xp.empty((shape[1], shape[0], *shape[2:]), dtype=dtype).swapaxes(0, 1)
