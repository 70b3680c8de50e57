"""The MLP and the CNN written once, as a list of stages, and what a model config describes without building it.

    stages("cnn")          -> [Stage("conv", "conv1", out=16, kernel=3), Stage("relu", "relu1"), ...]: the model
    walk(config)           -> [(stage, in_shape, out_shape), ...]: every stage with the shape of one example in and out
    complete_config("cnn") -> {"name": "cnn", "in_channels": 1, ..., "image_size": 28}
    parameter_shapes(config)                -> {"conv1.weight": (16, 1, 3, 3), ...} in state_dict order
    config_from_shapes({"fc1.weight": (128, 784), ...}) -> {"name": "mlp", "sizes": [784, 128, ...]}
    check_shapes(given, expected, "mlp")    -> ValueError naming the first parameter that is missing, extra or
                                               of another shape (or the other model, when the names are its)
    cnn_side(28) -> 10                      the side of the CNN's last feature map: fc1 sees channels * side**2
    input_shape(config)                     -> (784,) or (1, 28, 28): one example as the model takes it
    output_count(config)                    -> 10: the model's outputs (classes)

Every builder reads the stages: the reference layers (nets/nn/reference/models.py), the fast ones
(nets/nn/models.py) and the PyTorch twin (nets/baseline/models.py); sizes such as fc1's 3200 inputs are derived
by `walk`, never typed. Whatever needs a model's architecture without building it (a checkpoint checked before it
is loaded, a model checking a state dict) asks here. Every problem is a ValueError with a one-line message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from nets.nn.reference.conv import output_size
from nets.nn.reference.init import INITS
from nets.validate import whole

__all__ = ["ARCHITECTURE_KEYS", "MODEL_NAMES", "Stage", "a_model", "check_shapes", "cnn_side", "complete_config",
           "config_from_shapes", "input_shape", "output_count", "parameter_shapes", "stages", "walk"]

MODEL_NAMES = ("mlp", "cnn")
ARCHITECTURE_KEYS = {"mlp": ("sizes",), "cnn": ("in_channels", "channels", "hidden", "classes", "image_size")}
DEFAULTS = {"mlp": {"sizes": [784, 128, 64, 10]},
            "cnn": {"in_channels": 1, "channels": [16, 32], "hidden": 48, "classes": 10, "image_size": 28}}


@dataclass(frozen=True)
class Stage:
    """One step of a model. kind: "linear", "conv", "relu", "maxpool" or "flatten"; name: the PyTorch module's
    name for a stage with parameters ("conv1", "fc1": its parameters are "conv1.weight", "conv1.bias"), a name of
    its own otherwise. out: output features (linear) or channels (conv); kernel and stride: square windows, no
    padding (conv, maxpool)."""

    kind: str
    name: str
    out: int = 0
    kernel: int = 0
    stride: int = 1

    @property
    def has_parameters(self) -> bool:
        return self.kind in ("linear", "conv")


def stages(config_or_name) -> list[Stage]:
    """The model as its list of stages, in forward order (a name or a config; ValueError for one complete_config
    refuses).

    mlp: fc1, relu1, fc2, relu2, ..., fcK (a linear per size after the first).
    cnn: conv1 3x3, relu1, pool1 2/2, conv2 3x3, relu2, pool2 2/1, flatten, fc1, relu3, fc2: the course notebook's
         PyTorch CNN.
    """
    return _stages_of(complete_config(config_or_name))


def _stages_of(config: dict) -> list[Stage]:
    if config["name"] == "mlp":
        found = []
        for index, size in enumerate(config["sizes"][1:], start=1):
            found += [Stage("relu", f"relu{index - 1}")] if index > 1 else []
            found.append(Stage("linear", f"fc{index}", out=size))
        return found
    first, second = config["channels"]
    return [Stage("conv", "conv1", out=first, kernel=3), Stage("relu", "relu1"), Stage("maxpool", "pool1", 0, 2, 2),
            Stage("conv", "conv2", out=second, kernel=3), Stage("relu", "relu2"), Stage("maxpool", "pool2", 0, 2, 1),
            Stage("flatten", "flatten"),
            Stage("linear", "fc1", out=config["hidden"]), Stage("relu", "relu3"),
            Stage("linear", "fc2", out=config["classes"])]


def walk(config_or_name) -> list[tuple[Stage, tuple, tuple]]:
    """(stage, in_shape, out_shape) of every stage, for one example: (features,) or (channels, height, width)."""
    config = complete_config(config_or_name)
    shape, walked = input_shape(config), []
    for stage in stages(config):
        walked.append((stage, shape, shape := _out_shape(stage, shape)))
    return walked


def _out_shape(stage: Stage, shape: tuple) -> tuple:
    if stage.kind == "linear":
        return (stage.out,)
    if stage.kind == "flatten":
        return (shape[0] * shape[1] * shape[2],)
    if stage.kind == "relu":
        return shape
    channels = stage.out if stage.kind == "conv" else shape[0]
    side = output_size(shape[1], stage.kernel, stage.stride, 0)
    if side < 1:
        raise ValueError(f"{shape[1]}x{shape[2]} feature maps are too small for {stage.name} "
                         f"({stage.kernel}x{stage.kernel} windows).")
    return (channels, side, output_size(shape[2], stage.kernel, stage.stride, 0))


def a_model(name) -> str:
    """The model's name with its article, as a sentence says it: "an MLP", "a CNN"."""
    return {"mlp": "an MLP", "cnn": "a CNN"}.get(name, f"a {name}")


