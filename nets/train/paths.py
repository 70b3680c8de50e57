"""Where a run writes: the checkpoint after every epoch, the metrics JSON beside it, the Ctrl-C checkpoint, the
plots; all checked before any data is loaded, and said in one line before training starts.

    paths = output_paths(options, settings)   # --save, else back into --resume's file, else the default path
    check_outputs(options, paths)             # every path writable, nothing created yet (OutputError if not)
    check_against_data(paths, data)           # no output over a dataset file
    prepare_outputs(options, paths)           # right before training: the folders
    log(saving_plan(paths, resumed))
    note = claim_and_save(paths, write_checkpoint, metrics_for)   # the first save to a numbered name

A new run never replaces another run's checkpoint unless the user names that file (--save, or --resume writing
back): the default path is numbered, runs/mnist-cnn-nets.npz, then runs/mnist-cnn-nets-2.npz, -3, ..., the first
whose checkpoint and metrics JSON are both free (as is the Ctrl-C checkpoint of a --no-save run). The number is
claimed at the first save, for the pair: the checkpoint takes its name only where nothing has it, in one step (a
hard link of the written file), then its metrics JSON the same way; so of runs started together in one folder each
keeps its own pair.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from nets import outputs
from nets.data import datasets
from nets.train.settings import RunOptions, RunSettings

__all__ = ["DEFAULT_RUNS_DIR", "INTERRUPT_DIR", "OutputPaths", "check_against_data", "check_outputs",
           "claim_and_save", "default_checkpoint_path", "free_checkpoint_path", "metrics_path_beside", "output_paths",
           "prepare_outputs", "saving_plan"]

DEFAULT_RUNS_DIR = Path("runs")
INTERRUPT_DIR = Path("checkpoints")
MAX_NUMBER = 100_000  # runs of one kind in one folder; past it, a numbered name is refused (OutputError)


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
    numbered_from: str | None = None  # the name the first save numbers after (the default checkpoint, or a --no-save
    #                                   run's Ctrl-C checkpoint) until that save claims one; None once it has

    @property
    def unclaimed(self) -> bool:
        """Whether the next save is the first to a numbered name (claim_and_save, not a plain write)."""
        return self.numbered_from is not None


def default_checkpoint_path(settings: RunSettings) -> str:
    """runs/<dataset>-<model>-<impl>.npz, relative to the current directory."""
    return str(DEFAULT_RUNS_DIR / f"{settings.dataset}-{settings.model}-{settings.impl}.npz")


def _numbered(path):
    """path, path-2, path-3, ... (runs/cnn.npz -> runs/cnn-2.npz), as strings."""
    path = Path(path)
    for number in range(1, MAX_NUMBER + 1):
        yield str(path if number == 1 else path.with_name(f"{path.stem}-{number}{path.suffix}"))
    raise outputs.OutputError(f"{path} and {MAX_NUMBER - 1} numbered names after it are all taken; pass --save PATH, "
                              "or move earlier runs elsewhere.")


def _taken(checkpoint: str) -> bool:
    return os.path.lexists(checkpoint) or os.path.lexists(metrics_path_beside(checkpoint))


def free_checkpoint_path(path) -> str:
    """`path` when neither it nor the metrics JSON beside it exists, else the first free one of path-2, path-3, ...
    (runs/cnn.npz -> runs/cnn-2.npz): a new run's own file, replacing no other run's. Free now: the first save
    claims it (claim_and_save), and takes the next number if another run has claimed it meanwhile."""
    return next(name for name in _numbered(path) if not _taken(name))


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
    numbered_from = default
    if checkpoint:
        interrupt = checkpoint
    else:
        numbered_from = str(INTERRUPT_DIR / f"{settings.model}-{settings.impl}-interrupted.npz")
        interrupt = free_checkpoint_path(numbered_from)
    interrupt_metrics = metrics if checkpoint else metrics_path_beside(interrupt)
    return OutputPaths(checkpoint, label, metrics, metrics_label, interrupt, default, interrupt_metrics, options.resume,
                       settings.plot, numbered_from)


def claim_and_save(paths: OutputPaths, write_checkpoint, metrics_for) -> str | None:
    """The first save to a numbered name (paths.unclaimed): the checkpoint written by write_checkpoint(path) under the
    first number whose checkpoint and metrics JSON are both free, each name taken only where nothing has it, in one
    step (outputs.write_new), the metrics JSON beside it (when it goes there) written from metrics_for(checkpoint
    path). Of runs claiming names together, each gets its own pair. paths then names the claimed files; -> the line
    saying the number differs from the one announced, or None."""
    planned = paths.interrupt
    beside = paths.interrupt_metrics == metrics_path_beside(planned)  # else --metrics-json: written as usual
    for candidate in _numbered(paths.numbered_from):
        if _taken(candidate) or not outputs.write_new(candidate, write_checkpoint):
            continue
        metrics = metrics_path_beside(candidate)
        if not beside or outputs.write_new(metrics, lambda target: outputs.atomic_write(
                target, lambda file: file.write(outputs.json_bytes(metrics_for(candidate))))):
            break
        os.unlink(candidate)  # its metrics' name was taken meanwhile (not by a run, which claims checkpoints first)
    if paths.checkpoint:
        paths.checkpoint = candidate
    paths.interrupt, paths.numbered_from = candidate, None
    if beside:
        paths.interrupt_metrics = metrics_path_beside(candidate)
        if paths.metrics_label == "the metrics":
            paths.metrics = paths.interrupt_metrics
    if candidate == planned:
        return None
    return f"note: {planned} was taken meanwhile by another run; this run saves to {candidate} instead."


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
    files = [(paths.checkpoint, paths.checkpoint_label) if paths.checkpoint
             else (paths.interrupt, "the Ctrl-C checkpoint"),
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
