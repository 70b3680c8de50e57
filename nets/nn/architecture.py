"""What a model config describes, without building the model: its parameters' names and shapes, the CNN's
geometry, and back again (the config that parameters of given shapes belong to).

    complete_config("cnn")                  -> {"name": "cnn", "in_channels": 1, ..., "image_size": 28}
    parameter_shapes(config)                -> {"conv1.weight": (16, 1, 3, 3), ...} in state_dict order
    config_from_shapes({"fc1.weight": (128, 784), ...}) -> {"name": "mlp", "sizes": [784, 128, ...]}
    check_shapes(given, expected, "mlp")    -> ValueError naming the first parameter that is missing, extra or
                                               of another shape (or the other model, when the names are its)
    cnn_side(28) -> 10                      the side of the CNN's last feature map: fc1 sees channels * side**2
    input_shape(config)                     -> (784,) or (1, 28, 28): one example as the model takes it
    output_count(config)                    -> 10: the model's outputs (classes)

Whatever needs a model's architecture without building it (a checkpoint checked before it is loaded, the
PyTorch twin, a model checking a state dict) asks here; nets.nn.models builds what these describe. Every
problem is a ValueError with a one-line message.
"""

from __future__ import annotations

from collections.abc import Mapping

from nets.nn.layers.base import INITS
from nets.validate import whole

__all__ = ["ARCHITECTURE_KEYS", "MODEL_NAMES", "a_model", "check_shapes", "cnn_side", "complete_config",
           "config_from_shapes", "input_shape", "output_count", "parameter_shapes"]

MODEL_NAMES = ("mlp", "cnn")
ARCHITECTURE_KEYS = {"mlp": ("sizes",), "cnn": ("in_channels", "channels", "hidden", "classes", "image_size")}
DEFAULTS = {"mlp": {"sizes": [784, 128, 64, 10]},
            "cnn": {"in_channels": 1, "channels": [16, 32], "hidden": 48, "classes": 10, "image_size": 28}}
# (kernel, stride) of conv1, max-pool 1, conv2, max-pool 2: 28 -> 26 -> 13 -> 11 -> 10
CNN_STAGES = ((3, 1), (2, 2), (3, 1), (2, 1))


def a_model(name) -> str:
    """The model's name with its article, as a sentence says it: "an MLP", "a CNN"."""
    return {"mlp": "an MLP", "cnn": "a CNN"}.get(name, f"a {name}")


def cnn_side(image_size: int) -> int:
    """The side of the CNN's last feature map for square images of `image_size` (ValueError when too small)."""
    side = image_size
    for kernel, stride in CNN_STAGES:
        side = (side - kernel) // stride + 1
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
    config = complete_config(config)
    if config["name"] == "mlp":
        shapes = {}
        sizes = config["sizes"]
        for index, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
            shapes[f"fc{index}.weight"], shapes[f"fc{index}.bias"] = (fan_out, fan_in), (fan_out,)
        return shapes
    (first, second), inputs = config["channels"], config["in_channels"]
    hidden, classes, side = config["hidden"], config["classes"], cnn_side(config["image_size"])
    return {"conv1.weight": (first, inputs, 3, 3), "conv1.bias": (first,),
            "conv2.weight": (second, first, 3, 3), "conv2.bias": (second,),
            "fc1.weight": (hidden, second * side * side), "fc1.bias": (hidden,),
            "fc2.weight": (classes, hidden), "fc2.bias": (classes,)}


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
