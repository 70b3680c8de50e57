"""The two networks (MLP and CNN), their PyTorch-style parameter names, and build_model.

A model is an ordered list of named layers. Parameter names and order follow PyTorch's
state_dict ("conv1.weight", "conv1.bias", ...), so weights move between the two unchanged.
"""

from __future__ import annotations

import numpy

from backend import to_numpy

from nets.nn.architecture import MODEL_NAMES, check_shapes, complete_config, input_shape, output_count, walk
from nets.nn.layers import Conv2d, Flatten, Linear, MaxPool2d, ReLU
from nets.nn.layers.base import module_of
from nets.nn.losses import SoftmaxCrossEntropy, softmax_cross_entropy
from nets.nn.parameters import ParameterBuffer

__all__ = ["CNN", "MLP", "Model", "build_layers", "build_model", "MODEL_NAMES"]

FLOAT_DTYPES = ("float16", "float32", "float64")


class Model:
    """A model of the fast layers: the stages of its config (nets/nn/architecture.py), built by build_layers.

    self.layers: list of (name, layer) in forward order; layers with parameters are named
    like the PyTorch modules ("fc1", "conv1"), parameter-free ones ("relu_pool1", "flatten") are not
    part of any parameter name. All parameters live in one ParameterBuffer (nets/nn/parameters.py).

    Inside a training step the layers hand each other the arrays they keep (see layers/base.py): a ReLU
    writes straight into the next Linear's input_with_ones, whose column of ones carries the bias into the
    matrix product, and the first Linear's is where the batch is gathered (`input_with_ones`).
    """

    name = "model"
    layer_set = "fast"  # train.py --layers fast; nets/nn/reference/models.py builds the same nets from the reference
    # Fewest examples per CPU worker thread worth splitting a batch for (nets/train/parallel.py); None: never split.
    min_per_worker = None
    # Most examples one CPU thread runs through the layers at a time: in training (nets/train/parallel.py) and in
    # prediction (predict_step, the layers before the first Linear); None: the whole batch at once.
    train_chunk = predict_chunk = None

    def __init__(self, config, *, backend, dtype="float32", init="he", rng=None, shared_values=None):
        """config: a model config (complete_config checks it); shared_values: another model's parameters().flat to
        compute with (a replica sharing its weights)."""
        config = complete_config(config)
        init = config.get("init", init)
        self.backend, self.dtype, self.init = backend, numpy.dtype(dtype), init
        self._config = {key: value for key, value in config.items() if key != "init"}
        self.input_shape, self.classes = input_shape(config), output_count(config)
        self.layers = build_layers(config, rng=backend.rng if rng is None else rng, init=init, dtype=self.dtype)
        self._parameters = ParameterBuffer(self.layers, backend.xp, self.dtype, shared_values=shared_values)
        self._first_linear = next((index for index, (_, layer) in enumerate(self.layers) if isinstance(layer, Linear)),
                                  len(self.layers))  # predict_step chunks the layers before it

    def _input(self, x):
        x = self.backend.asarray(x, dtype=self.dtype)
        if tuple(x.shape[1:]) != tuple(self.input_shape):
            raise ValueError(
                f"this {self.name} takes inputs of shape (N, {', '.join(map(str, self.input_shape))}), "
                f"got {tuple(x.shape)}; reshape the batch to the model's input_shape."
            )
        return x

    def forward(self, x, train=True):
        """x: (N, *input_shape) -> logits (N, classes), a fresh array; x is cast to the model's dtype."""
        return (self.forward_step(self._input(x), train=True) if train else self.predict_step(x)).copy()

    def predict(self, x):
        """Logits (N, classes) in evaluation mode: x (N, *input_shape), host or device, any float dtype."""
        return self.forward(x, train=False)

    def forward_step(self, x, train=True, start=0, stop=None, into=None):
        """The forward a training step runs: x is on the device in the model's dtype, either (N, *input_shape)
        or, for a model whose first layer is Linear, its input with a column of ones (`input_with_ones`). In
        training the logits are the last layer's buffer, overwritten by the next step. A layer that can writes its
        result into the next Linear's input with ones. start, stop: run only layers[start:stop], the last of them
        writing into `into` (rows of the next Linear's input with ones) when given."""
        layers = self.layers
        stop = len(layers) if stop is None else stop
        for index in range(start, stop):
            layer = layers[index][1]
            following = layers[index + 1][1] if index + 1 < len(layers) else None
            with_ones = into if index == stop - 1 else None
            if with_ones is None and layer.writes_into_next_input and isinstance(following, Linear):
                with_ones = following.input_with_ones(x.shape[0], module_of(x), x.dtype, train)
            y = layer.forward(x, train=train, out=None if with_ones is None else with_ones[:, :-1])
            x = y if with_ones is None else with_ones
        return x

    def predict_step(self, x):
        """Logits (N, classes) in evaluation mode of x (N, *input_shape), cast to the model's dtype: the layers keep
        nothing for backward and reuse their evaluation buffers. On the CPU, the layers before the first Linear run
        a batch of more than `predict_chunk` examples in chunks of exactly that many (the last one overlapping the one
        before), so their buffers are sized once whatever the batch, and stay small; each chunk's features land in
        their rows of the first Linear's input, and the Linear layers take the whole batch at once (a product of
        more rows reads the weights fewer times). The result is a buffer of this model's, overwritten by its next
        prediction of as many examples."""
        x = self._input(x)
        n, layers, head = x.shape[0], self.layers, self._first_linear
        chunk = self.predict_chunk
        if head == 0 or chunk is None or n <= chunk or self.backend.is_gpu:
            return self.forward_step(x, train=False)
        features = layers[head][1].input_with_ones(n, self.backend.xp, self.dtype, train=False)
        for start in range(0, n, chunk):
            start = min(start, n - chunk)  # rows the last chunk shares with the one before get the same values again
            self.forward_step(x[start:start + chunk], False, 0, head, into=features[start:start + chunk])
        return self.forward_step(features, False, head)

    def input_with_ones(self, n):
        """Where a training step gathers a batch of n: the first Linear's (n, in + 1) input with a column of ones
        (write the images into [:, :-1]), or None when the first layer takes a plain array."""
        first = self.layers[0][1]
        if isinstance(first, Linear):
            return first.input_with_ones(n, self.backend.xp, self.dtype)
        return None

    def backward(self, dlogits, need_input_grad=True):
        """dlogits: (N, classes) -> dx: (N, *input_shape), a fresh array; every layer's grads are filled.

        need_input_grad=False skips the input gradient (returns None), as training does.
        """
        dx = self.backward_step(dlogits, need_input_grad)
        return None if dx is None else dx.copy()

    def backward_step(self, dlogits, need_input_grad=False):
        """The backward a training step runs: fills the gradient buffer; dx (if asked) is a layer's buffer."""
        dy = dlogits
        last = len(self.layers) - 1
        for position, (_, layer) in enumerate(reversed(self.layers)):
            dy = layer.backward(dy, need_input_grad=need_input_grad or position < last)
        return dy

    def loss_head(self):
        """The loss a training step runs on the logits (NetsEngine.train_step, nets/train/engine.py): dlogits out,
        totals kept."""
        return SoftmaxCrossEntropy(self.classes)

    def loss_and_gradients(self, x, labels):
        """Forward, softmax cross-entropy and backward in one call -> (loss, logits).

        x: (N, *input_shape), labels: (N,) integers; loss is a 0-d array (no host sync);
        the gradients land in the gradient buffer (see `gradients()`). The plainest path through a model, where
        a reader starts (docs/reading.md); a training step (nets/train/engine.py, NetsEngine.train_step) runs the
        same forward and backward around the lean loss head of `loss_head()`.
        """
        logits = self.forward_step(self._input(x), train=True)
        loss, dlogits = softmax_cross_entropy(logits, labels)
        self.backward_step(dlogits, need_input_grad=False)
        return loss, logits.copy()

    def parameters(self) -> ParameterBuffer:
        """{"conv1.weight": array, ...} in PyTorch state_dict order: the views the layers compute with.

        A ParameterBuffer: `.flat` is the one array they are all views of (what optimizers update).
        Optimisers update these arrays in place; replacing a dict entry does not reach the layer.
        """
        return self._parameters

    def gradients(self):
        """Same keys as parameters(); views of the gradient buffer (`.flat`), overwritten by each backward."""
        return self._parameters.grads

    def state_dict(self) -> dict:
        """{name: numpy.ndarray} host copies of the parameters, in PyTorch state_dict order."""
        return {name: numpy.array(to_numpy(value), copy=True) for name, value in self.parameters().items()}

    def load_state_dict(self, mapping) -> None:
        """Copy `mapping`'s values into the existing parameter arrays, in place.

        The names must match parameters() exactly and every shape must match (nets.nn.architecture.check_shapes).
        Values of another floating dtype (float16/32/64) are cast to the model's dtype; other dtypes are refused.
        Everything is checked before anything is copied. Raises ValueError, one line, on mismatch.
        """
        parameters = self.parameters()
        host_values = {name: numpy.asarray(to_numpy(value)) for name, value in mapping.items()}
        try:
            check_shapes({name: value.shape for name, value in host_values.items()},
                         {name: tuple(parameter.shape) for name, parameter in parameters.items()}, self.name)
        except ValueError as error:
            raise ValueError(f"the state dict does not fit this {self.name}: {error}") from None
        for name, value in host_values.items():
            if value.dtype.name not in FLOAT_DTYPES:
                raise ValueError(
                    f"dtype of {name} is {value.dtype}; expected a floating dtype ({', '.join(FLOAT_DTYPES)})."
                )
        for name, parameter in parameters.items():
            parameter[...] = self.backend.asarray(host_values[name], dtype=parameter.dtype)

    def config(self) -> dict:
        return {**self._config, "init": self.init}


