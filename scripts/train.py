#!/usr/bin/env python3
"""Train the MLP or the CNN, hand-written (nets) or the PyTorch baseline (torch), on CPU or GPU.

A thin command line over nets.train.run (the examples are in EXAMPLES, which --help prints): user mistakes end in
one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import sys

import click

from _cli import FiniteFloat, one_line_errors  # also puts the project on sys.path

from backend import DEVICES
from nets.data.datasets import DATASET_NAMES
from nets.nn.layers.base import INITS
from nets.nn.models import MODEL_NAMES
from nets.optim import OPTIMIZERS
from nets.data.augment import AugmentError, Augmentation
from nets.train.recipes import RECIPE_NAMES, recipe_defaults, recipe_name
from nets.train.run import DTYPES, EXIT_INTERRUPTED, IMPLS, Interrupted, RunOptions, train_run
from nets.optim.schedules import SCHEDULES


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


class RecipeChoice(click.Choice):
    """The recipes by name; an old name ("seed") is accepted for the one it became ("notebook")."""

    def convert(self, value, param, ctx):
        return super().convert(recipe_name(value), param, ctx)


def positive(kind):
    return click.IntRange(min=1) if kind is int else FiniteFloat(min=0.0, min_open=True)


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}, epilog=EXAMPLES)
@click.option("--model", type=click.Choice(MODEL_NAMES), default=None, help="Architecture (default cnn).")
@click.option("--impl", type=click.Choice(IMPLS), default=None,
              help="Hand-written nets (default) or the PyTorch baseline, through the same loop.")
@click.option("--device", type=click.Choice(DEVICES), default="cpu", show_default=True,
              help="auto picks the GPU when CuPy and CUDA work.")
@click.option("--dataset", type=click.Choice(DATASET_NAMES), default=None,
              help="Default mnist; falls back to fashion-mnist when MNIST is absent.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Folder holding the four IDX files.")
@click.option("--epochs", type=positive(int), default=None,
              help=f"Passes over the training set. [{recipe_defaults('epochs')}]")
@click.option("--batch-size", type=positive(int), default=None,
              help=f"Images per training step. [{recipe_defaults('batch_size')}]")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default=None,
              help=f"[{recipe_defaults('optimizer')}]")
@click.option("--lr", type=positive(float), default=None,
              help=f"Learning rate (the peak, under a one-cycle schedule). [{recipe_defaults('lr')}]")
@click.option("--momentum", type=FiniteFloat(0.0, 1.0, max_open=True), default=None,
              help=f"SGD momentum. [{recipe_defaults('momentum')}]")
@click.option("--weight-decay", type=FiniteFloat(min=0.0), default=None,
              help=f"L2 weight decay. [{recipe_defaults('weight_decay')}]")
@click.option("--schedule", type=click.Choice(SCHEDULES), default=None,
              help=f"Learning-rate schedule: constant, or torch's OneCycleLR shape. [{recipe_defaults('schedule')}]")
@click.option("--init", type=click.Choice(INITS), default=None,
              help=f"Weight initialisation. [{recipe_defaults('init')}]")
@click.option("--augment", type=AugmentChoice(), default=None,
              help="Each epoch, flip: mirror a random half of the training images left-right; shift:N: move each "
                   "image by up to N pixels (default 2) in x and y; flip+shift:N: both. auto (the default "
                   "recipe's): shift:2 on mnist; flip+shift:1 for the cnn on fashion-mnist, none for the mlp there. "
                   f"[{recipe_defaults('augment')}]")
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Seeds initialisation and shuffling (default 0).")
@click.option("--dtype", type=click.Choice(DTYPES), default=None, help="Default float32.")
@click.option("--recipe", type=RecipeChoice(RECIPE_NAMES), default=None,
              help="default: this project's; notebook: the course notebook's (also accepted as seed, its old "
                   "name). Explicit options override it.  [default: default]")
@click.option("--save", type=click.Path(dir_okay=False), default=None,
              help="Checkpoint (.npz) written atomically after every epoch [default: runs/DATASET-MODEL-IMPL.npz; "
                   "with --resume, back into that checkpoint].")
@click.option("--no-save", is_flag=True, help="Write no checkpoint after each epoch (Ctrl-C still saves one).")
@click.option("--resume", type=click.Path(dir_okay=False), default=None, help="Continue exactly from a checkpoint.")
@click.option("--metrics-json", type=click.Path(dir_okay=False), default=None,
              help="Per-epoch metrics as JSON [default: beside the checkpoint, same name, .json].")
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False), default=None, help="Write PNG plots here.")
@click.option("--quiet", is_flag=True, help="Only the final accuracy.")
@click.option("--no-download", is_flag=True, help="Never download datasets.")
@click.option("--stop-after-steps", type=positive(int), default=None, hidden=True)
@one_line_errors
def main(model, impl, device, dataset, data_dir, epochs, batch_size, optimizer, lr, momentum, weight_decay,
         schedule, init, augment, seed, dtype, recipe, save, no_save, resume, metrics_json, plot_dir, quiet,
         no_download, stop_after_steps):
    """Train the MLP or the CNN on MNIST-format data and report test accuracy."""
    if save and no_save:
        raise click.UsageError("--save and --no-save contradict each other; give one of them.")
    options = RunOptions(
        model=model, impl=impl, device=device, dataset=dataset, data_dir=data_dir, recipe=recipe, epochs=epochs,
        batch_size=batch_size, optimizer=optimizer, lr=lr, momentum=momentum, weight_decay=weight_decay,
        schedule=schedule, init=init, augment=augment, seed=seed, dtype=dtype, save=save, no_save=no_save,
        resume=resume, metrics_json=metrics_json, plot=plot_dir, quiet=quiet, download=not no_download, stop_after_steps=stop_after_steps)
    say = (lambda line: None) if quiet else (lambda line: click.echo(line))
    try:
        result = train_run(options, say=say, progress=progress_bar_factory(not quiet and sys.stdout.isatty()))
    except Interrupted as stop:  # not an error: the checkpoint is written (other user errors: see _cli)
        click.echo(str(stop), err=True)
        sys.exit(EXIT_INTERRUPTED)
    except KeyboardInterrupt:  # before training started (loading data), or a second Ctrl-C
        click.echo("interrupted; no training step had completed since the last checkpoint.", err=True)
        sys.exit(EXIT_INTERRUPTED)
    metrics = result.metrics
    click.echo(f"test accuracy: {metrics['test_accuracy']:.2%} ({metrics['model']}, {metrics['impl']}, "
               f"{metrics['dataset']}, {metrics['device']}, {metrics['train_seconds']:.1f} s of training)")
    if quiet:
        return
    for line in where_it_went(result):
        click.echo(line)


def where_it_went(result) -> list[str]:
    """The run's last lines: where the checkpoint, the metrics and the plots went, and what to do next."""
    lines = []
    if result.checkpoint_path is None:
        lines.append("checkpoint: none written (--no-save)")
    else:
        back = " (written back to the checkpoint it resumed from)" if result.checkpoint_path == result.resumed_from else ""
        lines.append(f"checkpoint: {result.checkpoint_path}{back}; "
                     f"score it with: python scripts/evaluate.py {result.checkpoint_path}")
    if result.metrics_path is None:
        lines.append("metrics: none written (pass --metrics-json PATH)")
    else:
        lines.append(f"metrics: {result.metrics_path}")
    lines.extend(f"plot: {path}" for path in result.plot_paths)
    return lines


if __name__ == "__main__":
    main()
