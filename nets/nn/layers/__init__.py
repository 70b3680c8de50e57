"""Layers with hand-written forward and backward; they run on NumPy and CuPy alike.

Each layer has `params` and `grads` dicts (views of its parameter block, see nets/nn/parameters.py),
`forward(x, train=True, out=None)`, `backward(dy)` and `to(backend)`. Conv2d and MaxPool2d are written twice,
forward_cpu / backward_cpu and forward_gpu / backward_gpu (MaxPool2d's cpu twin calls the tournaments of
tournament.py), and the Layer base (base.py) chooses between them in one place, by the input's array module;
`layer.twin = "cpu"` or `"gpu"` forces one. The plain versions of every layer are in nets/nn/reference;
tests/test_reference.py holds both twins to them.
"""

from nets.nn.layers.activations import Flatten, ReLU
from nets.nn.layers.base import TWINS, Layer, he_or_torch_init
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
    "TWINS",
    "col2im",
    "conv_output_size",
    "he_or_torch_init",
    "im2col",
]
