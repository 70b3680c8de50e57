#!/usr/bin/env python3
"""Train the MLP or the CNN, hand-written (nets) or the PyTorch baseline (torch), on CPU or GPU.

A thin command line over nets.train.run (the examples are in EXAMPLES, which --help prints): user mistakes end in
one line on stderr and a non-zero exit.
"""

from __future__ import annotations

# First: from here on Ctrl-C, SIGTERM and SIGHUP give one line; a Python without numpy, click, ... is told how to set
# them up; the project is put on sys.path.
from _cli import Checked, one_line_errors, refuse_empty, run

import sys  # noqa: E402
from dataclasses import fields  # noqa: E402

import click  # noqa: E402

from backend import HIDDEN_DEVICES
from nets.commands import script_command
from nets.baseline.engine import engine_for_run as torch_engine
from nets.data.augment import AugmentError, Augmentation
from nets.train.engine import engine_for_run as nets_engine
from nets.train import interrupt
from nets.train.interrupt import Interrupted
from nets.train.run import train_run
from nets.train.settings import RunOptions

ENGINES = {"nets": nets_engine, "torch": torch_engine}  # the baseline's is built only for --impl torch


EXAMPLES = """Examples:

\b
  python scripts/train.py                              # CNN, default recipe, CPU; keeps runs/mnist-cnn-nets.npz
  python scripts/train.py --model mlp --device gpu     # CuPy
  python scripts/train.py --impl torch                 # the PyTorch baseline, same loop and data order
  python scripts/train.py --recipe notebook --model mlp   # the course notebook's recipe
  python scripts/train.py --dataset fashion-mnist --augment flip+shift:1 --plot runs/plots
  python scripts/train.py --resume runs/mnist-cnn-nets.npz   # continue after Ctrl-C, writing back to it
  python scripts/train.py --epochs 1 --no-save         # a quick look; keeps nothing

Options left out come from the recipe (shown in brackets for each); an explicit option always wins, on
--resume over the checkpoint's settings too."""


def progress_bar_factory(enabled: bool):
    """tqdm bars per epoch when stdout is a terminal; None (no bars) otherwise."""
    if not enabled:
        return None
    from tqdm import tqdm

    def make(total, description):
        return tqdm(total=total, desc=description, unit="step", leave=False, dynamic_ncols=True, file=sys.stdout)

    return make


class AugmentChoice(click.ParamType):
    """none, flip, shift, shift:N, flip+shift[:N] or auto, given in nets.data.augment's canonical spelling."""

    name = "augment"

    def get_metavar(self, param, ctx=None):
        return "[none|flip|shift[:N]|flip+shift[:N]|auto]"

    def convert(self, value, param, ctx):
        if value == "auto":
            return value
        try:
            return Augmentation.parse(value).name
        except AugmentError as error:
            self.fail(str(error), param, ctx)


class DeviceChoice(click.Choice):
    """The devices --help shows, and the hidden ones (backend.HIDDEN_DEVICES: the CuPy stand-in, for tests)."""

    def convert(self, value, param, ctx):
        if value in HIDDEN_DEVICES:
            return value
        return super().convert(value, param, ctx)


KINDS = {  # the numeric kinds ("int>=1", ...) are nets.validate's, as RunSettings checks them
    # readable=False: an unreadable --resume or --data-dir is said in one line, exit 1, by the code that reads it
    "file": lambda: click.Path(dir_okay=False, readable=False),
    "folder": lambda: click.Path(file_okay=False, readable=False),
    "augment": AugmentChoice,
}


def run_options(function):
    """One click option per RunOptions field, in field order, from the field's metadata (nets/train/settings.py)."""
    for spec in reversed(fields(RunOptions)):
        meta = spec.metadata
        kind, choices = meta["kind"], meta["choices"]
        settings = dict(default=spec.default, help=meta["help"] or None, hidden=meta["hidden"],
                        show_default=meta["show_default"])
        if kind == "flag":
            settings["is_flag"] = True
        elif kind == "device":
            settings["type"] = DeviceChoice(choices)
        elif choices is not None:
            settings["type"] = click.Choice(choices)
        elif kind in KINDS:
            settings["type"] = KINDS[kind]()
        else:
            settings["type"] = Checked.kind(kind)
        function = click.option("--" + spec.name.replace("_", "-"), **settings)(function)
    return function


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}, epilog=EXAMPLES)
@run_options
@one_line_errors
def main(**given):
    """Train the MLP or the CNN on MNIST-format data and report test accuracy."""
    refuse_empty({"--" + spec.name.replace("_", "-"): given[spec.name] for spec in fields(RunOptions)
                  if spec.metadata["kind"] in ("file", "folder")})
    options = RunOptions(**given)
    if options.save and options.no_save:
        raise click.UsageError("--save and --no-save contradict each other; give one of them.")
    quiet = options.quiet
    log = (lambda line: None) if quiet else (lambda line: click.echo(line))
    try:
        result = train_run(options, ENGINES, log=log, progress=progress_bar_factory(not quiet and sys.stdout.isatty()))
    except Interrupted as stop:  # not an error: the checkpoint is written (other user errors: see _cli)
        log_last(str(stop))
        sys.exit(stop.exit_code)
    except KeyboardInterrupt as stop:  # before training started (loading data): once it has, a stop signal ends in
        #                                Interrupted; Stopped for SIGTERM and SIGHUP
        log_last(f"{interrupt.interrupted_by(getattr(stop, 'signum', None))} before training started; no checkpoint "
                 "was written.")
        sys.exit(interrupt.exit_code_of(stop))
    metrics = result.metrics
    impl = f"{metrics['impl']} reference" if metrics["layers"] == "reference" else metrics["impl"]
    click.echo(f"test accuracy: {metrics['test_accuracy']:.2%} ({metrics['model']}, {impl}, "
               f"{metrics['dataset']}, {metrics['device']}, {metrics['train_seconds']:.1f} s of training)")
    if not quiet:
        for line in where_it_went(result):
            click.echo(line)
    if interrupt.received() is not None:  # a signal while the last epoch finished: it was trained and saved whole
        log_last(f"{interrupt.interrupted_by()} as training finished; the run is complete and everything it wrote "
                 "is whole.")
        sys.exit(interrupt.exit_code(interrupt.received()))


def log_last(line: str) -> None:
    """The run's last line, on stderr; a terminal that hung up (SIGHUP) cannot show it, which changes nothing."""
    try:
        click.echo(line, err=True)
    except OSError:
        pass


def where_it_went(result) -> list[str]:
    """The run's last lines: where the checkpoint, the metrics and the plots went, and what to do next."""
    lines = []
    data_dir = ("--data-dir", result.data_dir) if result.data_dir else ()
    if result.checkpoint_path is None:
        lines.append("checkpoint: none written (--no-save)")
    else:
        resumed_here = result.checkpoint_path == result.resumed_from
        back = " (written back to the checkpoint it resumed from)" if resumed_here else ""
        lines.append(f"checkpoint: {result.checkpoint_path}{back}; "
                     f"score it with: {script_command('evaluate', result.checkpoint_path, *data_dir)}")
    if result.metrics_path is None:
        lines.append("metrics: none written (pass --metrics-json PATH)")
    else:
        lines.append(f"metrics: {result.metrics_path}")
    lines.extend(f"plot: {path}" for path in result.plot_paths)
    return lines


if __name__ == "__main__":
    run(main)
