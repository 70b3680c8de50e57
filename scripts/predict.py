#!/usr/bin/env python3
"""Classify your own pictures of digits or clothes with a trained checkpoint.

    python scripts/predict.py my_seven.png boot.jpg                 # the newest checkpoint in runs/
    python scripts/predict.py runs/cnn.npz my_seven.png --top 3     # this checkpoint
    python scripts/predict.py boot.jpg --show seen/                 # also write what the model was given

A first argument ending in .npz, .pt or .pth is the checkpoint (or --checkpoint PATH); without one, the newest
.npz in runs/ is taken and named. Each IMAGE (PNG or JPEG, any size, colour or grey) becomes a 28x28 input
prepared as the model's training pictures were (see nets/data/digits.py): a digit model's as MNIST's digits (cropped
to the ink, scaled into 20x20, centred by mass), a Fashion-MNIST model's as its clothes (the item fitted to the
whole frame); --prepare digits|clothes|none overrides that. A file that cannot be read, or shows nothing, is
reported in one line; the others are still classified, and the exit status is 1 when any image failed.

The first line says which dataset the model was trained on and names its classes, the second how the pictures
were prepared. --dataset only names the classes of a checkpoint that does not say (a PyTorch .pt file); it never
renames the classes of one that does.
"""

from __future__ import annotations

from pathlib import Path

from _cli import fail, one_line_errors, refuse_empty, run  # first: signals, the project's packages, sys.path

import click
import numpy

from backend import DEVICES
from nets.baseline.checkpoint import load_any_checkpoint
from nets.checkpoint import restore_model
from nets.checkpoint.record import TORCH_SUFFIXES
from nets.data.datasets import DATASET_NAMES, TITLES
from nets.data.digits import STYLES, DigitImageError, load_picture
from nets.devices import open_backend
from nets.nn.inference import predict_probabilities
from nets.outputs import check_folder_creatable, prepare_folder, refuse_overlap
from nets.report.evaluation import check_classes, model_classes, top_classes
from nets.report.pictures import choose_preparation, shown_name, write_shown
from nets.report.runs import checkpoint_or_newest
from nets.train.paths import DEFAULT_RUNS_DIR

CHECKPOINT_SUFFIXES = (".npz", *TORCH_SUFFIXES)


def split_arguments(paths: tuple, checkpoint: str | None) -> tuple[str | None, list[str]]:
    """(the checkpoint, the images): --checkpoint, else a first argument ending in .npz, .pt or .pth, else None."""
    if checkpoint is None and paths and paths[0].lower().endswith(CHECKPOINT_SUFFIXES):
        return paths[0], list(paths[1:])
    return checkpoint, list(paths)


def classify(model, pictures: list, top_k: int, names: list) -> list[list[str]]:
    """The top_k answers of each picture, as "Ankle boot 97.1%" texts."""
    probabilities = predict_probabilities(model, numpy.stack(pictures))
    return [[f"{names[k]} {100 * p:.1f}%" for k, p in best] for best in top_classes(probabilities, top_k)]


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("paths", nargs=-1, required=True, metavar="[CHECKPOINT] IMAGE...")
@click.option("--checkpoint", type=click.Path(dir_okay=False, readable=False), default=None,
              help="The checkpoint to use [default: a first argument ending in .npz, .pt or .pth, else the newest "
                   ".npz in runs/].")
@click.option("--top", "top_k", type=click.IntRange(1, 10), default=3, show_default=True,
              help="How many classes to show per image.")
@click.option("--prepare", type=click.Choice(tuple(STYLES)), default=None,
              help="How each picture becomes a 28x28 input: digits (as MNIST's), clothes (as Fashion-MNIST's), none "
                   "(as it is) [default: as the model's own training pictures were].")
@click.option("--show", "show_dir", type=click.Path(file_okay=False, readable=False), default=None,
              help="Write each prepared 28x28, beside its answer, as a PNG into this folder.")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option("--dataset", type=click.Choice(DATASET_NAMES), default=None,
              help="Names the classes of a checkpoint that does not say its dataset (it never renames those of one "
                   "that does).")
@one_line_errors
def main(paths, checkpoint, top_k, prepare, show_dir, device, dataset):
    """Print the TOP most probable classes of each IMAGE under the model in CHECKPOINT."""
    refuse_empty({"--checkpoint": checkpoint, "--show": show_dir, **{"IMAGE": path for path in paths}})
    checkpoint, images = split_arguments(paths, checkpoint)
    if not images:
        fail(f"no IMAGE after the checkpoint {checkpoint}; give one or more pictures to classify.", 2)
    if show_dir:
        check_folder_creatable(show_dir, "--show")
    checkpoint, newest = checkpoint_or_newest(checkpoint, DEFAULT_RUNS_DIR)
    if newest:
        click.echo(newest)
    backend = open_backend(device, log=click.echo)
    saved = load_any_checkpoint(checkpoint)
    names, knows = model_classes(saved, checkpoint, dataset)
    check_classes(saved, checkpoint, names, TITLES[saved.dataset or dataset or "mnist"])
    model = restore_model(saved, backend)
    how, prepared_line, warning = choose_preparation(saved.dataset, prepare, dataset)
    click.echo(knows)
    click.echo(prepared_line)
    if warning:
        click.echo(warning, err=True)

    pictures, readable, failed = [], [], 0
    for path in images:
        try:
            pictures.append(load_picture(path, how))
            readable.append(path)
        except DigitImageError as error:
            click.echo(f"error: {error}", err=True)
            failed += 1
    answers = classify(model, pictures, top_k, names) if pictures else []
    for path, answer in zip(readable, answers):
        click.echo(f"{path}: {', '.join(answer)}")
    if show_dir and pictures:
        folder, taken = prepare_folder(show_dir, "--show"), set()
        shown = [folder / shown_name(path, taken) for path in readable]
        for target in shown:  # a picture of the user's is never written over
            refuse_overlap(target, "--show", {f"the picture {image}": image for image in images})
        for target, path, picture, answer in zip(shown, readable, pictures, answers):
            write_shown(target, picture, [f"{Path(path).name}:", *answer])
        click.echo(f"--show: {len(shown)} prepared picture{'s' if len(shown) > 1 else ''}, each beside its answer, "
                   f"in {show_dir}")
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    run(main)
