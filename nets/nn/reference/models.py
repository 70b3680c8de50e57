"""The MLP and the CNN built from the reference layers: a list of layers, run forward and then backward.

    model = build_reference_model("cnn", backend=backend, rng=numpy.random.default_rng(0))
    loss, logits = model.loss_and_gradients(x, labels)      # forward, loss, backward: start reading here
    model.gradients()["conv1.weight"]                       # (16, 1, 3, 3), as torch's conv1.weight.grad

Both models are the stages of nets/nn/architecture.py, each mapped to its layer. Parameter names, shapes and order
are PyTorch's ("conv1.weight", ...), and the weights are drawn from the numpy Generator in that order, so for one seed
a reference model, a fast one (nets/nn/models.py) and the PyTorch twin start from the same numbers, and a state dict
moves between all three. A training run drives it through nets/train/reference.py (train.py --layers reference).
"""

from __future__ import annotations

import numpy

from backend import to_numpy

from nets.nn.architecture import check_shapes, complete_config, input_shape, output_count, walk
from nets.nn.reference.conv import Conv2d
from nets.nn.reference.layers import Flatten, Linear, ReLU
from nets.nn.reference.loss import softmax_cross_entropy
from nets.nn.reference.pooling import MaxPool2d

__all__ = ["ReferenceModel", "build_reference_model"]


class ReferenceModel:
    """A list of (name, layer) run forward in order and backward in reverse, nothing else.

    config: the model's config (nets/nn/architecture.py); layers: reference layers whose params and grads are keyed
    "weight" and "bias" (parameter names are "<layer name>.weight", as in PyTorch); backend: where they compute.
    """

    def __init__(self, config, layers, *, backend, dtype):
        self.name, self._config, self.layers = config["name"], dict(config), layers
        self.backend, self.dtype = backend, numpy.dtype(dtype)
        self.input_shape, self.classes = input_shape(config), output_count(config)

    def forward(self, x, train=True):
        """x: (N, *input_shape) -> logits (N, classes); in training each layer keeps what its backward needs."""
        x = self.backend.asarray(x, dtype=self.dtype)
        for _, layer in self.layers:
            x = layer.forward(x, train=train)
        return x

    def backward(self, dlogits):
        """dlogits: (N, classes) -> dx: (N, *input_shape); every layer's grads are set on the way."""
        dy = dlogits
        for _, layer in reversed(self.layers):
            dy = layer.backward(dy)
        return dy

    def loss_and_gradients(self, x, labels):
        """Forward, softmax cross-entropy and backward -> (loss, logits); the gradients are in gradients().

        x: (N, *input_shape); labels: (N,) class indices on the same device; loss: a 0-d array (no host sync)."""
        logits = self.forward(x, train=True)
        loss, dlogits = softmax_cross_entropy(logits, labels)
        self.backward(dlogits)
        return loss, logits

    def predict(self, x):
        """Logits (N, classes) of x (N, *input_shape), keeping nothing for a backward."""
        return self.forward(x, train=False)

    def parameters(self) -> dict:
        """{"conv1.weight": array, ...} in PyTorch state_dict order: the arrays the layers compute with."""
        return {f"{name}.{key}": value for name, layer in self.layers for key, value in layer.params.items()}

    def gradients(self) -> dict:
        """Same keys as parameters(): the gradients the last backward set."""
        return {f"{name}.{key}": value for name, layer in self.layers for key, value in layer.grads.items()}

    def state_dict(self) -> dict:
        """{name: numpy.ndarray}: host copies of the parameters."""
        return {name: numpy.array(to_numpy(value)) for name, value in self.parameters().items()}

    def load_state_dict(self, mapping) -> None:
        """Copy {name: array} into the parameters in place (cast to the model's dtype); ValueError, one line, when
        the names or shapes are not this model's."""
        values = {name: numpy.asarray(to_numpy(value)) for name, value in mapping.items()}
        parameters = self.parameters()
        try:
            check_shapes({name: value.shape for name, value in values.items()},
                         {name: parameter.shape for name, parameter in parameters.items()}, self.name)
        except ValueError as error:
            raise ValueError(f"the state dict does not fit this {self.name}: {error}") from None
        for name, parameter in parameters.items():
            parameter[...] = self.backend.asarray(values[name], dtype=parameter.dtype)

    def config(self) -> dict:
        return dict(self._config)


def build_reference_model(config_or_name, *, backend, dtype="float32", init="he", rng=None) -> ReferenceModel:
    """A reference MLP or CNN from a name ("mlp", "cnn") or a model config (the config's own init wins over `init`;
    rng defaults to the backend's)."""
    config = complete_config(config_or_name)
    config["init"] = config.get("init", init)
    drawn = dict(rng=backend.rng if rng is None else rng, init=config["init"], dtype=dtype, xp=backend.xp)
    layers = []
    for stage, (inputs, *_), _ in walk(config):
        if stage.kind == "linear":
            layer = Linear(inputs, stage.out, **drawn)
        elif stage.kind == "conv":
            layer = Conv2d(inputs, stage.out, stage.kernel, stage.stride, **drawn)
        elif stage.kind == "maxpool":
            layer = MaxPool2d(stage.kernel, stage.stride)
        else:
            layer = ReLU() if stage.kind == "relu" else Flatten()
        layers.append((stage.name, layer))
    return ReferenceModel(config, layers, backend=backend, dtype=dtype)
