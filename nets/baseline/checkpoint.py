"""PyTorch state_dicts in and out: export and torch.save a model's parameters, read a .pt back as a Checkpoint,
and load_any_checkpoint, which reads either a .pt or a nets .npz (told apart by content).

torch is imported only when a function needs it (pip install -e .[baseline]).
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping

import numpy

from backend import to_numpy
from nets.errors import first_line

from nets.baseline import require_torch
from nets.checkpoint import (Checkpoint, CheckpointError, checkpoint_from_parameters, is_torch_file, load_checkpoint,
                             require_file)
from nets.checkpoint.npz import refuse_inflation
from nets.outputs import atomic_write

__all__ = ["export_torch_state_dict", "load_any_checkpoint", "load_torch_checkpoint", "load_torch_state_dict",
           "save_torch_state_dict"]


def export_torch_state_dict(model) -> dict:
    """The model's parameters as an ordered dict of CPU torch tensors (copies), ready for torch load_state_dict."""
    torch = require_torch()
    return {name: torch.from_numpy(numpy.array(to_numpy(array), copy=True))
            for name, array in model.parameters().items()}


def save_torch_state_dict(path, model) -> str:
    """Write the model's parameters as a PyTorch state_dict (.pt, torch.save), atomically; returns the path."""
    torch = require_torch()
    state_dict = export_torch_state_dict(model)
    atomic_write(path, lambda file: torch.save(state_dict, file))
    return os.fspath(path)


def load_torch_state_dict(path_or_mapping) -> dict:
    """A PyTorch state_dict (a .pt path, read with weights_only=True, or a mapping) -> name -> numpy array.

    Also accepts the common {"state_dict": ...} / {"model_state_dict": ...} wrappers and DataParallel's
    "module." prefixes.
    """
    if isinstance(path_or_mapping, Mapping):
        state, where = path_or_mapping, "the state_dict"
    else:
        where = require_file(path_or_mapping)
        state = _torch_load(where)
    for wrapper in ("state_dict", "model_state_dict"):
        if isinstance(state, Mapping) and isinstance(state.get(wrapper), Mapping):
            state = state[wrapper]
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{where} holds a {type(state).__name__}, "
                              "not a state_dict (a dict of parameter tensors).")
    if state and all(str(key).startswith("module.") for key in state):
        state = {key[len("module."):]: value for key, value in state.items()}
    params = {}
    for name, value in state.items():
        if getattr(getattr(value, "device", None), "type", None) == "meta":
            raise CheckpointError(f"{where}: parameter {name} is a meta-device tensor, which has a shape but no "
                                  "values; save the state_dict of a model whose weights are loaded.")
        if hasattr(value, "detach"):
            try:
                value = value.detach().cpu().numpy()
            except TypeError as error:  # bfloat16 and other dtypes numpy lacks
                raise CheckpointError(f"{where}: parameter {name} cannot become a numpy array "
                                      f"({first_line(error)}); convert it to float32 first.") from None
        if not isinstance(value, numpy.ndarray):
            raise CheckpointError(f"{where}: entry {name} is a {type(value).__name__}, not a tensor.")
        params[str(name)] = numpy.array(value, copy=True)
    if not params:
        raise CheckpointError(f"{where} holds no parameters.")
    return params


def _torch_load(path: str):
    """torch.load of a file, tensors only (weights_only), on the CPU; its zip directory checked first, so a small
    file that inflates to gigabytes is refused unread. torch's warnings and its advice to load pickles (which
    nets never does) are kept out of the one-line errors."""
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                refuse_inflation(path, archive.infolist())
        except (zipfile.BadZipFile, OSError) as error:
            raise CheckpointError(f"{path} is a corrupt PyTorch file ({first_line(error)}); save it again.") from None
    torch = require_torch()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # UnpicklingError, RuntimeError for a damaged zip, EOFError, KeyError for other bytes
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        if found:
            raise CheckpointError(f"{path} holds pickled Python objects besides tensors ({found.group(1)}), which are "
                                  "not loaded; give a file of torch.save(model.state_dict(), path).") from None
        if isinstance(error, pickle.UnpicklingError):  # torch's own message advises unsafe loading: not quoted
            reason = "a pickle that torch.save does not write"
        else:
            reason = f"{type(error).__name__}: {first_line(error).split('. ')[0]}"
        raise CheckpointError(f"{path} cannot be read as a PyTorch file (damaged, truncated, or another kind of file; "
                              f"{reason}).") from None


def load_torch_checkpoint(path_or_mapping) -> Checkpoint:
    """A PyTorch state_dict (.pt path or mapping) as a Checkpoint; the model is inferred from the shapes."""
    params = load_torch_state_dict(path_or_mapping)
    path = None if isinstance(path_or_mapping, Mapping) else path_or_mapping
    return checkpoint_from_parameters(params, source="torch", path=path)


def load_any_checkpoint(path) -> Checkpoint:
    """A nets .npz checkpoint or a PyTorch .pt state_dict, told apart by content, as a Checkpoint."""
    path = require_file(path)
    if is_torch_file(path):
        return load_torch_checkpoint(path)
    return load_checkpoint(path)  # raises the "not an .npz checkpoint" error for anything else
