"""Layers with hand-written forward and backward; they run on NumPy and CuPy alike.

Each layer has `params` and `grads` dicts (views of its parameter block, see nets/parameters.py),
`forward(x, train=True, out=None)`, `backward(dy)` and `to(backend)`. Conv2d and MaxPool2d have a host
and a device strategy each (`strategy_for`), tested against each other.
"""

from .activations import Flatten, ReLU
from .base import Layer, he_or_torch_init
from .conv import Conv2d, col2im, conv_output_size, im2col
from .linear import Linear
from .pooling import MaxPool2d

__all__ = [
    "Conv2d",
    "Flatten",
    "Layer",
    "Linear",
    "MaxPool2d",
    "ReLU",
    "col2im",
    "conv_output_size",
    "he_or_torch_init",
    "im2col",
]
