"""A run's files as evaluate.py and plot.py meet them: the newest checkpoint in runs/, the metrics JSON that goes with
a checkpoint (only when both come from one run), and a metrics file read defensively.

    path = newest_checkpoint("runs")                     # RunFilesError, one line, when there is none
    metrics, warning = read_metrics("runs/cnn.json")     # fields of the wrong type left out, and said in one line
    reason = other_run(checkpoint, metrics)              # None when the metrics are the checkpoint's run's
    holds_training_metrics("runs/cnn.json")              # a file a report must not replace unless asked

Which metrics belong to a checkpoint: a run writes the same run id into its checkpoint (meta/run_id) and its metrics
JSON ("run_id"). Both ids given: they must be equal. Only one given: the files come from different runs (a run writes
both or neither). Neither given (files written before run ids): the metrics' epochs must be the very records the
checkpoint keeps of its run (meta/metrics); a checkpoint without them (a PyTorch .pt file) cannot be matched.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from nets.commands import script_command
from nets.errors import NetsError

__all__ = ["MetricsError", "RunFilesError", "checkpoint_or_newest", "holds_training_metrics", "newest_checkpoint",
           "other_run", "read_metrics"]

MAX_METRICS_BYTES = 64 * 2**20  # a metrics JSON of thousands of epochs is well under this
TEXT_FIELDS = ("model", "impl", "dataset", "schedule", "run_id", "recipe", "strategy", "device")
NUMBER_FIELDS = ("test_accuracy", "lr", "batch_size")
EPOCH_NUMBERS = ("epoch", "train_loss", "test_loss", "train_accuracy", "test_accuracy", "lr_end", "seconds",
                 "images_per_second", "partial_epoch_images")


class RunFilesError(NetsError, ValueError):
    """No checkpoint where one was looked for; the message says how to make one."""


class MetricsError(NetsError, ValueError):
    """A metrics file that cannot be read as one; the message says what to pass instead."""


def newest_checkpoint(folder) -> Path:
    """The most recently written .npz checkpoint in `folder` (train.py's runs/); RunFilesError when there is none."""
    folder = Path(folder)
    try:
        candidates = [entry for entry in os.scandir(folder) if entry.name.endswith(".npz")
                      and not entry.name.startswith(".") and entry.is_file()]
    except OSError:  # no such folder (or not one): no checkpoint there
        candidates = []
    if not candidates:
        raise RunFilesError(f"no checkpoint given, and none in {folder}/ to take; train one first: "
                            f"{script_command('train')} (or make train), or give a checkpoint's path.")
    newest = max(candidates, key=lambda entry: (entry.stat().st_mtime_ns, entry.name))
    return folder / newest.name


def checkpoint_or_newest(given, folder) -> tuple[str, str | None]:
    """(the checkpoint to use, the line that names it when it was not given): `given`, else the newest in `folder`."""
    if given is not None:
        return given, None
    path = newest_checkpoint(folder)
    return str(path), f"checkpoint: {path} (the newest in {folder}/)"


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _finite(value) -> bool:
    """A number that is neither NaN nor infinite, nor an integer too large to be drawn as a float."""
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _wrong(value) -> str:
    kinds = {str: "text", list: "a list", dict: "an object", bool: "true/false", int: "a number", float: "a number"}
    return kinds.get(type(value), type(value).__name__)


def _clean_epochs(epochs: list, skipped: list) -> list:
    """The epoch records with every number finite and of the right type; wrong types noted in `skipped`."""
    clean = []
    for index, entry in enumerate(epochs):
        if not isinstance(entry, dict):
            skipped.append(f"epochs[{index}] ({_wrong(entry)})")
            continue
        record = {}
        for key, value in entry.items():
            if key not in EPOCH_NUMBERS:
                continue
            if not _is_number(value):
                if value is not None:
                    skipped.append(f"epochs[{index}].{key} ({_wrong(value)})")
            elif _finite(value):  # NaN and infinity are left out, as a missing value
                record[key] = value
        if not (isinstance(record.get("epoch"), int) and record["epoch"] >= 1):
            record.pop("epoch", None)
        clean.append(record)
    return clean


def clean_metrics(metrics: dict) -> tuple[dict, list[str]]:
    """A metrics dict -> (the same with only fields of the right type and finite numbers, the fields skipped)."""
    skipped: list[str] = []
    clean = {}
    for key, value in metrics.items():
        if key == "epochs":
            continue
        if key in TEXT_FIELDS and not isinstance(value, str):
            if value is not None:
                skipped.append(f"{key} ({_wrong(value)})")
        elif key in NUMBER_FIELDS and not _is_number(value):
            if value is not None:
                skipped.append(f"{key} ({_wrong(value)})")
        elif key in NUMBER_FIELDS and not _finite(value):
            continue
        else:
            clean[key] = value
    clean["epochs"] = _clean_epochs(metrics["epochs"], skipped)
    return clean, skipped


def read_metrics(path) -> tuple[dict, str | None]:
    """The metrics JSON train.py writes -> (its fields of the right type, with finite numbers; the one warning line
    naming what was skipped, or None). MetricsError, one line, when the file is not a metrics JSON at all."""
    advice = "pass the file train.py wrote with --metrics-json."
    if os.path.exists(path) and not os.path.isfile(path):
        raise MetricsError(f"--metrics {path} is not a regular file; {advice}")
    try:
        if os.path.getsize(path) > MAX_METRICS_BYTES:
            raise MetricsError(f"{path} is {os.path.getsize(path) / 2**20:.0f} MiB, more than a metrics JSON holds "
                               f"({MAX_METRICS_BYTES // 2**20} MiB at most); {advice}")
        with open(path, "rb") as file:
            metrics = json.load(file)
    except json.JSONDecodeError as error:
        raise MetricsError(f"{path} is not valid JSON ({error.msg} at line {error.lineno}); {advice}") from None
    except (UnicodeDecodeError, RecursionError):
        raise MetricsError(f"{path} is not a metrics JSON (not text, or nested too deep); {advice}") from None
    except FileNotFoundError:
        raise MetricsError(f"--metrics {path}: no such file; {advice}") from None
    except OSError as error:
        raise MetricsError(f"--metrics {path} cannot be read ({error.strerror or error}); {advice}") from None
    epochs = metrics.get("epochs") if isinstance(metrics, dict) else None
    if not isinstance(epochs, list):
        raise MetricsError(f"{path} does not hold a metrics object with a list of epochs; {advice}")
    clean, skipped = clean_metrics(metrics)
    if not skipped:
        return clean, None
    shown = ", ".join(skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
    return clean, f"warning: {path}: left out what is not of the kind train.py writes: {shown}."


def other_run(checkpoint, metrics: dict) -> str | None:
    """None when `metrics` were written by the run that wrote `checkpoint` (see the module docstring); else why not,
    as a clause ("its run id is 'b', the checkpoint's 'a'")."""
    theirs = metrics.get("run_id")
    ours = getattr(checkpoint, "run_id", None)
    if ours is not None and theirs is not None:
        return None if ours == theirs else f"its run id is {theirs!r}, the checkpoint's {ours!r}"
    if ours is not None:
        return f"it names no run, and the checkpoint is from run {ours!r}"
    if theirs is not None:
        return f"it is from run {theirs!r}, and the checkpoint names no run"
    history = getattr(checkpoint, "metrics", None)
    if not isinstance(history, list):
        return "neither names its run, and the checkpoint keeps no epochs to compare them with"
    recorded, _ = clean_metrics({"epochs": history})
    return None if recorded["epochs"] == metrics["epochs"] else (
        "its epochs are not those the checkpoint's run recorded")


def holds_training_metrics(path) -> bool:
    """Whether `path` is a file of a run's training metrics (a JSON object with a list of epoch records), which a
    report written there would replace."""
    try:
        if not os.path.isfile(path) or os.path.getsize(path) > MAX_METRICS_BYTES:
            return False
        with open(path, "rb") as file:
            metrics = json.load(file)
    except (OSError, ValueError, RecursionError):
        return False
    epochs = metrics.get("epochs") if isinstance(metrics, dict) else None
    return isinstance(epochs, list) and any(isinstance(entry, dict) for entry in epochs)
