"""The Layer base class: where a layer's device twin is chosen, a parameter block and its views, moving to a backend,
stable work buffers.

A layer is a plain object:
    params: dict[str, array]   "weight", "bias": views (in PyTorch's shapes) of the layer's parameter block
    grads:  dict[str, array]   the same views of its gradient block; overwritten by each backward
    forward(x, train=True, out=None) -> y    caches what backward needs, only when train (an evaluation
                                             forward in between leaves the training cache alone)
    backward(dy, need_input_grad=True) -> dx (None when need_input_grad is False)

Twins. A layer whose best code differs between the host and a GPU (Conv2d, MaxPool2d) writes it twice, as
Chainer's FunctionNode does: forward_cpu / forward_gpu and backward_cpu / backward_gpu, which take the same
arguments and return the same layout. `Layer.forward` is the one place that chooses between them, by the input's
array module (NumPy: the cpu twin; CuPy or the stand-in: the gpu twin), and `Layer.backward` runs the twin the
last training forward ran. `layer.twin = "cpu"` or `"gpu"` forces one on either device (tests hold each twin to
the reference, and the two to each other, that way). A layer with one code for both devices (Linear, ReLU,
Flatten) overrides forward and backward themselves.

Parameters live in a block (`block_shape`, laid out for the layer's matrix products; see nets/nn/parameters.py).
A model binds every block to a slice of one flat buffer; a new layer has a host buffer of its own, and
`layer.to(backend)` gives it one on another backend.

Buffers: every array a layer writes (its result, its input gradient, its scratch) lives in a work buffer the
layer keeps per shape, so a step allocates nothing of its own and every array has a stable home from one step
to the next (what a captured CUDA graph needs); an evaluation forward (train=False) keeps nothing for backward,
and has buffers of its own for whatever backward reads (a result backward does not read, such as the cpu twins'
outputs, may share its home with training's). Results handed out of a forward or backward are therefore
overwritten by the next one. 4-D activations are (N, C, H, W) arrays, whose memory each twin lays out as its products
and passes want: channel-last, an (N, C, H, W) view of (N, H, W, C) memory (the cpu twins), or channel-major, a
view of (C, N, H, W) memory (the gpu twins); every layer takes any layout, and `is_channel_last` /
`is_channel_major` tell them apart.
"""

from __future__ import annotations

import numpy

from backend import array_module, is_device_array, to_numpy

from nets.nn.reference.init import INITS, he_or_torch_init  # noqa: F401  (the layers draw their weights so)

__all__ = ["INITS", "Layer", "TWINS", "he_or_torch_init", "is_channel_last", "is_channel_major", "module_of"]

TWINS = ("cpu", "gpu")  # the values of Layer.twin besides None

def module_of(*arrays):
    """The array module of the arrays: NumPy at once when every one is a NumPy array (the CPU's steps call this
    for every layer), else backend.array_module's answer, which refuses host and device arrays mixed."""
    for array in arrays:
        if type(array) is not numpy.ndarray:
            return array_module(*arrays)
    return numpy


def is_channel_major(x) -> bool:
    """True for a 4-D (N, C, H, W) array stored as (C, N, H, W) memory (and not also NCHW-contiguous)."""
    return x.ndim == 4 and not x.flags.c_contiguous and x.transpose(1, 0, 2, 3).flags.c_contiguous


def is_channel_last(x) -> bool:
    """True for a 4-D (N, C, H, W) array stored as (N, H, W, C) memory (with one channel, NCHW-contiguous is too)."""
    return x.ndim == 4 and x.transpose(0, 2, 3, 1).flags.c_contiguous


class Layer:
    """Common plumbing; subclasses implement the twins (or forward and backward themselves), and block_views when
    they have parameters."""

    block_shape: tuple | None = None  # the parameter block; None for parameter-free layers
    # forward(x, out=view) writes its result into `view`, the next Linear's input beside its column of ones
    # (nets/nn/models.py hands it over), so the bias rides in that layer's product for free
    writes_into_next_input = False

    def __init__(self):
        self.params: dict = {}
        self.grads: dict = {}
        self._buffers: dict = {}
        self._block = self._grad_block = None
        self.twin: str | None = None  # "cpu" or "gpu": run that twin whatever the device; None: by the input
        self._trained_twin: str | None = None  # the twin the last training forward ran (backward runs its pair)

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

    def twin_for(self, x) -> str:
        """The one place a twin is chosen: the forced `twin`, else "gpu" for a device array and "cpu" for NumPy's."""
        if self.twin is not None:
            if self.twin not in TWINS:
                raise ValueError(f"{type(self).__name__}.twin is {self.twin!r}; it must be one of {TWINS} or None.")
            return self.twin
        return "gpu" if is_device_array(x) else "cpu"

    def check_input(self, x) -> None:
        """Raise ValueError, one sentence, for an input this layer cannot take (before either twin runs)."""

    def forward(self, x, train=True, out=None):
        """x -> y by forward_cpu or forward_gpu (`twin_for`); a training forward keeps what backward needs."""
        self.check_input(x)
        twin = self.twin_for(x)
        if train:
            self._trained_twin = twin
        return (self.forward_gpu if twin == "gpu" else self.forward_cpu)(x, train, out)

    def backward(self, dy, need_input_grad=True):
        """dy -> dx by the twin of the last training forward; fills grads."""
        if self._trained_twin is None:
            raise RuntimeError(f"{type(self).__name__}.backward needs a forward(x, train=True) first.")
        return (self.backward_gpu if self._trained_twin == "gpu" else self.backward_cpu)(dy, need_input_grad)

    def forward_cpu(self, x, train=True, out=None):
        raise NotImplementedError

    def forward_gpu(self, x, train=True, out=None):
        raise NotImplementedError

    def backward_cpu(self, dy, need_input_grad=True):
        raise NotImplementedError

    def backward_gpu(self, dy, need_input_grad=True):
        raise NotImplementedError

    def __call__(self, x, train=True):
        return self.forward(x, train=train)
