"""The checks a checkpoint passes on load: its parameters (names, shapes and dtype against its model config,
finite values) and every metadata field a resume or a restore reads, so that a bad file is refused in one
line naming the field, not met later as a TypeError deep inside training.

    check_parameters(shapes, model_config, "meta/model_config", path) -> the full config (shapes from headers)
    parameters_dtype(dtypes, path)                              # one floating dtype for all
    check_finite(params, path)                                  # no NaN or infinity (a diverged model)
    check_rng_state(state, "meta/rng_state", path)              # a numpy bit_generator.state that can be set
    check_optimizer_state(state, param_shapes, dtype, path)     # name, step, hyperparameters, buffers
    check_whole(value, "meta/epoch", path)                      # ints >= 0 (nets.validate's check, worded for a file)
    check_dataset(dataset, class_names, classes, config, path)  # meta/dataset and meta/class_names agree
    check_run_id(run_id, path)                                  # meta/run_id: a short line of printable text

Each raises CheckpointError (one line) and returns the value checked. The numbers are checked by nets.validate and
the optimizer state by the optimizer's own checks (nets/optim/base.py), as everywhere else; here they are worded
for a file.
"""

from __future__ import annotations

import numpy

from nets.errors import first_line

from nets.checkpoint.record import CheckpointError
from nets.data.datasets import CLASS_NAMES, DATASET_NAMES
from nets.nn.architecture import a_model, check_shapes, complete_config, config_from_shapes, parameter_shapes
from nets.optim import OPTIMIZER_CLASSES
from nets.validate import Invalid, whole

__all__ = ["check_checksums", "check_dataset", "check_finite", "check_optimizer_state", "check_parameters",
           "check_rng_state", "check_run_id", "check_whole", "is_run_id", "first_nonfinite", "nonfinite_text",
           "parameters_dtype"]

# The bit generators numpy ships; a saved state names one of them.
BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")
RESAVE = "save it again, or resume from another checkpoint"
FLOAT_DTYPES = ("float32", "float64")
MAX_RUN_ID = 200  # characters of meta/run_id: a run id is a short name, not a document


def check_parameters(shapes: dict, model_config, where: str, path) -> dict:
    """Stored parameter shapes ({name: shape}, from .npy headers) against what `model_config` implies (None: the
    architecture the shapes themselves describe) -> the complete config; CheckpointError naming the difference.
    `where` names the config in messages ("meta/model_config")."""
    try:
        if model_config is None:  # a bare file of parameters: the architecture read off their shapes
            model_config = config_from_shapes(shapes)
        model_config = complete_config(model_config)
        expected = parameter_shapes(model_config)
    except ValueError as error:
        raise CheckpointError(f"{path}: {where}: {first_line(error)}") from None
    try:
        check_shapes(shapes, expected, model_config["name"])
    except ValueError as error:
        raise CheckpointError(f"{path}: {where} describes {a_model(model_config['name'])} that does not fit the "
                              f"stored parameters ({first_line(error).rstrip('.')}); the file is inconsistent, "
                              "so save it again.") from None
    return model_config


def parameters_dtype(dtypes: dict, path) -> str:
    """The one dtype of all the parameters ({name: dtype}), float32 or float64; CheckpointError otherwise."""
    names = {numpy.dtype(dtype).name for dtype in dtypes.values()}
    if len(names) != 1:
        listing = ", ".join(f"{name} {numpy.dtype(dtype).name}" for name, dtype in dtypes.items())
        raise CheckpointError(f"{path} mixes parameter dtypes ({listing}); all must be float32 or all float64.")
    dtype = names.pop()
    if dtype not in FLOAT_DTYPES:
        raise CheckpointError(f"{path} holds {dtype} parameters; only float32 and float64 are supported.")
    return dtype


def first_nonfinite(params: dict) -> tuple[str, int] | None:
    """(name, count) of the first parameter (host arrays) holding NaN or infinite values; None when all are finite."""
    for name, array in params.items():
        bad = int(array.size - numpy.count_nonzero(numpy.isfinite(array)))
        if bad:
            return name, bad
    return None


def nonfinite_text(name: str, bad: int) -> str:
    """"parameter fc1.weight holds 3 NaN or infinite values"."""
    return f"parameter {name} holds {bad} NaN or infinite value{'s' if bad > 1 else ''}"


def check_finite(params: dict, path) -> None:
    """CheckpointError naming the first parameter with NaN or infinite values (a model saved after diverging)."""
    found = first_nonfinite(params)
    if found:
        raise CheckpointError(f"{path}: {nonfinite_text(*found)}; the model diverged before it was saved, so use an "
                              "earlier checkpoint.")


