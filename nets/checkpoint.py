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
    optim/name       "sgd" or "adam"           optim/step     int64
    optim/hyperparameters  JSON                optim/<state name>/<parameter name>  arrays (exp_avg, ...)

Parameter names never contain "/", so they cannot collide with the meta/ and optim/ entries, and a
PyTorch model loads the file directly:

    arrays = numpy.load(path, allow_pickle=False)
    torch_model.load_state_dict({k: torch.from_numpy(arrays[k]) for k in torch_model.state_dict()})

`parameter_arrays(path)` returns just those parameters. `load_any_checkpoint` also reads a PyTorch
state_dict saved with torch.save (.pt), inferring mlp or cnn from the parameter shapes.

This module is the .npz format and the one place callers import from. The PyTorch interop lives in
nets/torch_checkpoint.py and the shared pieces (Checkpoint, CheckpointError, infer_model_config) in
nets/checkpoint_core.py; their names are re-exported here.

Every problem a user can cause raises CheckpointError (a ValueError) with a one-line message.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Mapping

import numpy

from backend import to_numpy

from .checkpoint_core import (
    Checkpoint,
    CheckpointError,
    atomic_write,
    _checkpoint_from_parameters,
    _common_dtype,
    _first_line,
    _require_file,
    infer_model_config,
)
from .models import build_model
from .torch_checkpoint import (  # re-exported: callers import them from here
    TORCH_SUFFIXES,  # noqa: F401
    export_torch_state_dict,
    is_torch_file,
    load_torch_checkpoint,
    load_torch_state_dict,
    save_torch_state_dict,
)

__all__ = [
    "Checkpoint",
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
VERSION = 1
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


def _checkpoint_arrays(model, *, model_config, optimizer, epoch, step_in_epoch, rng, epoch_rng_state, config,
                       metrics, input_mean, input_std) -> dict:
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
                    input_std: float | None = None) -> str:
    """Write a checkpoint to `path` atomically (a temporary file beside it, fsync, rename); returns `path`.

    model: a nets model, or a mapping name -> array (the torch engine's parameters) with `model_config`.
    optimizer: a nets Optimizer; or optimizer_state: a state_dict already taken (same layout).
    epoch: completed epochs; step_in_epoch: completed steps of the epoch under way (0 at a boundary).
    rng: the shuffling numpy Generator; or rng_state: its bit_generator.state already taken.
    epoch_rng_state: the RNG state when the epoch under way began (to redraw its order on resume).
    config, metrics: anything JSON-able (training hyperparameters, dataset; per-epoch history).
    input_mean / input_std: only when inputs are normalised beyond /255 (both or neither).
    No suffix is added to `path`.
    """
    if optimizer is not None and optimizer_state is not None:
        raise CheckpointError("pass optimizer or optimizer_state, not both.")
    if rng is not None and rng_state is not None:
        raise CheckpointError("pass rng or rng_state, not both.")
    arrays = _checkpoint_arrays(
        model, model_config=model_config, optimizer=optimizer if optimizer is not None else optimizer_state,
        epoch=epoch, step_in_epoch=step_in_epoch, rng=rng if rng is not None else rng_state,
        epoch_rng_state=epoch_rng_state, config=config, metrics=metrics, input_mean=input_mean, input_std=input_std)
    atomic_write(path, lambda file: numpy.savez(file, **arrays))
    return os.fspath(path)


# ---------------------------------------------------------------------------------------------- reading


def _read_npz(path) -> dict:
    """All arrays of an .npz file, read (and so CRC-checked) now; CheckpointError for anything unreadable."""
    path = _require_file(path)
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path} is not an .npz checkpoint (not a zip archive: truncated, or another kind of file).")
    try:
        with numpy.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except ValueError as error:
        if "allow_pickle" in str(error):
            raise CheckpointError(f"{path} holds pickled Python objects, which are not loaded; save it again with nets.") from None
        raise CheckpointError(f"{path} is a corrupt .npz checkpoint ({_first_line(error)}); save it again.") from None
    except Exception as error:  # BadZipFile (bad CRC), zlib.error, EOFError, OSError on a damaged member
        raise CheckpointError(f"{path} is a corrupt .npz checkpoint ({_first_line(error)}); save it again.") from None


