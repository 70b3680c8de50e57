"""Linear, ReLU and Flatten, as plainly as they can be written (see nets/nn/reference/__init__.py)."""

from __future__ import annotations

import numpy

from backend import array_module

from nets.nn.reference.init import he_or_torch_init

__all__ = ["Flatten", "Linear", "ReLU"]


class Linear:
    """y = x @ weight.T + bias.    x: (N, in_features) -> y: (N, out_features)

    params: weight (out_features, in_features), bias (out_features,), as torch.nn.Linear. They are drawn from the
    numpy Generator `rng` exactly as the fast Linear draws them (he_or_torch_init), then put on `xp`.
    """

    def __init__(self, in_features, out_features, *, rng, init="he", dtype="float32", xp=numpy):
        weight, bias = he_or_torch_init(rng, (out_features, in_features), in_features, init, dtype)
        self.params = {"weight": xp.asarray(weight), "bias": xp.asarray(bias)}
        self.grads = {}
        self.x = None

    def forward(self, x, train=True):
        """x: (N, in) -> y: (N, out); keeps x, which the weight gradient needs."""
        if train:
            self.x = x
        return x @ self.params["weight"].T + self.params["bias"]

    def backward(self, dy):
        """dy: (N, out) -> dx: (N, in); sets grads weight (out, in) and bias (out,).

        y[n, o] = sum_i x[n, i] * weight[o, i] + bias[o], so each gradient is a sum over the batch:
        dweight[o, i] = sum_n dy[n, o] * x[n, i],  dbias[o] = sum_n dy[n, o],  dx[n, i] = sum_o dy[n, o] * weight[o, i].
        """
        self.grads = {"weight": dy.T @ self.x, "bias": dy.sum(axis=0)}
        return dy @ self.params["weight"]


class ReLU:
    """y = max(x, 0), any shape. The gradient at x == 0 is 0, as in PyTorch."""

    def __init__(self):
        self.params, self.grads = {}, {}
        self.positive = None

    def forward(self, x, train=True):
        """x -> max(x, 0), same shape and dtype; keeps where x > 0."""
        if train:
            self.positive = x > 0
        return array_module(x).maximum(x, 0)

    def backward(self, dy):
        """dy -> dx: dy where x was positive, 0 elsewhere."""
        return dy * self.positive


class Flatten:
    """x: (N, d1, d2, ...) -> y: (N, d1 * d2 * ...), in C order (PyTorch's NCHW), so fc1 sees torch's features."""

    def __init__(self):
        self.params, self.grads = {}, {}
        self.x_shape = None

    def forward(self, x, train=True):
        if train:
            self.x_shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy):
        """dy: (N, d1 * d2 * ...) -> dx: (N, d1, d2, ...)."""
        return dy.reshape(self.x_shape)
