"""The .npz checkpoint format: save_checkpoint writes one, load_checkpoint reads it back checked.

The layout is in nets/checkpoint/__init__.py. Reading never trusts the file: every entry's name, shape and dtype
is checked from its .npy header, and every metadata field by value, before any parameter data is read.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Mapping

import numpy

from backend import to_numpy
from nets.errors import first_line

from nets.checkpoint.checks import (MAX_RUN_ID, check_checksums, check_dataset, check_finite, check_optimizer_state,
                                    check_parameters, check_rng_state, check_run_id, check_whole, first_nonfinite,
                                    is_run_id, nonfinite_text, parameters_dtype)
from nets.checkpoint.npz import NpzMembers
from nets.checkpoint.record import Checkpoint, CheckpointError, NonFiniteError, is_torch_file, require_file
from nets.data.datasets import CLASS_NAMES
from nets.nn.architecture import check_shapes, complete_config, output_count, parameter_shapes
from nets.outputs import atomic_write

__all__ = ["FORMAT", "VERSION", "checkpoint_from_parameters", "load_checkpoint", "save_checkpoint"]

FORMAT = "nets-checkpoint"
VERSION = 3  # the format this code writes and reads; a file of another version is refused in one line
META = "meta/"
OPTIM = "optim/"
# The scalar entries a checkpoint may hold besides parameters and optimizer buffers, with their kind ("U" a JSON
# or text string, "i" an integer).
META_ENTRIES = {"format": "U", "version": "i", "model_config": "U", "epoch": "i", "step_in_epoch": "i",
                "config": "U", "metrics": "U", "rng_state": "U", "epoch_rng_state": "U", "dataset": "U",
                "class_names": "U", "images_in_epoch": "i", "run_id": "U", "data_checksums": "U"}
OPTIM_ENTRIES = {"name": "U", "step": "i", "hyperparameters": "U"}
MAX_META_BYTES = 16 * 2**20  # a metrics history of thousands of epochs is well under this


# ---------------------------------------------------------------------------------------------- writing


def _to_json(value, what: str) -> numpy.ndarray:
    def plain(item):
        if isinstance(item, (numpy.generic, numpy.ndarray)):
            return item.tolist()
        raise TypeError(f"{type(item).__name__} is not JSON serialisable")

    try:
        return numpy.array(json.dumps(value, default=plain))
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"the checkpoint's {what} cannot be stored as JSON ({error}).") from None


def _labels(dataset: str | None, run_id: str | None, data_checksums: dict | None, classes: int) -> dict:
    """The meta/ entries that label a file, checked: a known dataset with one class per output (and its class
    names), a run id of one line, the data's checksums."""
    if run_id is not None and not is_run_id(run_id):
        raise CheckpointError(f"run id {run_id!r} is not a line of 1 to {MAX_RUN_ID} printable characters.")
    if dataset is not None and dataset not in CLASS_NAMES:
        raise CheckpointError(f"dataset {dataset!r} is not one of {', '.join(CLASS_NAMES)}; name the dataset the "
                              "model was trained on.")
    if dataset is not None and len(CLASS_NAMES[dataset]) != classes:
        raise CheckpointError(f"{dataset} has {len(CLASS_NAMES[dataset])} classes, but the model has {classes} "
                              "outputs.")
    labels = {}
    if run_id is not None:
        labels[META + "run_id"] = numpy.array(run_id)
    if data_checksums is not None:
        labels[META + "data_checksums"] = _to_json(check_checksums(data_checksums, "the checksums to save"),
                                                   "data checksums")
    if dataset is not None:
        labels[META + "dataset"] = numpy.array(dataset)
        labels[META + "class_names"] = _to_json(list(CLASS_NAMES[dataset]), "class names")
    return labels


