"""Linear (fully connected) layer: y = x @ weight.T + bias, weight (out, in) like PyTorch's.

The parameter block is B = [weight.T; bias], (in + 1, out), so that for an input with a last column of
ones, x1 = [x, 1] (N, in + 1), the whole layer is one matrix product and so is its parameter gradient:

    forward   y  = x1 @ B                  (N, out)
    backward  dB = x1.T @ dy               (in + 1, out): [dweight.T; dbias] in one GEMM
              dx = dy @ B[:in].T           (N, in)

A plain (N, in) input works too (a product, then the bias added; the bias gradient a column sum). The
layer before can hand over the (N, in + 1) form for free by writing its result into
`input_with_ones(N)[:, :in]`, a buffer this layer keeps whose last column holds ones; forward takes that
buffer itself (and only it: any other (N, in + 1) array is refused) as x1.
"""

from __future__ import annotations

from backend import gemm

from nets.nn.layers.base import Layer, he_or_torch_init, module_of
from nets.nn.layers.conv import check_whole

__all__ = ["Linear"]


def _ones_in_last_column(array):
    array[:, -1] = 1


class Linear(Layer):
    """x: (N, in_features), or this layer's input_with_ones (N, in_features + 1) -> y: (N, out_features).

    params: weight (out_features, in_features), bias (out_features,), views of the block (in + 1, out).
    Parameters start on the host (drawn from the numpy Generator `rng`, see `he_or_torch_init`);
    a model (or `layer.to(backend)`) moves them into its parameter buffer.
    """

    def __init__(self, in_features, out_features, *, rng, init="he", dtype="float32"):
        super().__init__()
        self.in_features = check_whole(in_features, "Linear in_features")
        self.out_features = check_whole(out_features, "Linear out_features")
        self.block_shape = (self.in_features + 1, self.out_features)
        weight, bias = he_or_torch_init(rng, (self.out_features, self.in_features), self.in_features, init, dtype)
        self.params = {"weight": weight, "bias": bias}
        self.grads = {"weight": weight * 0, "bias": bias * 0}
        self._x, self._x_has_ones = None, False
        self._start_on_the_host()

    def block_views(self, block) -> dict:
        return {"weight": block[:-1].T, "bias": block[-1]}

    def input_with_ones(self, n, xp, dtype, train=True):
        """An (n, in + 1) array this layer keeps, its last column ones: write the input into [:, :in], then
        pass the whole array to forward, and the bias rides in the product. Training and evaluation have one
        each (`train`), so a prediction between a training forward and its backward leaves the latter's alone."""
        key = "input_with_ones" if train else "input_with_ones_eval"
        return self._buffer(key, xp, (n, self.in_features + 1), dtype, fill=_ones_in_last_column)

    def _is_kept_input_with_ones(self, x) -> bool:
        for key in ("input_with_ones", "input_with_ones_eval"):
            cached = self._buffers.get((key, (x.shape[0], self.in_features + 1), x.dtype))
            if cached is not None and x is cached[1]:
                return True
        return False

    def forward(self, x, train=True, out=None):
        """x: (N, in), or the layer's input_with_ones (N, in + 1) -> (N, out); caches x when train."""
        block = self._block
        has_ones = x.ndim == 2 and self._is_kept_input_with_ones(x)
        if not has_ones and (x.ndim != 2 or x.shape[1] != self.in_features):
            raise ValueError(
                f"Linear({self.in_features}, {self.out_features}) takes (N, {self.in_features}) inputs, "
                f"got shape {tuple(x.shape)}; flatten the input first."
            )
        xp = module_of(x, block)
        if out is None:
            out = self._buffer("y" if train else "y_eval", xp, (x.shape[0], self.out_features), x.dtype)
        if has_ones:  # ones last: the bias rides in the product
            y = gemm(x, block, out)
        else:
            y = gemm(x, block[:-1], out)
            y += block[-1]
        if train:
            self._x, self._x_has_ones = x, has_ones
        return y

    def backward(self, dy, need_input_grad=True):
        """dy: (N, out) -> dx: (N, in); fills grads["weight"] and grads["bias"].

        need_input_grad=False skips dx (returns None): the first layer of a net never needs it.
        """
        if self._x is None:
            raise RuntimeError("Linear.backward needs a forward(x, train=True) first.")
        x, block, grad_block = self._x, self._block, self._grad_block
        xp = module_of(dy, x)
        if self._x_has_ones:
            gemm(x.T, dy, grad_block)
        else:
            gemm(x.T, dy, grad_block[:-1])
            xp.sum(dy, axis=0, out=grad_block[-1])
        if not need_input_grad:
            return None
        dx = self._buffer("dx", xp, (dy.shape[0], self.in_features), dy.dtype)
        return gemm(dy, block[:-1].T, dx)