def invalid_field(error: Invalid, path, field: str | None = None) -> CheckpointError:
    """nets.validate's Invalid, worded for a file: "PATH has FIELD = VALUE; it must be ..., so save it again ..."."""
    name = error.name if field is None else f"{field} {error.name}"
    return CheckpointError(f"{path} has {name} = {error.value!r}; it must be {error.requirement}, so {RESAVE}.")


def check_whole(value, field: str, path, least: int = 0) -> int:
    """An int >= least (numpy integers too); CheckpointError naming `field` otherwise."""
    try:
        return whole(value, field, least)
    except Invalid as error:
        raise invalid_field(error, path) from None


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
        raise CheckpointError(f"{path} has an unusable {field} ({first_line(error)}); {RESAVE}.") from None
    return state


def is_run_id(value) -> bool:
    """Whether `value` can be a run id: a non-empty string of at most MAX_RUN_ID printable characters (it is printed
    in messages)."""
    return isinstance(value, str) and 0 < len(value) <= MAX_RUN_ID and value.isprintable()


def check_checksums(value, where) -> dict:
    """meta/data_checksums: {IDX file name: MD5 hex digest}, a few short entries; CheckpointError otherwise."""
    if not isinstance(value, dict) or len(value) > 16 or not all(
            isinstance(name, str) and len(name) <= 64 and isinstance(digest, str) and len(digest) == 32
            and all(character in "0123456789abcdef" for character in digest) for name, digest in value.items()):
        raise CheckpointError(f"{where} has a meta/data_checksums entry that is not a set of file names and MD5 "
                              "digests; save it again with nets.")
    return value


def check_run_id(run_id, path) -> str:
    """meta/run_id as is_run_id says; CheckpointError otherwise."""
    if not is_run_id(run_id):
        shown = run_id if not isinstance(run_id, str) or len(run_id) <= 40 else run_id[:40] + "..."
        raise CheckpointError(f"{path} has meta/run_id = {shown!r}; it must be a line of 1 to {MAX_RUN_ID} printable "
                              f"characters, so {RESAVE}.")
    return run_id


def check_dataset(dataset, class_names, classes: int, config: dict, path) -> tuple[str | None, list | None]:
    """meta/dataset (a known dataset), meta/class_names (that dataset's names, one per output of the model) and
    the dataset meta/config names, all agreeing -> (dataset, class names); both None when the file does not say.

    A checkpoint saved without meta/dataset (save_checkpoint's dataset left out) names its dataset in meta/config
    only; it is read from there."""
    if dataset is None and class_names is not None:
        raise CheckpointError(f"{path} has meta/class_names but no meta/dataset; {RESAVE}.")
    said = config.get("dataset") if isinstance(config, dict) else None
    if dataset is None:
        if said not in DATASET_NAMES:  # meta/config's dataset, when it is one
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


def check_optimizer_state(state: dict, headers: dict, dtype: str, path) -> None:
    """The optimizer entries of a checkpoint, from their headers (before any buffer is read).

    state: {"name", "step", "hyperparameters", "state": {state name: {parameter: header}}};
    headers: parameter name -> header (shape, dtype) of the model's parameters.
    """
    name = state["name"]
    if name not in OPTIMIZER_CLASSES:
        raise CheckpointError(f"{path} has optim/name = {name!r}; it must be one of "
                              f"{', '.join(OPTIMIZER_CLASSES)}, so {RESAVE}.")
    optimizer = OPTIMIZER_CLASSES[name]
    check_whole(state["step"], "optim/step", path)
    values = state["hyperparameters"]
    if not isinstance(values, dict):
        raise CheckpointError(f"{path} has optim/hyperparameters = {values!r}; it must be a JSON object, so {RESAVE}.")
    try:
        optimizer.check_hyperparameters(values)
    except Invalid as error:
        raise invalid_field(error, path, "optim/hyperparameters") from None
    except ValueError as error:
        raise CheckpointError(f"{path} has optim/hyperparameters that {name} cannot use ({first_line(error)}); "
                              f"{RESAVE}.") from None
    try:
        optimizer.check_state(state["state"], {param_name: header.shape for param_name, header in headers.items()})
    except ValueError as error:
        raise CheckpointError(f"{path} has optim/{first_line(error)}; {RESAVE}.") from None
    for state_name, per_param in state["state"].items():
        for param_name, header in per_param.items():
            field = f"optim/{state_name}/{param_name}"
            if header.dtype.name != dtype:
                raise CheckpointError(f"{path} has {field} of dtype {header.dtype.name}, but the parameters are "
                                      f"{dtype}; {RESAVE}.")
