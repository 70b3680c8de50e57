"""A model's parameters in one flat buffer and its gradients in another, under PyTorch's names.

Each layer with parameters owns a *block* of the buffer, laid out the way its matrix products want it, and
shows views of the block in PyTorch's shapes as `layer.params` (and of the gradient block as `layer.grads`):

    Linear(in, out)       block (in + 1, out): the weight transposed, then the bias as the last row
                          params["weight"] = block[:in].T  (out, in)      params["bias"] = block[in]  (out,)
    Conv2d(C, F, KH, KW)  block (C*KH*KW + 1, F): the same with the weight as a (F, C*KH*KW) matrix

so the bias rides inside the matrix products (an input column of ones meets the bias row), and an
optimizer updates every parameter with a dozen whole-buffer operations instead of a dozen per tensor.

    buffer = ParameterBuffer(layers, backend)   # binds every layer's params and grads to views
    buffer["fc1.weight"]                         # the view the layer computes with (a Mapping by name)
    buffer.flat, buffer.grads.flat               # (P,) arrays: what optimizers update and read
    buffer.views_of(state_flat)                  # the same named views of another (P,) array (optimizer state)
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["NamedViews", "ParameterBuffer"]


class NamedViews(Mapping):
    """name -> view of one flat array (`flat`), in PyTorch state_dict order."""

    def __init__(self, views: dict, flat):
        self._views = views
        self.flat = flat

    def __getitem__(self, name):
        return self._views[name]

    def __iter__(self):
        return iter(self._views)

    def __len__(self):
        return len(self._views)

    def __repr__(self):
        shapes = ", ".join(f"{name} {tuple(view.shape)}" for name, view in self._views.items())
        return f"{type(self).__name__}({shapes})"


class ParameterBuffer(NamedViews):
    """The parameters of `layers` ((name, layer) pairs, in order) as views of one flat array on `xp`.

    dtype: the parameters' dtype. shared_values: a flat array to use instead of a new one (replicas of a
    model that share its weights, nets/train/parallel.py); otherwise the layers' current parameter values are
    copied in. `grads` is a NamedViews of a second flat array, zeroed, that the layers' backward fills.
    """

    def __init__(self, layers, xp, dtype, shared_values=None):
        self._blocks = []  # (layer name, layer, offset, size)
        offset = 0
        for layer_name, layer in layers:
            if layer.block_shape is None:
                continue
            size = 1
            for extent in layer.block_shape:
                size *= extent
            self._blocks.append((layer_name, layer, offset, size))
            offset += size
        self.size = offset
        values = shared_values if shared_values is not None else xp.empty(offset, dtype=dtype)
        if values.shape != (offset,):
            raise ValueError(f"shared parameter values have shape {tuple(values.shape)}, expected ({offset},).")
        grads = xp.zeros(offset, dtype=dtype)
        for _, layer, start, size in self._blocks:
            layer.bind(self._block(values, layer, start, size), self._block(grads, layer, start, size),
                       copy_values=shared_values is None)
        # the very view objects the layers compute with
        super().__init__(self._layer_views("params"), values)
        self.grads = NamedViews(self._layer_views("grads"), grads)

    @staticmethod
    def _block(flat, layer, start, size):
        return flat[start:start + size].reshape(layer.block_shape)

    def _layer_views(self, attribute) -> dict:
        return {f"{layer_name}.{key}": view for layer_name, layer, _, _ in self._blocks
                for key, view in getattr(layer, attribute).items()}

    def _named(self, flat) -> dict:
        named = {}
        for layer_name, layer, start, size in self._blocks:
            for key, view in layer.block_views(self._block(flat, layer, start, size)).items():
                named[f"{layer_name}.{key}"] = view
        return named

    def views_of(self, flat) -> dict:
        """name -> view of `flat`, a (P,) array laid out like this buffer (e.g. an optimizer's exp_avg)."""
        return self._named(flat)
