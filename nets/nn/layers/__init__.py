"""Layers with hand-written forward and backward; they run on NumPy and CuPy alike.

Each layer has `params` and `grads` dicts (views of its parameter block, see nets/nn/parameters.py),
`forward(x, train=True, out=None)`, `backward(dy)` and `to(backend)`. Conv2d and MaxPool2d have a host
and a device strategy each, chosen in one place (`strategy_for`) and named in their methods: Conv2d's
im2col_cpu / im2col_gpu and col2im_cpu / col2im_gpu, MaxPool2d's forward_cpu / forward_gpu and backward_cpu /
backward_gpu (the CPU ones in tournament.py). The plain versions of every layer are in nets/nn/reference;
tests/test_reference.py holds these to them.
"""

from nets.nn.layers.activations import Flatten, ReLU
from nets.nn.layers.base import Layer, he_or_torch_init
from nets.nn.layers.conv import Conv2d, col2im, conv_output_size, im2col
from nets.nn.layers.linear import Linear
from nets.nn.layers.pooling import MaxPool2d

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