def build_layers(config: dict, *, rng, init: str, dtype) -> list:
    """The fast layers of a complete config: its stages (nets/nn/architecture.py) in order, each ReLU followed by a
    max-pool run as one MaxPool2d(relu=True) named "relu_<pool>" (the max commutes with ReLU, so the rectification
    rides on the pass that writes the 4x smaller pooled output; same gradients, ties included)."""
    drawn = dict(rng=rng, init=init, dtype=dtype)
    walked, layers = walk(config), []
    for index, (stage, (inputs, *_), _) in enumerate(walked):
        following = walked[index + 1][0] if index + 1 < len(walked) else None
        if stage.kind == "linear":
            layers.append((stage.name, Linear(inputs, stage.out, **drawn)))
        elif stage.kind == "conv":
            layers.append((stage.name, Conv2d(inputs, stage.out, stage.kernel, stage.stride, **drawn)))
        elif stage.kind == "relu" and following is not None and following.kind == "maxpool":
            layers.append((f"relu_{following.name}", MaxPool2d(following.kernel, following.stride, relu=True)))
        elif stage.kind == "maxpool" and walked[index - 1][0].kind != "relu":
            layers.append((stage.name, MaxPool2d(stage.kernel, stage.stride)))
        elif stage.kind in ("relu", "flatten"):
            layers.append((stage.name, ReLU() if stage.kind == "relu" else Flatten()))
    return layers


