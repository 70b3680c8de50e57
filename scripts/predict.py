#!/usr/bin/env python3
"""Classify your own pictures of digits (or clothes) with a trained checkpoint.

    python scripts/predict.py runs/cnn.npz my_seven.png photo_of_a_three.jpg --top 3

Each IMAGE (PNG or JPEG, any size, colour or grey) is turned into an MNIST-style 28x28 input first
(see nets/data/digits.py). A file that cannot be read, or shows nothing, is reported in one line; the others
are still classified, and the exit status is 1 when any image failed.

The first line says which dataset the model was trained on (the checkpoint says so) and names its classes;
a model of clothes gets a warning that digit preprocessing is applied to its pictures. --dataset only names
the classes of a checkpoint that does not say (a PyTorch .pt file, an older checkpoint); it never renames
the classes of one that does.
"""

from __future__ import annotations

from _cli import one_line_errors, refuse_empty  # first: it puts the project on sys.path, catches an early Ctrl-C

import click
import numpy

from backend import DEVICES
from nets.baseline.checkpoint import load_any_checkpoint
from nets.devices import open_backend
from nets.checkpoint import restore_model
from nets.data.datasets import DATASET_NAMES, TITLES
from nets.data.digits import DigitImageError, load_digit
from nets.nn.inference import predict_probabilities
from nets.report.evaluation import check_classes, digit_preprocessing_warning, model_classes, top_classes


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--top", "top_k", type=click.IntRange(1, 10), default=3, show_default=True,
              help="How many classes to show per image.")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option("--dataset", type=click.Choice(DATASET_NAMES), default=None,
              help="Names the classes of a checkpoint that does not say its dataset (it never renames those of one "
                   "that does).")
@one_line_errors
def main(checkpoint, images, top_k, device, dataset):
    """Print the TOP most probable classes of each IMAGE under the model in CHECKPOINT."""
    refuse_empty({"CHECKPOINT": checkpoint, **{"IMAGE": image for image in images}})
    backend = open_backend(device, say=click.echo)
    saved = load_any_checkpoint(checkpoint)
    names, knows = model_classes(saved, checkpoint, dataset)
    check_classes(saved, checkpoint, names, TITLES[saved.dataset or dataset or "mnist"])
    model = restore_model(saved, backend)
    click.echo(knows)
    warning = digit_preprocessing_warning(saved.dataset or dataset)
    if warning:
        click.echo(warning, err=True)

    digits, readable, failed = [], [], 0
    for path in images:
        try:
            digits.append(load_digit(path))
            readable.append(path)
        except DigitImageError as error:
            click.echo(f"error: {error}", err=True)
            failed += 1
    if digits:
        probabilities = predict_probabilities(model, numpy.stack(digits))
        for path, best in zip(readable, top_classes(probabilities, top_k)):
            guesses = ", ".join(f"{names[k]} {100 * p:.1f}%" for k, p in best)
            click.echo(f"{path}: {guesses}")
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
