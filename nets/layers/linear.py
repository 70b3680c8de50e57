"""Linear (fully connected) layer: y = x @ weight.T + bias, weight stored (out, in) like PyTorch."""

from __future__ import annotations

from backend import array_module

from .base import Layer, he_or_torch_init
from .conv import check_whole

__all__ = ["Linear"]


class Linear(Layer):
    """x: (N, in_features) -> y: (N, out_features).

    params: weight (out_features, in_features), bias (out_features,).
    Parameters start on the host (drawn from the numpy Generator `rng`, see `he_or_torch_init`);
    `layer.to(backend)` moves them.
    """

    def __init__(self, in_features, out_features, *, rng, init="he", dtype="float32"):
        super().__init__()
        self.in_features = check_whole(in_features, "Linear in_features")
        self.out_features = check_whole(out_features, "Linear out_features")
        weight, bias = he_or_torch_init(rng, (self.out_features, self.in_features), self.in_features, init, dtype)
        self.params = {"weight": weight, "bias": bias}
        self.grads = {"weight": weight * 0, "bias": bias * 0}
        self._x = None

    def forward(self, x, train=True):
        """x: (N, in_features) -> (N, out_features); caches x when train."""
        weight, bias = self.params["weight"], self.params["bias"]
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(
                f"Linear({self.in_features}, {self.out_features}) takes (N, {self.in_features}) inputs, "
                f"got shape {tuple(x.shape)}; flatten the input first."
            )
        xp = array_module(x, weight)
        y = self._result("y", xp, (x.shape[0], self.out_features), x.dtype, reuse=train)
        xp.matmul(x, weight.T, out=y)
        y += bias
        if train:
            self._x = x
        return y

    def backward(self, dy, need_input_grad=True):
        """dy: (N, out_features) -> dx: (N, in_features); fills grads["weight"], grads["bias"].

        need_input_grad=False skips dx (returns None): the first layer of a net never needs it.
        """
        if self._x is None:
            raise RuntimeError("Linear.backward needs a forward(x, train=True) first.")
        xp = array_module(dy, self._x)
        weight = self.params["weight"]
        xp.matmul(dy.T, self._x, out=self.grads["weight"])
        xp.sum(dy, axis=0, out=self.grads["bias"])
        if not need_input_grad:
            return None
        return xp.matmul(dy, weight, out=self._result("dx", xp, self._x.shape, dy.dtype, reuse=True))
