"""The Layer base class: a parameter block and its views, moving to a backend, stable work buffers.

A layer is a plain object:
    params: dict[str, array]   "weight", "bias": views (in PyTorch's shapes) of the layer's parameter block
    grads:  dict[str, array]   the same views of its gradient block; overwritten by each backward
    forward(x, train=True, out=None) -> y    caches what backward needs, only when train (an evaluation
                                             forward in between leaves the training cache alone)
    backward(dy, need_input_grad=True) -> dx (None when need_input_grad is False)

Parameters live in a block (`block_shape`, laid out for the layer's matrix products; see nets/nn/parameters.py).
A model binds every block to a slice of one flat buffer; a new layer has a host buffer of its own, and
`layer.to(backend)` gives it one on another backend.

Buffers: in training, every array a layer writes (its result, its input gradient, its scratch) lives in a
work buffer the layer keeps per shape, so a step allocates nothing of its own and every array has a stable
home from one step to the next (what a captured CUDA graph needs). Results handed out of a training
forward or backward are therefore overwritten by the next one; an evaluation forward (train=False)
returns fresh arrays. 4-D activations may come back "channel-major": an (N, C, H, W) view of (C, N, H, W)
memory, the order the convolution's matrix products produce; `is_channel_major` tells the layouts apart.
"""

from __future__ import annotations

import numpy

from backend import array_module, to_numpy

from nets.nn.reference.init import INITS, he_or_torch_init  # noqa: F401  (the layers draw their weights so)

__all__ = ["INITS", "Layer", "he_or_torch_init", "is_channel_major"]

def is_channel_major(x) -> bool:
    """True for a 4-D (N, C, H, W) array stored as (C, N, H, W) memory (and not also NCHW-contiguous)."""
    return x.ndim == 4 and not x.flags.c_contiguous and x.transpose(1, 0, 2, 3).flags.c_contiguous


class Layer:
    """Common plumbing; subclasses implement forward and backward (and block_views when they have parameters)."""

    block_shape: tuple | None = None  # the parameter block; None for parameter-free layers
    writes_into_slots = False  # forward(out=...) writes its result where the next layer wants it, for free

    def __init__(self):
        self.params: dict = {}
        self.grads: dict = {}
        self._buffers: dict = {}
        self._block = self._grad_block = None

    def block_views(self, block) -> dict:
        """The PyTorch-shaped views ({"weight": ..., "bias": ...}) of a block of `block_shape`."""
        raise NotImplementedError

    def bind(self, values_block, grads_block, copy_values=True) -> None:
        """Make params and grads views of these blocks; copy_values puts the current parameters in first."""
        if copy_values:
            xp = array_module(values_block)
            for key, view in self.block_views(values_block).items():
                view[...] = xp.asarray(to_numpy(self.params[key]), dtype=values_block.dtype)
        self._block, self._grad_block = values_block, grads_block
        self.params = self.block_views(values_block)
        self.grads = self.block_views(grads_block)
        self._buffers.clear()

    def _start_on_the_host(self):
        """Give a new layer its own host buffer, so it computes before any `to` (a model rebinds it)."""
        from backend import get_backend

        self.to(get_backend("cpu"))

    def to(self, backend):
        """A lone layer: put its parameters (and zeroed gradients) in a buffer of its own on `backend`."""
        from nets.nn.parameters import ParameterBuffer  # nets.nn.parameters builds on layers, not the other way round

        self._buffers.clear()
        if self.block_shape is not None:
            dtype = next(iter(self.params.values())).dtype
            self._parameter_buffer = ParameterBuffer([("", self)], backend.xp, dtype)
        return self

    def _buffer(self, key, xp, shape, dtype, fill=None):
        """A work array the layer keeps per (key, shape, dtype): one home per batch size, reused every step.

        fill(array) runs once, when the array is allocated (constant rows of ones, sentinels).
        """
        index = (key, tuple(shape), numpy.dtype(dtype))
        cached = self._buffers.get(index)
        if cached is not None and cached[0] is xp:
            return cached[1]
        buffer = xp.empty(index[1], dtype=index[2])
        if fill is not None:
            fill(buffer)
        self._buffers[index] = (xp, buffer)
        return buffer

    def forward(self, x, train=True, out=None):
        raise NotImplementedError

    def backward(self, dy, need_input_grad=True):
        raise NotImplementedError

    def __call__(self, x, train=True):
        return self.forward(x, train=train)
