"""PyTorch state_dicts in and out: export and torch.save a model's parameters, read a .pt back as a Checkpoint.

torch is imported only when a function needs it (pip install -e .[baseline]). nets.checkpoint re-exports
these names, and its load_any_checkpoint uses is_torch_file to tell a .pt from an .npz.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping

import numpy

from backend import to_numpy

from nets.checkpoint.core import Checkpoint, CheckpointError, atomic_write, _checkpoint_from_parameters, _first_line, _require_file

__all__ = [
    "TORCH_SUFFIXES",
    "export_torch_state_dict",
    "is_torch_file",
    "load_torch_checkpoint",
    "load_torch_state_dict",
    "save_torch_state_dict",
]

TORCH_SUFFIXES = (".pt", ".pth")


def _import_torch():
    try:
        import torch
    except ImportError:
        raise CheckpointError("reading or writing PyTorch state dicts needs torch; pip install -e .[baseline]") from None
    return torch


def export_torch_state_dict(model) -> dict:
    """The model's parameters as an ordered dict of CPU torch tensors (copies), ready for torch load_state_dict."""
    torch = _import_torch()
    return {name: torch.from_numpy(numpy.array(to_numpy(array), copy=True)) for name, array in model.parameters().items()}


def save_torch_state_dict(path, model) -> str:
    """Write the model's parameters as a PyTorch state_dict (.pt, torch.save), atomically; returns the path."""
    torch = _import_torch()
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
        where = _require_file(path_or_mapping)
        torch = _import_torch()
        try:
            state = torch.load(where, map_location="cpu", weights_only=True)
        except Exception as error:  # UnpicklingError, RuntimeError for a damaged zip, EOFError
            raise CheckpointError(f"{where} is not a readable PyTorch state_dict ({_first_line(error)}).") from None
    for wrapper in ("state_dict", "model_state_dict"):
        if isinstance(state, Mapping) and isinstance(state.get(wrapper), Mapping):
            state = state[wrapper]
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{where} holds a {type(state).__name__}, not a state_dict (a dict of parameter tensors).")
    if state and all(str(key).startswith("module.") for key in state):
        state = {key[len("module."):]: value for key, value in state.items()}
    params = {}
    for name, value in state.items():
        if hasattr(value, "detach"):
            try:
                value = value.detach().cpu().numpy()
            except TypeError as error:  # bfloat16 and other dtypes numpy lacks
                raise CheckpointError(f"{where}: parameter {name} cannot become a numpy array ({_first_line(error)}); convert it to float32 first.") from None
        if not isinstance(value, numpy.ndarray):
            raise CheckpointError(f"{where}: entry {name} is a {type(value).__name__}, not a tensor.")
        params[str(name)] = numpy.array(value, copy=True)
    if not params:
        raise CheckpointError(f"{where} holds no parameters.")
    return params


def load_torch_checkpoint(path_or_mapping) -> Checkpoint:
    """A PyTorch state_dict (.pt path or mapping) as a Checkpoint; the model is inferred from the shapes."""
    params = load_torch_state_dict(path_or_mapping)
    path = None if isinstance(path_or_mapping, Mapping) else path_or_mapping
    return _checkpoint_from_parameters(params, source="torch", path=path)


def is_torch_file(path) -> bool:
    """Whether `path` holds a torch.save file, told by content: a zip archive with a data.pkl member, or (torch's
    legacy pre-1.6 format, not a zip) a file named .pt or .pth. An .npz is a zip archive without data.pkl."""
    path = os.fspath(path)
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                members = archive.namelist()
        except (zipfile.BadZipFile, OSError) as error:
            raise CheckpointError(f"{path} is a corrupt checkpoint ({_first_line(error)}); save it again.") from None
        return any(member.endswith("data.pkl") for member in members)  # torch.save's zip format
    return path.endswith(TORCH_SUFFIXES)