class MLP(Model):
    """Fully connected net: x (N, sizes[0]) -> fc1, relu, fc2, relu, ..., fcK -> logits (N, sizes[-1])."""

    name = "mlp"
    min_per_worker = None  # a step this short costs less than the hand-off to worker threads

    def __init__(self, sizes=(784, 128, 64, 10), *, backend, dtype="float32", init="he", rng=None, shared_values=None):
        super().__init__({"name": "mlp", "sizes": list(sizes)}, backend=backend, dtype=dtype, init=init, rng=rng,
                         shared_values=shared_values)


class CNN(Model):
    """x (N, C, S, S) -> conv1 3x3, relu, maxpool 2/2, conv2 3x3, relu, maxpool 2/1, flatten,
    fc1, relu, fc2 -> logits (N, classes) (each relu + maxpool pair runs as one fused layer).

    With the defaults: 28 -conv-> 26 -pool 2/2-> 13 -conv-> 11 -pool 2/1-> 10, so fc1 sees 32*10*10 = 3200.
    """

    name = "cnn"
    min_per_worker = 32  # fewer examples per thread gain nothing from the split (docs/performance.md)
    train_chunk = predict_chunk = 32  # docs/performance.md: the chunk sizes measured

    def __init__(self, in_channels=1, channels=(16, 32), hidden=48, classes=10, image_size=28, *, backend,
                 dtype="float32", init="he", rng=None, shared_values=None):
        config = {"name": "cnn", "in_channels": in_channels, "channels": list(channels), "hidden": hidden,
                  "classes": classes, "image_size": image_size}
        super().__init__(config, backend=backend, dtype=dtype, init=init, rng=rng, shared_values=shared_values)


def build_model(config_or_name, *, backend, dtype="float32", init="he", rng=None, shared_values=None):
    """A fresh model from a name ("mlp", "cnn") or from a model's config() dict.

    `init` applies when the name is given or the config has no "init"; a config's own init wins.
    shared_values: another model's `parameters().flat` to compute with (a replica sharing its weights).
    Raises ValueError for an unknown name or config key.
    """
    config = complete_config(config_or_name)
    name, init = config.pop("name"), config.pop("init", init)
    return {"mlp": MLP, "cnn": CNN}[name](**config, backend=backend, dtype=dtype, init=init, rng=rng,
                                         shared_values=shared_values)