def save_checkpoint(path, params: Mapping, model_config: dict, *, optimizer_state: dict | None = None,
                    epoch: int = 0, step_in_epoch: int = 0, rng_state: dict | None = None,
                    epoch_rng_state: dict | None = None, config: dict | None = None, metrics=None,
                    dataset: str | None = None, images_in_epoch: int | None = None, run_id: str | None = None,
                    data_checksums: dict | None = None) -> str:
    """Write a checkpoint to `path` atomically (a temporary file beside it, fsync, rename); returns `path`.

    params: name -> array (host or device), a model's state_dict(); model_config: that model's config().
    optimizer_state: an Optimizer.state_dict() (same layout from the torch engine), or None.
    epoch: completed epochs; step_in_epoch: completed steps of the epoch under way (0 at a boundary).
    rng_state: the shuffling generator's bit_generator.state; epoch_rng_state: its state when the epoch under
    way began (to redraw its order on resume). config, metrics: anything JSON-able.
    dataset: the dataset the model was trained on; stored with its class names. No suffix is added to `path`.
    images_in_epoch: the images of the epoch under way trained on, stored only when given: when it is not
    step_in_epoch batches of config's batch size (a run resumed mid-epoch with another batch size).
    run_id: the run that wrote the file, the same string as its metrics JSON's "run_id" (stored when given).
    data_checksums: {IDX file name: MD5 of its decompressed content} of the data trained on (stored when given).
    Parameters holding NaN or infinity are refused (NonFiniteError) before anything is written.
    """
    params = {name: numpy.ascontiguousarray(to_numpy(array)) for name, array in params.items()}
    nonfinite = first_nonfinite(params)
    if nonfinite:
        raise NonFiniteError(f"{nonfinite_text(*nonfinite)} (the model diverged), so it was not saved to {path}; the "
                             "file there is left as it was.", *nonfinite)
    try:
        model_config = complete_config(model_config)
        check_shapes({name: array.shape for name, array in params.items()}, parameter_shapes(model_config),
                     model_config["name"])
    except ValueError as error:
        raise CheckpointError(f"these parameters and this model config do not make a checkpoint: "
                              f"{first_line(error)}") from None
    parameters_dtype({name: array.dtype for name, array in params.items()}, "the checkpoint to save")
    arrays = {**params, **_labels(dataset, run_id, data_checksums, output_count(model_config))}
    arrays[META + "format"] = numpy.array(FORMAT)
    arrays[META + "version"] = numpy.array(VERSION, dtype=numpy.int64)
    arrays[META + "model_config"] = _to_json(model_config, "model config")
    arrays[META + "epoch"] = numpy.array(int(epoch), dtype=numpy.int64)
    arrays[META + "step_in_epoch"] = numpy.array(int(step_in_epoch), dtype=numpy.int64)
    if images_in_epoch is not None:
        arrays[META + "images_in_epoch"] = numpy.array(int(images_in_epoch), dtype=numpy.int64)
    arrays[META + "config"] = _to_json(config or {}, "config")
    for key, value in (("metrics", metrics), ("rng_state", rng_state), ("epoch_rng_state", epoch_rng_state)):
        if value is not None:
            arrays[META + key] = _to_json(value, key.replace("_", " "))
    if optimizer_state is not None:
        arrays[OPTIM + "name"] = numpy.array(optimizer_state["name"])
        arrays[OPTIM + "step"] = numpy.array(int(optimizer_state["step"]), dtype=numpy.int64)
        arrays[OPTIM + "hyperparameters"] = _to_json(optimizer_state["hyperparameters"], "optimizer hyperparameters")
        for state_name, per_param in optimizer_state["state"].items():
            for name, array in per_param.items():
                if name not in params:
                    raise CheckpointError(f"optimizer state {state_name} names {name!r}, "
                                          "which is not a model parameter.")
                arrays[f"{OPTIM}{state_name}/{name}"] = numpy.ascontiguousarray(to_numpy(array))
    atomic_write(path, lambda file: numpy.savez(file, **arrays))
    return os.fspath(path)


# ---------------------------------------------------------------------------------------------- reading