def cnn_side(image_size: int) -> int:
    """The side of the CNN's last feature map for square images of `image_size` (ValueError when too small)."""
    side = image_size
    for stage in _stages_of({"name": "cnn", **DEFAULTS["cnn"]}):
        if stage.kind in ("conv", "maxpool"):
            side = output_size(side, stage.kernel, stage.stride, 0)
            if side < 1:
                raise ValueError(f"image_size {image_size} is too small for the cnn's layers (3x3 conv, 2/2 pool, "
                                 "3x3 conv, 2/1 pool); it must be at least 10.")
    return side


def complete_config(config_or_name) -> dict:
    """A full config from a model name or a (partial) config: the defaults fill what is not given.

    Refuses an unknown model, unknown keys and sizes that are not whole numbers >= 1 (ValueError)."""
    config = {"name": config_or_name} if isinstance(config_or_name, str) else config_or_name
    if not isinstance(config, Mapping) or config.get("name") not in MODEL_NAMES:
        name = config.get("name") if isinstance(config, Mapping) else config
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}.")
    name = config["name"]
    keys = ARCHITECTURE_KEYS[name]
    unknown = sorted(set(config) - {"name", "init", *keys}, key=str)
    if unknown:
        raise ValueError(f"the {name} config has unknown keys {', '.join(map(str, unknown))}; "
                         f"it has name, init, {', '.join(keys)}.")
    if config.get("init", "he") not in INITS:
        raise ValueError(f"the {name} config has init {config['init']!r}; it must be one of {', '.join(INITS)}.")
    full = {"name": name, **DEFAULTS[name], **{key: config[key] for key in keys if key in config}}
    if "init" in config:
        full["init"] = config["init"]
    if name == "mlp":
        sizes = full["sizes"]
        if not isinstance(sizes, (list, tuple)) or len(sizes) < 2:
            raise ValueError(f"the mlp's sizes are {sizes!r}; they must be a list (inputs, ..., classes).")
        full["sizes"] = [whole(size, "an mlp size") for size in sizes]
        return full
    channels = full["channels"]
    if not isinstance(channels, (list, tuple)) or len(channels) != 2:
        raise ValueError(f"the cnn's channels are {channels!r}; they must be two numbers (conv1, conv2).")
    full["channels"] = [whole(count, "a cnn channel count") for count in channels]
    for key in ("in_channels", "hidden", "classes", "image_size"):
        full[key] = whole(full[key], f"the cnn's {key}")
    cnn_side(full["image_size"])
    return full


def input_shape(config) -> tuple:
    """The shape of one example as the model `config` describes takes it: (inputs,) for the mlp, (channels,
    image_size, image_size) for the cnn."""
    config = complete_config(config)
    if config["name"] == "mlp":
        return (config["sizes"][0],)
    return (config["in_channels"], config["image_size"], config["image_size"])


