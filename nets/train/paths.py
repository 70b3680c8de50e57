"""Where a run writes: the checkpoint after every epoch, the metrics JSON beside it, the Ctrl-C checkpoint, the
plots; all checked before any data is loaded, and said in one line before training starts.

    paths = output_paths(options, settings)   # --save, else back into --resume's file, else the default path
    check_outputs(options, paths)             # every path writable, nothing created yet (OutputError if not)
    check_against_data(paths, data)           # no output over a dataset file
    prepare_outputs(options, paths)           # right before training: the folders
    say(saving_plan(paths, resumed))

A new run never replaces another run's checkpoint unless the user names that file (--save, or --resume writing
back): the default path is numbered, runs/mnist-cnn-nets.npz, then runs/mnist-cnn-nets-2.npz, -3, ..., the first
whose checkpoint and metrics JSON are both free (as is the Ctrl-C checkpoint of a --no-save run).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from nets import outputs
from nets.data import datasets
from nets.train.settings import RunOptions, RunSettings

__all__ = ["DEFAULT_RUNS_DIR", "INTERRUPT_DIR", "OutputPaths", "check_against_data", "check_outputs",
           "default_checkpoint_path", "free_checkpoint_path", "metrics_path_beside", "output_paths", "prepare_outputs",
           "renumber_if_taken", "saving_plan"]

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
    default: str | None  # the default path, named after the dataset (which may fall back), that the checkpoint is
    #                      numbered after; None when the user named the checkpoint (or --no-save)
    interrupt_metrics: str | None = None  # the metrics JSON beside the Ctrl-C checkpoint
    resume: str | None = None  # the checkpoint --resume reads
    plot: str | None = None  # the folder of the plots (--plot, given now or by the run a resume continues)


def default_checkpoint_path(settings: RunSettings) -> str:
    """runs/<dataset>-<model>-<impl>.npz, relative to the current directory."""
    return str(DEFAULT_RUNS_DIR / f"{settings.dataset}-{settings.model}-{settings.impl}.npz")


def free_checkpoint_path(path) -> str:
    """`path` when neither it nor the metrics JSON beside it exists, else the first free one of path-2, path-3, ...
    (runs/cnn.npz -> runs/cnn-2.npz): a new run's own file, replacing no other run's."""
    path = Path(path)
    candidate, number = path, 1
    while os.path.lexists(candidate) or os.path.lexists(metrics_path_beside(str(candidate))):
        number += 1
        candidate = path.with_name(f"{path.stem}-{number}{path.suffix}")
    return str(candidate)


def metrics_path_beside(checkpoint: str) -> str:
    """The metrics JSON that goes with a checkpoint: runs/cnn.npz -> runs/cnn.json."""
    path = Path(checkpoint)
    beside = path.with_suffix(".json") if path.suffix != ".json" else path.with_name(path.stem + ".metrics.json")
    return str(beside)


def output_paths(options: RunOptions, settings: RunSettings) -> OutputPaths:
    """--save, else back into --resume's checkpoint, else the default path; none with --no-save."""
    default = None
    if options.save:
        checkpoint, label = options.save, "--save"
    elif options.no_save:
        checkpoint, label = None, None
    elif options.resume:
        checkpoint, label = options.resume, "--resume"
    else:
        default = default_checkpoint_path(settings)
        checkpoint, label = free_checkpoint_path(default), "the checkpoint"
    if settings.metrics_json:  # given now, or by the run a resume continues
        metrics, metrics_label = settings.metrics_json, "--metrics-json"
    elif checkpoint:
        metrics, metrics_label = metrics_path_beside(checkpoint), "the metrics"
    else:
        metrics, metrics_label = None, None
    interrupt = checkpoint or free_checkpoint_path(INTERRUPT_DIR / f"{settings.model}-{settings.impl}-interrupted.npz")
    interrupt_metrics = metrics if checkpoint else metrics_path_beside(interrupt)
    return OutputPaths(checkpoint, label, metrics, metrics_label, interrupt, default, interrupt_metrics, options.resume,
                       settings.plot)