def _read_scalars(archive: NpzMembers, path) -> dict:
    """The meta/ and optim/ scalar entries, each checked from its header (known, 0-d, small) before it is read;
    the format and its version first, so that a file of another version is refused as such."""
    first = [key for key in (META + "format", META + "version") if key in archive.members]
    values = {key: _read_scalar(archive, key, path) for key in first}
    if str(values.get(META + "format")) == FORMAT:
        _check_version(values, path)
    for key in archive.members:
        if key not in values and (key.startswith(META) or (key.startswith(OPTIM) and "/" not in key[len(OPTIM):])):
            values[key] = _read_scalar(archive, key, path)  # not a parameter or an optimizer buffer
    return values


def _read_scalar(archive: NpzMembers, key: str, path):
    member = archive.members[key]
    kind = META_ENTRIES.get(key[len(META):], "?") if key.startswith(META) else OPTIM_ENTRIES.get(key[len(OPTIM):], "?")
    if kind == "?":
        raise CheckpointError(f"{path} has an entry {key}, which a nets checkpoint (format version {VERSION}) "
                              "does not have: it is not a checkpoint this version reads.")
    if member.ndim != 0 or member.nbytes > MAX_META_BYTES or member.dtype.kind not in {"U": "U", "i": "iu"}[kind]:
        raise CheckpointError(f"{path} has an entry {key} of shape {member.shape} and dtype {member.dtype}, not "
                              "the small scalar a nets checkpoint stores there; save it again with nets.")
    return archive.read(key)[()]


def _check_version(values: dict, path) -> None:
    """A nets checkpoint of this format version; CheckpointError saying what to do for any other (none: the
    first files, from before versions were written)."""
    version = check_whole(values.get(META + "version", 0), "meta/version", path)
    if version > VERSION:
        raise CheckpointError(f"{path} is checkpoint format version {version}; "
                              f"this code reads up to {VERSION}, so update nets.")
    if version < VERSION:
        raise CheckpointError(f"{path} is checkpoint format version {version}, an older format that this version does "
                              f"not read (it reads version {VERSION}); train the model again.")


def _json(values, key, path, default=None):
    if key not in values:
        return default
    try:
        return json.loads(str(values[key]))
    except (json.JSONDecodeError, ValueError) as error:
        raise CheckpointError(f"{path} has an unreadable {key} entry ({first_line(error)}).") from None


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
    return {"name": str(scalars[OPTIM + "name"]), "step": scalars.get(OPTIM + "step", 0),
            "hyperparameters": _json(scalars, OPTIM + "hyperparameters", path, default={}), "state": state}


def load_checkpoint(path) -> Checkpoint:
    """Read a nets .npz checkpoint (or a plain np.savez of parameters) into a Checkpoint; CheckpointError otherwise.

    A small file never costs more memory than the model it declares, and that model must agree with the stored
    parameters; parameters holding NaN or infinity are refused.
    """
    path = require_file(path)
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path} is not an .npz checkpoint "
                              "(not a zip archive: truncated, or another kind of file).")
    if is_torch_file(path):
        raise CheckpointError(f"{path} is a PyTorch file (torch.save), not an .npz checkpoint; evaluate.py and "
                              "predict.py read it as it is.")
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
            # A bare np.savez(path, **state_dict): parameters only, the architecture read off their shapes.
            if len(headers) != len(archive.members):
                raise CheckpointError(f"{path} has meta/ or optim/ entries but no meta/format; "
                                      "save it again with nets.")
            check_parameters({key: member.shape for key, member in headers.items()}, None,
                             "the parameters' own architecture", path)
            parameters_dtype({key: member.dtype for key, member in headers.items()}, path)
            return checkpoint_from_parameters({key: archive.read(key) for key in headers}, source="npz", path=path)
        checkpoint = _checkpoint_from_headers(archive, headers, scalars, path)
        checkpoint.params = {key: archive.read(key) for key in headers}
        check_finite(checkpoint.params, path)
        if checkpoint.optimizer_state is not None:
            for per_param in checkpoint.optimizer_state["state"].values():
                for name, member in per_param.items():
                    per_param[name] = archive.read(member.key)
    return checkpoint


