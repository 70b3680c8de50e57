"""What a checkpoint holds, on the host; the one error reading or restoring it can raise; which files are
there to be read (an existing, readable file; a PyTorch one, told by content)."""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, field

from nets.errors import NetsError, first_line

__all__ = ["Checkpoint", "CheckpointError", "NonFiniteError", "TORCH_SUFFIXES", "is_torch_file", "require_file"]

TORCH_SUFFIXES = (".pt", ".pth")


class CheckpointError(NetsError, ValueError):
    """A checkpoint cannot be read or does not fit the model; the one-line message says which and why."""


class NonFiniteError(CheckpointError):
    """Parameters holding NaN or infinity were not saved (a diverged model never replaces a file); `parameter` and
    `count` say where."""

    def __init__(self, message: str, parameter: str, count: int):
        super().__init__(message)
        self.parameter, self.count = parameter, count


@dataclass
class Checkpoint:
    """What a checkpoint file holds, on the host.

    params: parameter name -> numpy array, in the model's order (PyTorch state_dict names).
    model_config: the model's config() (inferred from the shapes for a file that does not say); its "name" is
        the model ("mlp" or "cnn"). dtype: the parameters' dtype.
    optimizer_state: an Optimizer.state_dict(), or None when none was saved.
    epoch: completed epochs; step_in_epoch: completed steps of the epoch under way; images_in_epoch: the images of
    that epoch trained on, when the file says (a run resumed mid-epoch with another batch size), else None.
    rng_state: numpy bit_generator.state, or None; epoch_rng_state: its state when that epoch began, or None.
    config, metrics: whatever JSON the trainer saved ({} and None when absent). source: "npz" or "torch".
    dataset: the dataset the model was trained on ("mnist", "fashion-mnist"), None when the file does not say
    (a .pt file, or a checkpoint that names none); class_names: its classes in output order, or None.
    """

    params: dict
    model_config: dict
    dtype: str
    epoch: int = 0
    step_in_epoch: int = 0
    images_in_epoch: int | None = None
    optimizer_state: dict | None = None
    rng_state: dict | None = None
    epoch_rng_state: dict | None = None
    config: dict = field(default_factory=dict)
    metrics: dict | list | None = None
    dataset: str | None = None
    class_names: list | None = None
    source: str = "npz"
    path: str | None = None
    run_id: str | None = None  # the run that wrote it (its metrics JSON names the same), None where the file has none
    data_checksums: dict | None = None  # {IDX file name: MD5} of the data it was trained on, when the file says

    @property
    def model_name(self) -> str:
        return self.model_config["name"]


def require_file(path) -> str:
    """The path of an existing, readable regular file; CheckpointError, one line, otherwise."""
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


def is_torch_file(path) -> bool:
    """Whether `path` holds a torch.save file, told by content: a zip archive with a data.pkl member, or (torch's
    legacy pre-1.6 format, not a zip) a file named .pt or .pth. An .npz is a zip archive without data.pkl."""
    path = os.fspath(path)
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                members = archive.namelist()
        except (zipfile.BadZipFile, OSError) as error:
            raise CheckpointError(f"{path} is a corrupt checkpoint ({first_line(error)}); save it again.") from None
        return any(member.endswith("data.pkl") for member in members)  # torch.save's zip format
    return path.endswith(TORCH_SUFFIXES)