def renumber_if_taken(paths: OutputPaths) -> str | None:
    """Right before the first save to a default (numbered) path: when another run has taken it meanwhile, move this
    run's checkpoint and metrics to the next free number; -> the line that says so, or None."""
    if not paths.default or not (os.path.lexists(paths.checkpoint) or os.path.lexists(paths.metrics)):
        return None
    taken = paths.checkpoint
    paths.checkpoint = paths.interrupt = free_checkpoint_path(taken)
    if paths.metrics_label == "the metrics":
        paths.metrics = paths.interrupt_metrics = metrics_path_beside(paths.checkpoint)
    return f"note: {taken} was written meanwhile by another run; this run saves to {paths.checkpoint} instead."


def _advice(label: str | None) -> str:
    if label == "--resume":
        return "pass --save PATH to write the resumed run elsewhere"
    if label in ("the checkpoint", "the metrics"):
        return "pass --save PATH (and --metrics-json PATH) to put them elsewhere, or --no-save"
    if label is None:
        return "pass --save PATH to put it elsewhere"
    return "choose another path"


def _checked_outputs(paths: OutputPaths) -> list:
    """(path, label) of every file the run may write."""
    files = [(paths.checkpoint, paths.checkpoint_label) if paths.checkpoint else (paths.interrupt, "the Ctrl-C checkpoint"),
             (paths.metrics, paths.metrics_label)]
    if paths.interrupt_metrics != paths.metrics:
        files.append((paths.interrupt_metrics, "the Ctrl-C checkpoint's metrics"))
    return [(path, label) for path, label in files if path]


def check_outputs(options: RunOptions, paths: OutputPaths) -> None:
    """Before anything is loaded: every output path can be written (creating nothing yet), and none is another of
    the run's files it would replace (the metrics over a checkpoint); OutputError if not."""
    for path, label in _checked_outputs(paths):
        outputs.check_file_creatable(path, label, _advice(None if label.startswith("the Ctrl-C") else label))
    if paths.metrics:
        resumed = paths.resume if paths.checkpoint_label != "--resume" else None  # written back, as asked
        outputs.refuse_overlap(paths.metrics, paths.metrics_label, {
            "the checkpoint's own path": paths.checkpoint or paths.interrupt,
            "the checkpoint --resume reads": resumed})
    if paths.plot:
        outputs.check_folder_creatable(paths.plot, "--plot")


def check_against_data(paths: OutputPaths, data: datasets.Dataset) -> None:
    """No output of the run is one of the dataset's files (OutputError): a checkpoint written there would replace
    the data."""
    found = datasets.dataset_files(data.directory)[0]
    for path, label in _checked_outputs(paths):
        outputs.refuse_overlap(path, label, {f"the dataset file {name}": name for name in map(str, found.values())})


def prepare_outputs(options: RunOptions, paths: OutputPaths) -> None:
    """Right before training: create the folders of the outputs (the Ctrl-C folder only when it is needed)."""
    if paths.checkpoint:
        outputs.prepare_file(paths.checkpoint, paths.checkpoint_label)
    if paths.metrics:
        outputs.prepare_file(paths.metrics, paths.metrics_label)
    if paths.plot:
        outputs.prepare_folder(paths.plot, "--plot")


def saving_plan(paths: OutputPaths, resumed: bool) -> str:
    """The line that says, before training, where the run will write."""
    if paths.checkpoint is None:
        metrics = f"; metrics to {paths.metrics}" if paths.metrics else ""
        return (f"Saving no checkpoint (--no-save){metrics}; Ctrl-C still saves one to {paths.interrupt}.")
    where = ("back to the checkpoint it resumed from, " if paths.checkpoint_label == "--resume" and resumed else "")
    note = ""
    if paths.default and paths.default != paths.checkpoint:
        note = f" (a new name: {paths.default} holds an earlier run, kept as it is)"
    elif paths.checkpoint_label == "--save" and os.path.isfile(paths.checkpoint):
        note = " (replacing the file there, as --save says)"
    return (f"Saving a checkpoint after every epoch {where}to {paths.checkpoint}{note}, "
            f"metrics to {paths.metrics}.")
