"""The checks a checkpoint's metadata passes on load: every field a resume or a restore reads, so that a bad
value is refused in one line naming the field, not met later as a TypeError deep inside training.

    check_rng_state(state, "meta/rng_state", path)              # a numpy bit_generator.state that can be set
    check_optimizer_state(state, param_shapes, dtype, path)     # name, step, hyperparameters, buffers
    check_whole(value, "meta/epoch", path)                      # ints >= 0
    check_dataset(dataset, class_names, classes, config, path)  # meta/dataset and meta/class_names agree

Each raises CheckpointError (one line) and returns the value checked.
"""

from __future__ import annotations

import math

import numpy

from nets.checkpoint.core import CheckpointError, _first_line
from nets.data.datasets import CLASS_NAMES, DATASET_NAMES

__all__ = ["OPTIMIZER_STATE_NAMES", "check_dataset", "check_input_statistics", "check_optimizer_state",
           "check_rng_state", "check_whole"]

# The bit generators numpy ships; a saved state names one of them.
BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")
# Per-parameter buffers of each optimizer (nets.optim and torch.optim alike).
OPTIMIZER_STATE_NAMES = {"adam": ("exp_avg", "exp_avg_sq"), "sgd": ("momentum_buffer",)}
RESAVE = "save it again, or resume from another checkpoint"


def check_whole(value, field: str, path, least: int = 0) -> int:
    """An int >= least (numpy integers too); CheckpointError naming `field` otherwise."""
    if isinstance(value, numpy.generic):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise CheckpointError(f"{path} has {field} = {value!r}; it must be a whole number >= {least}, so {RESAVE}.")
    return int(value)


def _real(value, field: str, path, what: str, fits) -> float:
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or not fits(value)):
        raise CheckpointError(f"{path} has {field} = {value!r}; it must be {what}, so {RESAVE}.")
    return float(value)


def check_rng_state(state, field: str, path):
    """A numpy bit_generator.state (a dict) that a fresh generator of its kind accepts; None passes."""
    if state is None:
        return None
    name = state.get("bit_generator") if isinstance(state, dict) else None
    if name not in BIT_GENERATORS:
        raise CheckpointError(f"{path} has a {field} that is not a numpy random generator state "
                              f"(bit_generator {name!r}); {RESAVE}.")
    try:
        getattr(numpy.random, name)().state = state
    except Exception as error:  # TypeError, ValueError, KeyError, OverflowError from numpy's own checks
        raise CheckpointError(f"{path} has an unusable {field} ({_first_line(error)}); {RESAVE}.") from None
    return state


def check_dataset(dataset, class_names, classes: int, config: dict, path) -> tuple[str | None, list | None]:
    """meta/dataset (a known dataset), meta/class_names (that dataset's names, one per output of the model) and
    the dataset meta/config names, all agreeing -> (dataset, class names); both None when the file does not say.

    A checkpoint from before these entries names its dataset in meta/config only; it is read from there."""
    if dataset is None and class_names is not None:
        raise CheckpointError(f"{path} has meta/class_names but no meta/dataset; {RESAVE}.")
    said = config.get("dataset") if isinstance(config, dict) else None
    if dataset is None:
        if said not in DATASET_NAMES:  # an older checkpoint: meta/config's dataset, when it is one
            return None, None
        dataset = said
    elif dataset not in DATASET_NAMES:
        raise CheckpointError(f"{path} has meta/dataset = {dataset!r}; it must be one of {', '.join(DATASET_NAMES)}, "
                              f"so {RESAVE}.")
    elif said is not None and said != dataset:
        raise CheckpointError(f"{path} has meta/dataset = {dataset!r} but meta/config says {said!r}; the file is "
                              "inconsistent, so save it again.")
    names = list(CLASS_NAMES[dataset])
    if class_names is not None and class_names != names:
        raise CheckpointError(f"{path} has meta/class_names that are not {dataset}'s classes ({', '.join(names)}) "
                              f"in order; {RESAVE}.")
    if len(names) != classes:
        raise CheckpointError(f"{path} has meta/dataset {dataset!r}, whose {len(names)} classes do not fit a model "
                              f"with {classes} outputs; {RESAVE}.")
    return dataset, names