def _checkpoint_from_headers(archive: NpzMembers, headers: dict, scalars: dict, path) -> Checkpoint:
    """Everything but the arrays, checked: the format (its version was checked as it was read), the model config
    against the parameter headers, epoch and step, RNG states, optimizer state, dataset. The arrays are read by the
    caller afterwards."""
    if str(scalars[META + "format"]) != FORMAT:
        raise CheckpointError(f"{path} is not a nets checkpoint (meta/format is {str(scalars[META + 'format'])!r}).")
    model_config = _json(scalars, META + "model_config", path)
    if model_config is None:
        raise CheckpointError(f"{path} lacks the entry meta/model_config; it is not a complete nets checkpoint.")
    shapes = {key: member.shape for key, member in headers.items()}
    model_config = check_parameters(shapes, model_config, "meta/model_config", path)
    dtype = parameters_dtype({key: member.dtype for key, member in headers.items()}, path)
    epoch = check_whole(scalars.get(META + "epoch", 0), "meta/epoch", path)
    step_in_epoch = check_whole(scalars.get(META + "step_in_epoch", 0), "meta/step_in_epoch", path)
    images_in_epoch = (check_whole(scalars[META + "images_in_epoch"], "meta/images_in_epoch", path)
                       if META + "images_in_epoch" in scalars else None)
    rng_state = check_rng_state(_json(scalars, META + "rng_state", path), "meta/rng_state", path)
    epoch_rng_state = check_rng_state(_json(scalars, META + "epoch_rng_state", path), "meta/epoch_rng_state", path)
    if (step_in_epoch or images_in_epoch) and epoch_rng_state is None:
        raise CheckpointError(f"{path} stopped at meta/step_in_epoch {step_in_epoch} but has no meta/epoch_rng_state "
                              "to redraw that epoch's order; save it again, or resume from another checkpoint.")
    optimizer_state = _optimizer_headers(archive, scalars, path)
    if optimizer_state is not None:
        check_optimizer_state(optimizer_state, headers, dtype, path)
        optimizer_state["step"] = int(optimizer_state["step"])
    config = _json(scalars, META + "config", path, default={})
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} has meta/config = {config!r}; it must be a JSON object, so save it again.")
    dataset, class_names = check_dataset(str(scalars[META + "dataset"]) if META + "dataset" in scalars else None,
                                         _json(scalars, META + "class_names", path), output_count(model_config), config,
                                         path)
    run_id = check_run_id(str(scalars[META + "run_id"]), path) if META + "run_id" in scalars else None
    data_checksums = _json(scalars, META + "data_checksums", path)
    if data_checksums is not None:
        check_checksums(data_checksums, path)
    return Checkpoint(params={}, model_config=model_config, dtype=dtype, epoch=epoch, step_in_epoch=step_in_epoch,
                      images_in_epoch=images_in_epoch, optimizer_state=optimizer_state, rng_state=rng_state,
                      epoch_rng_state=epoch_rng_state, config=config, metrics=_json(scalars, META + "metrics", path),
                      dataset=dataset, class_names=class_names, source="npz", path=os.fspath(path), run_id=run_id,
                      data_checksums=data_checksums)


def checkpoint_from_parameters(params: dict, *, source: str, path=None) -> Checkpoint:
    """A Checkpoint of parameters alone (a bare .npz, a PyTorch state_dict): the model read off their shapes,
    the values checked finite."""
    label = "the state_dict" if path is None else os.fspath(path)
    model_config = check_parameters({name: numpy.shape(array) for name, array in params.items()}, None,
                                    "the parameters' own architecture", label)
    dtype = parameters_dtype({name: array.dtype for name, array in params.items()}, label)
    check_finite(params, label)
    return Checkpoint(params=params, model_config=model_config, dtype=dtype, source=source,
                      path=None if path is None else os.fspath(path))