def output_count(config) -> int:
    """How many outputs (classes) the model `config` describes has."""
    config = complete_config(config)
    return int(config["sizes"][-1] if config["name"] == "mlp" else config["classes"])


def parameter_shapes(config) -> dict:
    """{name: shape} of the parameters of the model `config` describes, in state_dict order (ValueError for a
    config complete_config refuses)."""
    shapes = {}
    for stage, (inputs, *window), _ in walk(config):
        if stage.kind == "linear":
            shapes[f"{stage.name}.weight"] = (stage.out, inputs)
        elif stage.kind == "conv":
            shapes[f"{stage.name}.weight"] = (stage.out, inputs, stage.kernel, stage.kernel)
        if stage.has_parameters:
            shapes[f"{stage.name}.bias"] = (stage.out,)
    return shapes


def config_from_shapes(shapes: Mapping) -> dict:
    """The config (mlp with its sizes, or cnn with its channels, hidden, classes, image size) that parameters with
    these names and shapes ({name: shape}) belong to; ValueError when they fit neither."""
    names = list(shapes)

    def shape(name):
        return tuple(int(n) for n in shapes[name]) if name in shapes else None

    conv1, conv2, fc1, fc2 = (shape(f"{layer}.weight") for layer in ("conv1", "conv2", "fc1", "fc2"))
    if conv1 is not None:
        if conv2 is None or fc1 is None or fc2 is None or len(conv1) != 4 or len(conv2) != 4 or len(fc1) != 2:
            raise ValueError(f"parameters {names} look like a cnn but lack conv2, fc1 or fc2 weights.")
        side = int(round((fc1[1] / conv2[0]) ** 0.5))
        if side < 1 or side * side * conv2[0] != fc1[1]:
            raise ValueError(f"fc1.weight {fc1} does not follow conv2.weight {conv2}; this is not the nets cnn.")
        image_size = next(size for size in range(10, 4 * side + 20) if cnn_side(size) == side)
        return {"name": "cnn", "in_channels": conv1[1], "channels": [conv1[0], conv2[0]], "hidden": fc1[0],
                "classes": fc2[0], "image_size": image_size}
    sizes, index = [], 1
    while f"fc{index}.weight" in shapes:
        weight = shape(f"fc{index}.weight")
        if len(weight) != 2 or (sizes and sizes[-1] != weight[1]):
            raise ValueError(f"fc{index}.weight has shape {weight}, which does not chain onto the layer before.")
        sizes = sizes or [weight[1]]
        sizes.append(weight[0])
        index += 1
    if not sizes:
        shown = ", ".join(map(str, names[:4])) + (", ..." if len(names) > 4 else "")
        raise ValueError(f"cannot tell which model the parameters ({shown}) belong to; "
                         "expected fc1.weight, ... (mlp) or conv1.weight, ... (cnn).")
    return {"name": "mlp", "sizes": sizes}


def check_shapes(given: Mapping, expected: Mapping, model: str) -> None:
    """Parameters given ({name: shape}) against those `model` ("mlp"/"cnn") expects: ValueError naming the other
    model when the names are its, else the first missing, extra or differently shaped parameter."""
    missing = [name for name in expected if name not in given]
    unexpected = [name for name in given if name not in expected]
    if missing or unexpected:
        try:  # the cnn and the mlp share fc1 and fc2, so tell them apart by all the names
            held = config_from_shapes(given)["name"]
        except ValueError:
            held = model
        if held != model:
            raise ValueError(f"the parameters are those of {a_model(held)}, not {a_model(model)}.")
    if missing:
        raise ValueError(f"the parameters lack what {a_model(model)} needs: {', '.join(missing)}.")
    if unexpected:
        raise ValueError(f"the parameters have what {a_model(model)} does not: {', '.join(map(str, unexpected))}.")
    for name, shape in expected.items():
        if tuple(given[name]) != tuple(shape):
            raise ValueError(f"{name} has shape {tuple(given[name])}, but {a_model(model)} of this size has "
                             f"{tuple(shape)}.")
