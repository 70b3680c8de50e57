"""Checkpoints: one .npz file per save (no pickles), written atomically, readable by PyTorch too.

Layout of a nets checkpoint (every entry a numpy array; strings are numpy unicode scalars):

    conv1.weight, conv1.bias, ...      the model's parameters under their PyTorch state_dict names
    meta/format      "nets-checkpoint"         meta/version   1
    meta/model       "mlp" or "cnn"            meta/model_config  JSON of model.config()
    meta/dtype       "float32" or "float64"    meta/epoch, meta/step_in_epoch   int64
    meta/config      JSON: training hyperparameters, dataset, ... (whatever the caller passes)
    meta/metrics     JSON (optional)           meta/rng_state, meta/epoch_rng_state  JSON of numpy
                                               bit_generator.state (optional)
    meta/input_mean, meta/input_std   float64, only when inputs are normalised beyond /255 (optional)
    meta/dataset     "mnist" or "fashion-mnist"        meta/class_names  JSON list, the classes in output order
                     (both optional; version 2 on; a version-1 file names its dataset in meta/config only)
    optim/name       "sgd" or "adam"           optim/step     int64
    optim/hyperparameters  JSON                optim/<state name>/<parameter name>  arrays (exp_avg, ...)

Parameter names never contain "/", so they cannot collide with the meta/ and optim/ entries, and a
PyTorch model loads the file directly:

    arrays = numpy.load(path, allow_pickle=False)
    torch_model.load_state_dict({k: torch.from_numpy(arrays[k]) for k in torch_model.state_dict()})

`parameter_arrays(path)` returns just those parameters. `load_any_checkpoint` also reads a PyTorch
state_dict saved with torch.save (.pt), inferring mlp or cnn from the parameter shapes.

This module is the .npz format and the one place callers import from. The PyTorch interop lives in
nets/baseline/checkpoint.py and the shared pieces (Checkpoint, CheckpointError, infer_model_config) in
nets/checkpoint/core.py; their names are re-exported here.

Every problem a user can cause raises CheckpointError (a ValueError) with a one-line message.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Mapping

import numpy

from backend import to_numpy

from nets.checkpoint.checks import check_dataset, check_input_statistics, check_optimizer_state, check_rng_state, check_whole
from nets.checkpoint.core import Checkpoint, CheckpointError, atomic_write, _checkpoint_from_parameters, _common_dtype, _first_line, _require_file, a_model, check_finite_parameters, check_parameter_shapes, infer_model_config
from nets.data.datasets import CLASS_NAMES
from nets.nn.models import build_model
from nets.checkpoint.npz import NpzMembers
from nets.baseline.checkpoint import TORCH_SUFFIXES, export_torch_state_dict, is_torch_file, load_torch_checkpoint, load_torch_state_dict, save_torch_state_dict

__all__ = [
    "Checkpoint",
    "a_model",
    "CheckpointError",
    "FORMAT",
    "VERSION",
    "export_torch_state_dict",
    "infer_model_config",
    "load_any_checkpoint",
    "load_checkpoint",
    "load_parameters",
    "load_torch_checkpoint",
    "load_torch_state_dict",
    "parameter_arrays",
    "restore_model",
    "restore_optimizer",
    "restore_rng",
    "save_checkpoint",
    "save_torch_state_dict",
]

FORMAT = "nets-checkpoint"
VERSION = 2  # 2: meta/dataset and meta/class_names; version-1 files still load
META = "meta/"
OPTIM = "optim/"


# ---------------------------------------------------------------------------------------------- writing


def _json_default(value):
    if isinstance(value, (numpy.generic,)):
        return value.item()
    if isinstance(value, numpy.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _to_json(value, what: str) -> numpy.ndarray:
    try:
        return numpy.array(json.dumps(value, default=_json_default, sort_keys=False))
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"the checkpoint's {what} cannot be stored as JSON ({error}).") from None


def _rng_state(rng):
    """A numpy Generator (or BitGenerator, or an already taken .state dict) -> its state dict."""
    if rng is None or isinstance(rng, Mapping):
        return rng
    bit_generator = getattr(rng, "bit_generator", rng)
    return bit_generator.state


def _model_parts(model, model_config) -> tuple[dict, dict, str]:
    """(host parameters, model config, dtype name) of a nets model or of a parameter mapping plus its config."""
    if isinstance(model, Mapping):
        params = {name: numpy.ascontiguousarray(to_numpy(array)) for name, array in model.items()}
        if model_config is None:
            model_config = infer_model_config(params)
        dtype = _common_dtype(params, "the parameters")
    else:
        params = {name: numpy.ascontiguousarray(array) for name, array in model.state_dict().items()}
        model_config = model.config() if model_config is None else model_config
        dtype = numpy.dtype(model.dtype).name
    if not params:
        raise CheckpointError("there are no parameters to save.")
    for name in params:
        if "/" in name:
            raise CheckpointError(f"parameter name {name!r} contains '/', which is reserved for meta/ and optim/ entries.")
    if "name" not in model_config:
        raise CheckpointError("the model config has no 'name' (mlp or cnn).")
    return params, dict(model_config), dtype


def _classes(model_config: dict) -> int:
    """How many outputs (classes) the model of a checked config has."""
    return int(model_config["sizes"][-1] if model_config["name"] == "mlp" else model_config.get("classes", 10))


def _checkpoint_arrays(model, *, model_config, optimizer, epoch, step_in_epoch, rng, epoch_rng_state, config,
                       metrics, input_mean, input_std, dataset) -> dict:
    """Everything a checkpoint holds, as the ordered dict of arrays np.savez writes."""
    params, model_config, dtype = _model_parts(model, model_config)
    arrays = dict(params)
    arrays[META + "format"] = numpy.array(FORMAT)
    arrays[META + "version"] = numpy.array(VERSION, dtype=numpy.int64)
    arrays[META + "model"] = numpy.array(str(model_config["name"]))
    arrays[META + "model_config"] = _to_json(model_config, "model config")
    arrays[META + "dtype"] = numpy.array(dtype)
    arrays[META + "epoch"] = numpy.array(int(epoch), dtype=numpy.int64)
    arrays[META + "step_in_epoch"] = numpy.array(int(step_in_epoch), dtype=numpy.int64)
    arrays[META + "config"] = _to_json(config or {}, "config")
    if dataset is not None:
        if dataset not in CLASS_NAMES:
            raise CheckpointError(f"dataset {dataset!r} is not one of {', '.join(CLASS_NAMES)}; name the dataset the "
                                  "model was trained on.")
        if len(CLASS_NAMES[dataset]) != _classes(model_config):
            raise CheckpointError(f"{dataset} has {len(CLASS_NAMES[dataset])} classes, but the model has "
                                  f"{_classes(model_config)} outputs.")
        arrays[META + "dataset"] = numpy.array(dataset)
        arrays[META + "class_names"] = _to_json(list(CLASS_NAMES[dataset]), "class names")
    if metrics is not None:
        arrays[META + "metrics"] = _to_json(metrics, "metrics")
    for key, value in (("rng_state", _rng_state(rng)), ("epoch_rng_state", _rng_state(epoch_rng_state))):
        if value is not None:
            arrays[META + key] = _to_json(value, key.replace("_", " "))
    if (input_mean is None) != (input_std is None):
        raise CheckpointError("give both input_mean and input_std, or neither.")
    if input_mean is not None:
        arrays[META + "input_mean"] = numpy.array(float(input_mean), dtype=numpy.float64)
        arrays[META + "input_std"] = numpy.array(float(input_std), dtype=numpy.float64)
    if optimizer is not None:
        state = optimizer if isinstance(optimizer, Mapping) else optimizer.state_dict()
        arrays[OPTIM + "name"] = numpy.array(state["name"])
        arrays[OPTIM + "step"] = numpy.array(int(state["step"]), dtype=numpy.int64)
        arrays[OPTIM + "hyperparameters"] = _to_json(state["hyperparameters"], "optimizer hyperparameters")
        for state_name, per_param in state["state"].items():
            for name, array in per_param.items():
                if name not in params:
                    raise CheckpointError(f"optimizer state {state_name} names {name!r}, which is not a model parameter.")
                arrays[f"{OPTIM}{state_name}/{name}"] = numpy.ascontiguousarray(to_numpy(array))
    for key, array in arrays.items():
        if array.dtype.hasobject:  # would need a pickle; np.load(allow_pickle=False) could not read it
            raise CheckpointError(f"checkpoint entry {key} holds Python objects; only numeric arrays and strings are stored.")
    return arrays


def save_checkpoint(path, model, *, model_config: dict | None = None, optimizer=None, optimizer_state=None,
                    epoch: int = 0, step_in_epoch: int = 0, rng=None, rng_state=None, epoch_rng_state=None,
                    config: dict | None = None, metrics=None, input_mean: float | None = None,
                    input_std: float | None = None, dataset: str | None = None) -> str:
    """Write a checkpoint to `path` atomically (a temporary file beside it, fsync, rename); returns `path`.

    model: a nets model, or a mapping name -> array (the torch engine's parameters) with `model_config`.
    optimizer: a nets Optimizer; or optimizer_state: a state_dict already taken (same layout).
    epoch: completed epochs; step_in_epoch: completed steps of the epoch under way (0 at a boundary).
    rng: the shuffling numpy Generator; or rng_state: its bit_generator.state already taken.
    epoch_rng_state: the RNG state when the epoch under way began (to redraw its order on resume).
    config, metrics: anything JSON-able (training hyperparameters, dataset; per-epoch history).
    input_mean / input_std: only when inputs are normalised beyond /255 (both or neither).
    dataset: the dataset the model was trained on; stored with its class names (meta/dataset, meta/class_names).
    No suffix is added to `path`.
    """
    if optimizer is not None and optimizer_state is not None:
        raise CheckpointError("pass optimizer or optimizer_state, not both.")
    if rng is not None and rng_state is not None:
        raise CheckpointError("pass rng or rng_state, not both.")
    arrays = _checkpoint_arrays(
        model, model_config=model_config, optimizer=optimizer if optimizer is not None else optimizer_state,
        epoch=epoch, step_in_epoch=step_in_epoch, rng=rng if rng is not None else rng_state,
        epoch_rng_state=epoch_rng_state, config=config, metrics=metrics, input_mean=input_mean, input_std=input_std,
        dataset=dataset)
    atomic_write(path, lambda file: numpy.savez(file, **arrays))
    return os.fspath(path)


# ---------------------------------------------------------------------------------------------- reading


# The entries a checkpoint may hold besides parameters and optimizer buffers, with their kind:
# "U" a JSON or text string, "i" an integer, "f" a number. All are 0-d and small.
META_ENTRIES = {"format": "U", "version": "i", "model": "U", "model_config": "U", "dtype": "U", "epoch": "i",
                "step_in_epoch": "i", "config": "U", "metrics": "U", "rng_state": "U", "epoch_rng_state": "U",
                "input_mean": "f", "input_std": "f", "dataset": "U", "class_names": "U"}
OPTIM_ENTRIES = {"name": "U", "step": "i", "hyperparameters": "U"}
MAX_META_BYTES = 16 * 2**20  # a metrics history of thousands of epochs is well under this


def _entry_kind(key: str) -> str | None:
    """The kind of a meta/ or optim/ scalar entry; None for parameters and optimizer buffers."""
    if key.startswith(META):
        return META_ENTRIES.get(key[len(META):], "?")
    if key.startswith(OPTIM) and "/" not in key[len(OPTIM):]:
        return OPTIM_ENTRIES.get(key[len(OPTIM):], "?")
    return None


def _read_scalars(archive: NpzMembers, path) -> dict:
    """The meta/ and optim/ scalar entries, each checked from its header (known, 0-d, small) before it is read."""
    values = {}
    for key, member in archive.members.items():
        kind = _entry_kind(key)
        if kind is None:
            continue
        if kind == "?":
            raise CheckpointError(f"{path} has an entry {key} that a nets checkpoint (format version {VERSION}) "
                                  "does not have; save it again with nets.")
        if member.ndim != 0 or member.nbytes > MAX_META_BYTES or member.dtype.kind not in {"U": "U", "i": "iu",
                                                                                           "f": "fiu"}[kind]:
            raise CheckpointError(f"{path} has an entry {key} of shape {member.shape} and dtype {member.dtype}, not "
                                  "the small scalar a nets checkpoint stores there; save it again with nets.")
        values[key] = archive.read(key)[()]
    return values


def _text(values, key, path) -> str:
    try:
        return str(values[key])
    except KeyError:
        raise CheckpointError(f"{path} lacks the entry {key}; it is not a complete nets checkpoint.") from None


def _json(values, key, path, default=None):
    if key not in values:
        return default
    try:
        return json.loads(str(values[key]))
    except (json.JSONDecodeError, ValueError) as error:
        raise CheckpointError(f"{path} has an unreadable {key} entry ({_first_line(error)}).") from None


def _optimizer_headers(archive: NpzMembers, scalars: dict, path) -> dict | None:
    """The optimizer state with headers in place of buffers (read later), or None when none was saved."""
    buffers = {key: member for key, member in archive.members.items()
               if key.startswith(OPTIM) and "/" in key[len(OPTIM):]}
    if OPTIM + "name" not in scalars:
        if buffers:
            raise CheckpointError(f"{path} has optimizer buffers but no optim/name; save it again with nets.")
        return None
    state: dict = {}
    for key, member in buffers.items():
        state_name, name = key[len(OPTIM):].split("/", 1)
        state.setdefault(state_name, {})[name] = member
    return {
        "name": _text(scalars, OPTIM + "name", path),
        "step": scalars.get(OPTIM + "step", 0),
        "hyperparameters": _json(scalars, OPTIM + "hyperparameters", path, default={}),
        "state": state,
    }


def load_checkpoint(path) -> Checkpoint:
    """Read a nets .npz checkpoint (or a plain .npz of parameters) into a Checkpoint; raises CheckpointError.

    Every name, shape and dtype is checked from the members' .npy headers, and every metadata field by value,
    before any parameter data is read: a small file never costs more memory than the model it declares, and
    that model must agree with meta/model_config. Parameters holding NaN or infinity are refused.
    """
    path = _require_file(path)
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path} is not an .npz checkpoint (not a zip archive: truncated, or another kind of file).")
    if is_torch_file(path):
        raise CheckpointError(f"{path} is a PyTorch file (torch.save), not an .npz checkpoint; evaluate.py and "
                              "predict.py read it as it is (load_any_checkpoint).")
    with NpzMembers(path) as archive:
        headers = {key: member for key, member in archive.members.items() if "/" not in key}
        if not headers:
            raise CheckpointError(f"{path} holds no model parameters.")
        other = next((key for key in archive.members if "/" in key and not key.startswith((META, OPTIM))), None)
        if other is not None:
            raise CheckpointError(f"{path} has an entry {other} that a nets checkpoint does not have; "
                                  "save it again with nets.")
        scalars = _read_scalars(archive, path)
        if META + "format" not in scalars:
            # A bare np.savez(path, **state_dict): parameters only, architecture read off the shapes.
            if len(headers) != len(archive.members):
                raise CheckpointError(f"{path} has meta/ or optim/ entries but no meta/format; save it again with nets.")
            check_parameter_shapes({key: member.shape for key, member in headers.items()}, infer_model_config(headers),
                                   "the parameters' own architecture", path)
            _common_dtype(headers, path)
            return _checkpoint_from_parameters({key: archive.read(key) for key in headers}, source="npz", path=path)
        checkpoint = _checkpoint_from_headers(archive, headers, scalars, path)
        checkpoint.params = {key: archive.read(key) for key in headers}
        check_finite_parameters(checkpoint.params, path)
        if checkpoint.optimizer_state is not None:
            for per_param in checkpoint.optimizer_state["state"].values():
                for name, member in per_param.items():
                    per_param[name] = archive.read(member.key)
    return checkpoint


def _checkpoint_from_headers(archive: NpzMembers, headers: dict, scalars: dict, path) -> Checkpoint:
    """Everything but the arrays, checked: format, model config against the parameter headers, dtype, epoch and
    step, RNG states, optimizer state, input statistics. The arrays are read by the caller afterwards."""
    if _text(scalars, META + "format", path) != FORMAT:
        raise CheckpointError(f"{path} is not a nets checkpoint (meta/format is {_text(scalars, META + 'format', path)!r}).")
    version = check_whole(scalars.get(META + "version", 0), "meta/version", path)
    if version > VERSION:
        raise CheckpointError(f"{path} is checkpoint format version {version}; this code reads up to {VERSION}, so update nets.")
    model_name = _text(scalars, META + "model", path)
    model_config = _json(scalars, META + "model_config", path, default={}) or {"name": model_name}
    if not isinstance(model_config, dict) or model_config.get("name") != model_name:
        raise CheckpointError(f"{path} has meta/model {model_name!r} but a meta/model_config for "
                              f"{model_config.get('name') if isinstance(model_config, dict) else model_config!r}; "
                              "the file is inconsistent, so save it again.")
    if len(model_config) == 1:  # only a name: the model's default sizes, read off the parameters
        model_config = {**infer_model_config(headers), **model_config}
    check_parameter_shapes({key: member.shape for key, member in headers.items()}, model_config,
                           "meta/model_config", path)
    dtype = _common_dtype(headers, path)
    saved_dtype = _text(scalars, META + "dtype", path)
    if saved_dtype != dtype:
        raise CheckpointError(f"{path} says its dtype is {saved_dtype}, but its parameters are {dtype}; the file is inconsistent.")
    epoch = check_whole(scalars.get(META + "epoch", 0), "meta/epoch", path)
    step_in_epoch = check_whole(scalars.get(META + "step_in_epoch", 0), "meta/step_in_epoch", path)
    rng_state = check_rng_state(_json(scalars, META + "rng_state", path), "meta/rng_state", path)
    epoch_rng_state = check_rng_state(_json(scalars, META + "epoch_rng_state", path), "meta/epoch_rng_state", path)
    if step_in_epoch and epoch_rng_state is None:
        raise CheckpointError(f"{path} stopped at meta/step_in_epoch {step_in_epoch} but has no meta/epoch_rng_state "
                              "to redraw that epoch's order; save it again, or resume from another checkpoint.")
    optimizer_state = _optimizer_headers(archive, scalars, path)
    if optimizer_state is not None:
        check_optimizer_state(optimizer_state, headers, dtype, path)
        optimizer_state["step"] = int(optimizer_state["step"])
    config = _json(scalars, META + "config", path, default={})
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} has meta/config = {config!r}; it must be a JSON object, so save it again.")
    input_mean = float(scalars[META + "input_mean"]) if META + "input_mean" in scalars else None
    input_std = float(scalars[META + "input_std"]) if META + "input_std" in scalars else None
    check_input_statistics(input_mean, input_std, path)
    class_names = _json(scalars, META + "class_names", path)
    dataset, class_names = check_dataset(_text(scalars, META + "dataset", path) if META + "dataset" in scalars else None,
                                         class_names, _classes(model_config), config, path)
    return Checkpoint(
        params={},
        model_name=model_name,
        model_config=model_config,
        dtype=dtype,
        epoch=epoch,
        step_in_epoch=step_in_epoch,
        optimizer_state=optimizer_state,
        rng_state=rng_state,
        epoch_rng_state=epoch_rng_state,
        config=config,
        metrics=_json(scalars, META + "metrics", path),
        input_mean=input_mean,
        input_std=input_std,
        dataset=dataset,
        class_names=class_names,
        source="npz",
        path=os.fspath(path),
    )


def load_any_checkpoint(path) -> Checkpoint:
    """A nets .npz checkpoint or a PyTorch .pt state_dict, told apart by content, as a Checkpoint."""
    path = _require_file(path)
    if is_torch_file(path):
        return load_torch_checkpoint(path)
    return load_checkpoint(path)  # raises the "not an .npz checkpoint" error


def parameter_arrays(path) -> dict:
    """Only the model parameters of a checkpoint (.npz or .pt): name -> numpy array, PyTorch names."""
    return load_any_checkpoint(path).params


# ---------------------------------------------------------------------------------------------- restoring


def _other_model_message(held: str, asked: str) -> str:
    return (f"the checkpoint holds {a_model(held)}, but {a_model(asked)} was asked for; load it as {a_model(held)}, "
            f"or use {a_model(asked)} checkpoint.")


def load_parameters(model, params: Mapping) -> None:
    """Check `params` (name -> host array) against the model's names, shapes and dtypes, then load them in place."""
    expected = model.parameters()
    missing = [name for name in expected if name not in params]
    unexpected = [name for name in params if name not in expected]
    if missing or unexpected:
        try:  # the cnn and the mlp share fc1 and fc2, so tell them apart by all the names
            held = infer_model_config(params)["name"]
        except CheckpointError:  # names of neither model: the lists below say more
            held = model.name
        if held != model.name:
            raise CheckpointError(_other_model_message(held, model.name))
    if missing:
        raise CheckpointError(f"the checkpoint lacks parameters the {model.name} model needs: {', '.join(missing)}.")
    if unexpected:
        raise CheckpointError(f"the checkpoint has parameters the {model.name} model does not: {', '.join(unexpected)}.")
    for name, array in expected.items():
        given = params[name]
        if tuple(given.shape) != tuple(array.shape):
            raise CheckpointError(
                f"parameter {name} has shape {tuple(given.shape)} in the checkpoint but {tuple(array.shape)} in the "
                f"{model.name} model; it was saved from a model of another size."
            )
        if numpy.dtype(given.dtype) != numpy.dtype(array.dtype):
            raise CheckpointError(
                f"parameter {name} is {numpy.dtype(given.dtype).name} in the checkpoint but the model is "
                f"{numpy.dtype(array.dtype).name}; build the model with dtype={numpy.dtype(given.dtype).name}."
            )
    model.load_state_dict({name: params[name] for name in expected})


def restore_model(checkpoint: Checkpoint, backend, dtype=None, model_name: str | None = None):
    """Build the checkpoint's model on `backend` and load its parameters.

    dtype: None keeps the checkpoint's dtype; another dtype converts the parameters (an explicit request).
    model_name: the model the caller expects ("mlp"/"cnn"); a checkpoint of the other one raises CheckpointError.
    Building the model does not draw from backend.rng (a resumed run's RNG stays where it was).
    """
    if model_name is not None and model_name != checkpoint.model_name:
        raise CheckpointError(_other_model_message(checkpoint.model_name, model_name))
    dtype = numpy.dtype(dtype or checkpoint.dtype)
    config = checkpoint.model_config or checkpoint.model_name
    model = build_model(config, backend=backend, dtype=dtype.name, rng=numpy.random.default_rng(0))
    params = {name: array.astype(dtype, copy=False) for name, array in checkpoint.params.items()}
    load_parameters(model, params)
    return model


def restore_optimizer(checkpoint: Checkpoint, optimizer) -> None:
    """Put the checkpoint's optimizer state (buffers, step count, hyperparameters) into `optimizer`."""
    if checkpoint.optimizer_state is None:
        raise CheckpointError("the checkpoint holds no optimizer state (it was saved without one); start the optimizer afresh.")
    try:
        optimizer.load_state_dict(checkpoint.optimizer_state)
    except ValueError as error:
        raise CheckpointError(f"the checkpoint's optimizer state does not fit: {_first_line(error)}") from None


def restore_rng(checkpoint: Checkpoint, rng) -> None:
    """Set the numpy Generator `rng` to the checkpoint's saved state, so shuffling continues exactly."""
    if checkpoint.rng_state is None:
        raise CheckpointError("the checkpoint holds no RNG state; it was saved without rng=.")
    bit_generator = getattr(rng, "bit_generator", rng)
    saved = checkpoint.rng_state.get("bit_generator")
    if saved != type(bit_generator).__name__:
        raise CheckpointError(f"the checkpoint's RNG state is for {saved}, but the generator is {type(bit_generator).__name__}.")
    bit_generator.state = checkpoint.rng_state
