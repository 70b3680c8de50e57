"""What every checkpoint format shares: the Checkpoint record, CheckpointError, atomic writes, file checks,
and telling the model (mlp or cnn, with its sizes) from parameter names and shapes.

nets/checkpoint/ (the .npz format) and nets/baseline/checkpoint.py (PyTorch state_dicts) both build on this
module, which imports neither of them; callers use nets.checkpoint, which re-exports what they need.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy

from backend.errors import NetsError

from nets.outputs import atomic_write  # noqa: F401  re-exported: the one atomic writer, used by both formats


class CheckpointError(NetsError, ValueError):
    """A checkpoint cannot be read or does not fit the model; the one-line message says which and why."""


@dataclass
class Checkpoint:
    """What a checkpoint file holds, on the host.

    params: parameter name -> numpy array, in the model's order (PyTorch state_dict names).
    model_name: "mlp" or "cnn"; model_config: model.config() (or inferred from shapes for a .pt file).
    optimizer_state: an Optimizer.state_dict(), or None when none was saved.
    epoch: completed epochs; step_in_epoch: completed steps of the epoch under way.
    rng_state: numpy bit_generator.state, or None; epoch_rng_state: its state when that epoch began, or None.
    config, metrics: whatever JSON the trainer saved ({} and None when absent). source: "npz" or "torch".
    dataset: the dataset the model was trained on ("mnist", "fashion-mnist"), None when the file does not say
    (a .pt file, or an older checkpoint without it); class_names: its classes in output order, or None.
    """

    params: dict
    model_name: str
    model_config: dict
    dtype: str
    epoch: int = 0
    step_in_epoch: int = 0
    optimizer_state: dict | None = None
    rng_state: dict | None = None
    epoch_rng_state: dict | None = None
    config: dict = field(default_factory=dict)
    metrics: dict | list | None = None
    input_mean: float | None = None
    input_std: float | None = None
    dataset: str | None = None
    class_names: list | None = None
    source: str = "npz"
    path: str | None = None


def a_model(name) -> str:
    """The model's name with its article, as a sentence says it: "an MLP", "a CNN"."""
    return {"mlp": "an MLP", "cnn": "a CNN"}.get(name, f"a {name}")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _require_file(path) -> str:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"no checkpoint at {path}; check the path (train.py writes one with --save).")
    if not os.path.isfile(path):
        raise CheckpointError(f"{path} is not a file; give the path of a .npz (or PyTorch .pt) checkpoint.")
    try:  # an unreadable file would otherwise pass for "not a zip archive"
        open(path, "rb").close()
    except OSError as error:
        raise CheckpointError(f"{path} cannot be read ({error.strerror or error}); check its permissions.") from None
    return path


def _common_dtype(params, path) -> str:
    dtypes = {array.dtype.name for array in params.values()}
    if len(dtypes) != 1:
        listing = ", ".join(f"{name} {array.dtype.name}" for name, array in params.items())
        raise CheckpointError(f"{path} mixes parameter dtypes ({listing}); all must be float32 or all float64.")
    dtype = dtypes.pop()
    if dtype not in ("float32", "float64"):
        raise CheckpointError(f"{path} holds {dtype} parameters; only float32 and float64 are supported.")
    return dtype


def _shape(params, name):
    return tuple(int(n) for n in numpy.shape(params[name])) if name in params else None


def infer_model_config(params: Mapping) -> dict:
    """The build_model config (mlp with its sizes, or cnn with its channels, hidden, classes, image size)
    that parameters with these names and shapes belong to. Raises CheckpointError when they fit neither."""
    names = list(params)
    conv1, conv2, fc1, fc2 = (_shape(params, f"{layer}.weight") for layer in ("conv1", "conv2", "fc1", "fc2"))
    if conv1 is not None:
        if conv2 is None or fc1 is None or fc2 is None or len(conv1) != 4 or len(conv2) != 4 or len(fc1) != 2:
            raise CheckpointError(f"parameters {names} look like a cnn but lack conv2, fc1 or fc2 weights.")
        side = int(round((fc1[1] / conv2[0]) ** 0.5))
        if side * side * conv2[0] != fc1[1]:
            raise CheckpointError(f"fc1.weight {fc1} does not follow conv2.weight {conv2}; this is not the nets cnn.")
        # conv 3 -> pool 2/2 -> conv 3 -> pool 2/1 maps image_size to (image_size - 2) // 2 - 3
        return {"name": "cnn", "in_channels": conv1[1], "channels": [conv1[0], conv2[0]], "hidden": fc1[0],
                "classes": fc2[0], "image_size": 2 * side + 8}
    sizes, index = [], 1
    while f"fc{index}.weight" in params:
        weight = _shape(params, f"fc{index}.weight")
        if len(weight) != 2 or (sizes and sizes[-1] != weight[1]):
            raise CheckpointError(f"fc{index}.weight has shape {weight}, which does not chain onto the layer before.")
        sizes = sizes or [weight[1]]
        sizes.append(weight[0])
        index += 1
    if not sizes:
        shown = ", ".join(map(str, names[:4])) + (", ..." if len(names) > 4 else "")
        raise CheckpointError(f"cannot tell which model the parameters ({shown}) belong to; "
                              "expected fc1.weight, ... (mlp) or conv1.weight, ... (cnn).")
    return {"name": "mlp", "sizes": sizes}


MODEL_CONFIG_KEYS = {"mlp": ("sizes",), "cnn": ("in_channels", "channels", "hidden", "classes", "image_size")}


