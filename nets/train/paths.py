"""Where a run writes: the checkpoint after every epoch, the metrics JSON beside it, the Ctrl-C checkpoint, the
plots; all checked before any data is loaded, and said in one line before training starts.

    paths = output_paths(options, settings)   # --save, else back into --resume's file, else the default path
    check_outputs(options, paths)             # every path writable, nothing created yet (OutputError if not)
    prepare_outputs(options, paths)           # right before training: the folders
    say(saving_plan(paths, resumed))
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from nets import outputs
from nets.train.settings import RunError, RunOptions, RunSettings

__all__ = ["DEFAULT_RUNS_DIR", "INTERRUPT_DIR", "OutputPaths", "check_outputs", "default_checkpoint_path",
           "metrics_path_beside", "output_paths", "prepare_outputs", "saving_plan"]

DEFAULT_RUNS_DIR = Path("runs")
INTERRUPT_DIR = Path("checkpoints")


@dataclass
class OutputPaths:
    """Where a run writes. checkpoint: after every epoch (None with --no-save); metrics: the metrics JSON, beside
    the checkpoint unless --metrics-json says otherwise (None when neither); interrupt: where Ctrl-C saves.
    labels name each path's origin in messages ("--save", "--resume", "the checkpoint", ...)."""

    checkpoint: str | None
    checkpoint_label: str | None
    metrics: str | None
    metrics_label: str | None
    interrupt: str
    default: bool  # the checkpoint path is the default one, named after the dataset (which may fall back)


def default_checkpoint_path(settings: RunSettings) -> str:
    """runs/<dataset>-<model>-<impl>.npz, relative to the current directory."""
    return str(DEFAULT_RUNS_DIR / f"{settings.dataset}-{settings.model}-{settings.impl}.npz")


def metrics_path_beside(checkpoint: str) -> str:
    """The metrics JSON that goes with a checkpoint: runs/cnn.npz -> runs/cnn.json."""
    path = Path(checkpoint)
    beside = path.with_suffix(".json") if path.suffix != ".json" else path.with_name(path.stem + ".metrics.json")
    return str(beside)


def output_paths(options: RunOptions, settings: RunSettings) -> OutputPaths:
    """--save, else back into --resume's checkpoint, else the default path; none with --no-save."""
    default = False
    if options.save:
        checkpoint, label = options.save, "--save"
    elif options.no_save:
        checkpoint, label = None, None
    elif options.resume:
        checkpoint, label = options.resume, "--resume"
    else:
        checkpoint, label, default = default_checkpoint_path(settings), "the checkpoint", True
    if options.metrics_json:
        metrics, metrics_label = options.metrics_json, "--metrics-json"
    elif checkpoint:
        metrics, metrics_label = metrics_path_beside(checkpoint), "the metrics"
    else:
        metrics, metrics_label = None, None
    if checkpoint and metrics and os.path.abspath(checkpoint) == os.path.abspath(metrics):
        raise RunError(f"--metrics-json {metrics} is the checkpoint's own path; give the metrics another file.")
    interrupt = checkpoint or str(INTERRUPT_DIR / f"{settings.model}-{settings.impl}-interrupted.npz")
    return OutputPaths(checkpoint, label, metrics, metrics_label, interrupt, default)


def _advice(label: str | None) -> str:
    if label == "--resume":
        return "pass --save PATH to write the resumed run elsewhere"
    if label in ("the checkpoint", "the metrics"):
        return "pass --save PATH (and --metrics-json PATH) to put them elsewhere, or --no-save"
    if label is None:
        return "pass --save PATH to put it elsewhere"
    return "choose another path"


def check_outputs(options: RunOptions, paths: OutputPaths) -> None:
    """Before anything is loaded: every output path can be written (creating nothing yet); OutputError if not."""
    if paths.checkpoint:
        outputs.check_file_creatable(paths.checkpoint, paths.checkpoint_label, _advice(paths.checkpoint_label))
    else:
        outputs.check_file_creatable(paths.interrupt, "the Ctrl-C checkpoint", _advice(None))
    if paths.metrics:
        outputs.check_file_creatable(paths.metrics, paths.metrics_label, _advice(paths.metrics_label))
    if options.plot:
        outputs.check_folder_creatable(options.plot, "--plot")


def prepare_outputs(options: RunOptions, paths: OutputPaths) -> None:
    """Right before training: create the folders of the outputs (the Ctrl-C folder only when it is needed)."""
    if paths.checkpoint:
        outputs.prepare_file(paths.checkpoint, paths.checkpoint_label)
    if paths.metrics:
        outputs.prepare_file(paths.metrics, paths.metrics_label)
    if options.plot:
        outputs.prepare_folder(options.plot, "--plot")


def saving_plan(paths: OutputPaths, resumed: bool) -> str:
    """The line that says, before training, where the run will write."""
    if paths.checkpoint is None:
        metrics = f"; metrics to {paths.metrics}" if paths.metrics else ""
        return (f"Saving no checkpoint (--no-save){metrics}; Ctrl-C still saves one to {paths.interrupt}.")
    where = ("back to the checkpoint it resumed from, " if paths.checkpoint_label == "--resume" and resumed else "")
    replacing = " (replacing the one there)" if paths.default and os.path.exists(paths.checkpoint) else ""
    return (f"Saving a checkpoint after every epoch {where}to {paths.checkpoint}{replacing}, "
            f"metrics to {paths.metrics}.")