def _text(arrays, key, path):
    try:
        return str(arrays[key][()])
    except KeyError:
        raise CheckpointError(f"{path} lacks the entry {key}; it is not a complete nets checkpoint.") from None


def _json(arrays, key, path, default=None):
    if key not in arrays:
        return default
    try:
        return json.loads(str(arrays[key][()]))
    except (json.JSONDecodeError, ValueError) as error:
        raise CheckpointError(f"{path} has an unreadable {key} entry ({_first_line(error)}).") from None


def _parameters_of(arrays) -> dict:
    return {key: value for key, value in arrays.items() if "/" not in key}


def _optimizer_state(arrays, path) -> dict | None:
    if OPTIM + "name" not in arrays:
        return None
    state: dict = {}
    for key, array in arrays.items():
        if not key.startswith(OPTIM):
            continue
        rest = key[len(OPTIM):]
        if "/" in rest:
            state_name, name = rest.split("/", 1)
            state.setdefault(state_name, {})[name] = array
    return {
        "name": _text(arrays, OPTIM + "name", path),
        "step": int(arrays[OPTIM + "step"]) if OPTIM + "step" in arrays else 0,
        "hyperparameters": _json(arrays, OPTIM + "hyperparameters", path, default={}),
        "state": state,
    }


def load_checkpoint(path) -> Checkpoint:
    """Read a nets .npz checkpoint (or a plain .npz of parameters) into a Checkpoint; raises CheckpointError."""
    arrays = _read_npz(path)
    path = os.fspath(path)
    params = _parameters_of(arrays)
    if not params:
        raise CheckpointError(f"{path} holds no model parameters.")
    if META + "format" not in arrays:
        # A bare np.savez(path, **state_dict): parameters only, architecture read off the shapes.
        return _checkpoint_from_parameters(params, source="npz", path=path)
    if _text(arrays, META + "format", path) != FORMAT:
        raise CheckpointError(f"{path} is not a nets checkpoint (meta/format is {_text(arrays, META + 'format', path)!r}).")
    version = int(arrays.get(META + "version", 0))
    if version > VERSION:
        raise CheckpointError(f"{path} is checkpoint format version {version}; this code reads up to {VERSION}, so update nets.")
    dtype = _common_dtype(params, path)
    saved_dtype = _text(arrays, META + "dtype", path)
    if saved_dtype != dtype:
        raise CheckpointError(f"{path} says its dtype is {saved_dtype}, but its parameters are {dtype}; the file is inconsistent.")
    model_config = _json(arrays, META + "model_config", path, default={})
    input_mean = float(arrays[META + "input_mean"]) if META + "input_mean" in arrays else None
    input_std = float(arrays[META + "input_std"]) if META + "input_std" in arrays else None
    return Checkpoint(
        params=params,
        model_name=_text(arrays, META + "model", path),
        model_config=model_config,
        dtype=dtype,
        epoch=int(arrays.get(META + "epoch", 0)),
        step_in_epoch=int(arrays.get(META + "step_in_epoch", 0)),
        optimizer_state=_optimizer_state(arrays, path),
        rng_state=_json(arrays, META + "rng_state", path),
        epoch_rng_state=_json(arrays, META + "epoch_rng_state", path),
        config=_json(arrays, META + "config", path, default={}),
        metrics=_json(arrays, META + "metrics", path),
        input_mean=input_mean,
        input_std=input_std,
        source="npz",
        path=path,
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
    return f"checkpoint holds a {held}, but --model {asked} was asked for; pass --model {held} or another checkpoint."


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
