"""The MLP and the CNN built from the reference layers, under the fast models' names, configs and initial weights.

    model = build_reference_model("cnn", backend=backend, rng=numpy.random.default_rng(0))
    loss, logits = model.loss_and_gradients(x, labels)      # forward, loss, backward: start reading here
    model.gradients()["conv1.weight"]                       # (16, 1, 3, 3), as torch's conv1.weight.grad

A ReferenceModel is a nets.nn.models.Model: the same config, parameter names, state_dict, predict and
loss_and_gradients, so a checkpoint of one loads into the other (and into the PyTorch twin), and the training
loop drives it through the same engine (python scripts/train.py --strategy reference). Its layers draw their
weights from the numpy Generator in the fast model's order, so for one seed both start from the same weights.
"""

from __future__ import annotations

import numpy

from nets.nn.architecture import cnn_side, complete_config, input_shape, output_count
from nets.nn.models import Model
from nets.nn.reference.conv import Conv2d
from nets.nn.reference.layers import Flatten, Linear, ReLU
from nets.nn.reference.loss import LossTotals
from nets.nn.reference.pooling import MaxPool2d

__all__ = ["STRATEGIES", "ReferenceModel", "build_reference_model"]

STRATEGIES = ("fast", "reference")  # train.py --strategy: the layers of nets/nn/layers, or these


class ReferenceModel(Model):
    """A list of (name, layer) run forward in order and backward in reverse, nothing else.

    config: the fast model's config() of the same architecture; layers: reference layers whose params and
    grads are keyed "weight" and "bias" (parameter names are "<layer name>.weight", as in PyTorch).
    """

    strategy = "reference"
    min_per_worker = None  # one thread: a debugger steps through every call of a training run

    def __init__(self, config, layers, *, backend, dtype):
        self.name, self._config, self.layers = config["name"], dict(config), layers
        self.backend, self.dtype = backend, numpy.dtype(dtype)
        self.input_shape, self.classes = input_shape(config), output_count(config)

    def forward_step(self, x, train=True):
        """x: (N, *input_shape) -> logits (N, classes)."""
        for _, layer in self.layers:
            x = layer.forward(x, train=train)
        return x

    def backward_step(self, dlogits, need_input_grad=False):
        """dlogits: (N, classes) -> dx: (N, *input_shape); every layer's grads are set on the way."""
        dy = dlogits
        for _, layer in reversed(self.layers):
            dy = layer.backward(dy)
        return dy

    def input_slot(self, n):
        return None  # a batch is a plain (N, *input_shape) array

    def loss_head(self):
        return LossTotals()

    def parameters(self) -> dict:
        """{"conv1.weight": array, ...} in PyTorch state_dict order: the arrays the layers compute with."""
        return {f"{name}.{key}": value for name, layer in self.layers for key, value in layer.params.items()}

    def gradients(self) -> dict:
        """Same keys as parameters(): the gradients the last backward set."""
        return {f"{name}.{key}": value for name, layer in self.layers for key, value in layer.grads.items()}

    def config(self) -> dict:
        return dict(self._config)


def build_reference_model(config_or_name, *, backend, dtype="float32", init="he", rng=None) -> ReferenceModel:
    """A reference MLP or CNN from a name ("mlp", "cnn") or a model config, as nets.nn.models.build_model builds
    the fast one (the config's own init wins over `init`; rng defaults to the backend's)."""
    config = complete_config(config_or_name)
    config["init"] = config.get("init", init)
    rng = backend.rng if rng is None else rng
    drawn = dict(rng=rng, init=config["init"], dtype=dtype, xp=backend.xp)
    if config["name"] == "mlp":
        sizes, layers = config["sizes"], []
        for index, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
            if index > 1:
                layers.append((f"relu{index - 1}", ReLU()))
            layers.append((f"fc{index}", Linear(fan_in, fan_out, **drawn)))
    else:  # 28 -conv 3x3-> 26 -pool 2/2-> 13 -conv 3x3-> 11 -pool 2/1-> 10: fc1 sees 32 * 10 * 10 = 3200
        (first, second), hidden = config["channels"], config["hidden"]
        features = second * cnn_side(config["image_size"]) ** 2
        layers = [("conv1", Conv2d(config["in_channels"], first, 3, **drawn)), ("relu1", ReLU()),
                  ("pool1", MaxPool2d(2, 2)),
                  ("conv2", Conv2d(first, second, 3, **drawn)), ("relu2", ReLU()), ("pool2", MaxPool2d(2, 1)),
                  ("flatten", Flatten()),
                  ("fc1", Linear(features, hidden, **drawn)), ("relu3", ReLU()),
                  ("fc2", Linear(hidden, config["classes"], **drawn))]
    return ReferenceModel(config, layers, backend=backend, dtype=dtype)