def check_input_statistics(mean, std, path) -> None:
    """meta/input_mean finite, meta/input_std finite and > 0 (inputs are divided by it); both or neither."""
    if (mean is None) != (std is None):
        raise CheckpointError(f"{path} has only one of meta/input_mean and meta/input_std; {RESAVE}.")
    if mean is not None:
        _real(mean, "meta/input_mean", path, "a finite number", lambda value: True)
        _real(std, "meta/input_std", path, "a finite number > 0", lambda value: value > 0)


def _check_hyperparameters(name: str, values, path) -> None:
    field = "optim/hyperparameters"
    if not isinstance(values, dict):
        raise CheckpointError(f"{path} has {field} = {values!r}; it must be a JSON object, so {RESAVE}.")
    allowed = {"adam": ("lr", "betas", "eps", "weight_decay"),
               "sgd": ("lr", "momentum", "dampening", "weight_decay", "nesterov")}[name]
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise CheckpointError(f"{path} has {field} with {', '.join(unknown)}, which {name} does not have; {RESAVE}.")
    checks = {
        "lr": ("a finite number > 0", lambda value: value > 0),
        "eps": ("a finite number >= 0", lambda value: value >= 0),
        "weight_decay": ("a finite number >= 0", lambda value: value >= 0),
        "momentum": ("in [0, 1)", lambda value: 0 <= value < 1),
        "dampening": ("in [0, 1]", lambda value: 0 <= value <= 1),
    }
    for key, (what, fits) in checks.items():
        if key in values:
            _real(values[key], f"{field} {key}", path, what, fits)
    if "betas" in values:
        betas = values["betas"]
        if not isinstance(betas, list) or len(betas) != 2:
            raise CheckpointError(f"{path} has {field} betas = {betas!r}; they must be two numbers in [0, 1), "
                                  f"so {RESAVE}.")
        for index, beta in enumerate(betas):
            _real(beta, f"{field} betas[{index}]", path, "in [0, 1)", lambda value: 0 <= value < 1)
    if "nesterov" in values:
        if not isinstance(values["nesterov"], bool):
            raise CheckpointError(f"{path} has {field} nesterov = {values['nesterov']!r}; it must be true or "
                                  f"false, so {RESAVE}.")
        if values["nesterov"] and (values.get("momentum", 0) <= 0 or values.get("dampening", 0) != 0):
            raise CheckpointError(f"{path} has {field} nesterov with momentum {values.get('momentum', 0)!r} and "
                                  f"dampening {values.get('dampening', 0)!r}; Nesterov needs a momentum and no "
                                  f"dampening, so {RESAVE}.")


def check_optimizer_state(state: dict, headers: dict, dtype: str, path) -> None:
    """The optimizer entries of a checkpoint, from their headers (before any buffer is read).

    state: {"name", "step", "hyperparameters", "state": {state name: {parameter: header}}};
    headers: parameter name -> header (shape, dtype) of the model's parameters.
    """
    name = state["name"]
    if name not in OPTIMIZER_STATE_NAMES:
        raise CheckpointError(f"{path} has optim/name = {name!r}; it must be one of "
                              f"{', '.join(OPTIMIZER_STATE_NAMES)}, so {RESAVE}.")
    check_whole(state["step"], "optim/step", path)
    _check_hyperparameters(name, state["hyperparameters"], path)
    for state_name, per_param in state["state"].items():
        if state_name not in OPTIMIZER_STATE_NAMES[name]:
            raise CheckpointError(f"{path} has optim/{state_name}/..., which {name} does not keep "
                                  f"(it keeps {', '.join(OPTIMIZER_STATE_NAMES[name])}); {RESAVE}.")
        for param_name, header in per_param.items():
            field = f"optim/{state_name}/{param_name}"
            if param_name not in headers:
                raise CheckpointError(f"{path} has {field}, but no parameter {param_name}; {RESAVE}.")
            if tuple(header.shape) != tuple(headers[param_name].shape):
                raise CheckpointError(f"{path} has {field} of shape {tuple(header.shape)}, but the parameter is "
                                      f"{tuple(headers[param_name].shape)}; {RESAVE}.")
            if header.dtype.name != dtype:
                raise CheckpointError(f"{path} has {field} of dtype {header.dtype.name}, but the parameters are "
                                      f"{dtype}; {RESAVE}.")