def _whole(value, field: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CheckpointError(f"{where} has {field} {value!r}; it must be a whole number >= 1.")
    return value


def expected_parameter_shapes(config, where: str = "the model config") -> dict:
    """{name: shape} of the parameters build_model(config) makes, in state_dict order, computed without building
    the model (it mirrors nets.nn.models, as infer_model_config does; tests check the two agree).

    Raises CheckpointError, naming `where`, for a config that is not complete (every architecture key of its
    model), has unknown keys, or sizes that are not whole numbers >= 1 or images too small for the cnn.
    """
    from nets.nn.layers.base import INITS
    from nets.nn.layers.conv import conv_output_size

    if not isinstance(config, Mapping) or config.get("name") not in MODEL_CONFIG_KEYS:
        shown = config.get("name") if isinstance(config, Mapping) else config
        raise CheckpointError(f"{where} names the model {shown!r}; it must be mlp or cnn.")
    name = config["name"]
    keys = MODEL_CONFIG_KEYS[name]
    unknown = sorted(set(config) - {"name", "init", *keys}, key=str)
    missing = [key for key in keys if key not in config]
    if unknown or missing:
        problem = f"unknown keys {', '.join(map(str, unknown))}" if unknown else f"no {', '.join(missing)}"
        raise CheckpointError(f"{where} has {problem}; a {name} config has name, init, {', '.join(keys)}.")
    if "init" in config and config["init"] not in INITS:
        raise CheckpointError(f"{where} has init {config['init']!r}; it must be one of {', '.join(INITS)}.")
    if name == "mlp":
        sizes = config["sizes"]
        if not isinstance(sizes, (list, tuple)) or len(sizes) < 2:
            raise CheckpointError(f"{where} has sizes {sizes!r}; they must be a list (inputs, ..., classes).")
        sizes = [_whole(size, "a size", where) for size in sizes]
        shapes = {}
        for index, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
            shapes[f"fc{index}.weight"], shapes[f"fc{index}.bias"] = (fan_out, fan_in), (fan_out,)
        return shapes
    channels = config["channels"]
    if not isinstance(channels, (list, tuple)) or len(channels) != 2:
        raise CheckpointError(f"{where} has channels {channels!r}; they must be two numbers (conv1, conv2).")
    first, second = (_whole(count, "a channel count", where) for count in channels)
    inputs, hidden, classes, image_size = (_whole(config[key], key, where)
                                           for key in ("in_channels", "hidden", "classes", "image_size"))
    try:  # conv 3 -> pool 2/2 -> conv 3 -> pool 2/1, as nets.nn.models.CNN
        side = image_size
        for kernel, stride in ((3, 1), (2, 2), (3, 1), (2, 1)):
            side = conv_output_size(side, kernel, stride, 0)
    except ValueError:
        raise CheckpointError(f"{where} has image_size {image_size}, too small for the cnn's layers.") from None
    return {"conv1.weight": (first, inputs, 3, 3), "conv1.bias": (first,),
            "conv2.weight": (second, first, 3, 3), "conv2.bias": (second,),
            "fc1.weight": (hidden, second * side * side), "fc1.bias": (hidden,),
            "fc2.weight": (classes, hidden), "fc2.bias": (classes,)}


def check_parameter_shapes(shapes: Mapping, config, where: str, path) -> None:
    """Compare stored parameter shapes (name -> shape, e.g. from .npy headers) with what `config` implies; raises
    CheckpointError naming the first difference. `where` names the config ("meta/model_config")."""
    expected = expected_parameter_shapes(config, f"{path}: {where}")
    missing = [name for name in expected if name not in shapes]
    unexpected = [name for name in shapes if name not in expected]
    if missing or unexpected:
        try:  # the parameters of the other model: say so (the cnn and the mlp share fc1 and fc2)
            held = infer_model_config({name: _Shaped(tuple(shape)) for name, shape in shapes.items()})["name"]
        except CheckpointError:
            held = config["name"]
        if held != config["name"]:
            raise CheckpointError(f"{path}: {where} describes {a_model(config['name'])}, but the parameters are those "
                                  f"of {a_model(held)}; the file is inconsistent, so save it again.")
    if missing:
        raise CheckpointError(f"{path} lacks parameters the {config['name']} model needs: {', '.join(missing)}.")
    if unexpected:
        raise CheckpointError(f"{path} has parameters the {config['name']} model does not: {', '.join(unexpected)}.")
    for name, shape in expected.items():
        if tuple(shapes[name]) != shape:
            raise CheckpointError(f"{path}: {where} implies {name} of shape {shape}, but the file stores "
                                  f"{tuple(shapes[name])}; the file is inconsistent, so save it again.")


@dataclass(frozen=True)
class _Shaped:
    """A shape standing in for an array (numpy.shape reads .shape), so headers can be inspected unread."""

    shape: tuple


def check_finite_parameters(params: Mapping, path) -> None:
    """CheckpointError naming the first parameter with NaN or infinite values (a model saved after diverging)."""
    for name, array in params.items():
        bad = int(array.size - numpy.count_nonzero(numpy.isfinite(array)))
        if bad:
            raise CheckpointError(f"{path}: parameter {name} holds {bad} NaN or infinite value{'s' if bad > 1 else ''}; "
                                  "the model diverged before it was saved, so use an earlier checkpoint.")


def _checkpoint_from_parameters(params: dict, *, source: str, path) -> Checkpoint:
    config = infer_model_config(params)
    label = "the state_dict" if path is None else os.fspath(path)
    check_parameter_shapes({name: numpy.shape(array) for name, array in params.items()}, config,
                           "the parameters' own architecture", label)
    check_finite_parameters(params, label)
    return Checkpoint(params=params, model_name=config["name"], model_config=config,
                      dtype=_common_dtype(params, path), source=source, path=None if path is None else os.fspath(path))
