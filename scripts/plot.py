#!/usr/bin/env python3
"""Draw the plots of a finished run from its saved files (what train.py --plot draws right after training).

    python scripts/plot.py runs/cnn.npz --metrics runs/cnn.json --out runs/cnn-plots

Writes training_curves.png (from --metrics), confusion_matrix.png, first_layer_filters.png and
misclassified.png (from the checkpoint, evaluated on the test set) into --out.
"""

from __future__ import annotations

import json
import os

from _cli import one_line_errors  # first: it puts the project on sys.path, catches an early Ctrl-C

import click

from backend import DEVICES, get_backend
from nets.baseline.checkpoint import load_any_checkpoint
from nets.checkpoint import restore_model
from nets.data.datasets import DATASET_NAMES, load_dataset, require_examples
from nets.nn.inference import predict_classes
from nets.report.evaluation import class_names_for, dataset_name_of
from nets.outputs import prepare_folder
from nets.report.plots import PlotError, require_matplotlib, write_all_plots


def read_metrics(path) -> dict:
    """The metrics JSON train.py writes (--metrics-json); PlotError in one line when it is not that."""
    advice = "pass the file train.py wrote with --metrics-json."
    if os.path.exists(path) and not os.path.isfile(path):
        raise PlotError(f"--metrics {path} is not a regular file; {advice}")
    try:
        with open(path, "rb") as file:
            metrics = json.load(file)
    except json.JSONDecodeError as error:
        raise PlotError(f"{path} is not valid JSON ({error.msg} at line {error.lineno}); {advice}") from None
    except UnicodeDecodeError:
        raise PlotError(f"{path} is not a text file; {advice}") from None
    except FileNotFoundError:
        raise PlotError(f"--metrics {path}: no such file; {advice}") from None
    except OSError as error:
        raise PlotError(f"--metrics {path} cannot be read ({error.strerror or error}); {advice}") from None
    epochs = metrics.get("epochs", []) if isinstance(metrics, dict) else None
    if not isinstance(epochs, list) or not all(isinstance(entry, dict) for entry in epochs):
        raise PlotError(f"{path} does not hold a metrics object with a list of epochs; {advice}")
    return metrics


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--metrics", "metrics_path", type=click.Path(dir_okay=False), default=None,
              help="Metrics JSON from train.py --metrics-json (without it, no training curves).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True, help="Folder for the PNGs.")
@click.option("--dataset", type=click.Choice(DATASET_NAMES), default=None,
              help="Test set to use (default: the checkpoint's own, else mnist).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Folder holding the four IDX files.")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--no-download", is_flag=True, help="Never download datasets.")
@one_line_errors
def main(checkpoint, metrics_path, out_dir, dataset, data_dir, device, batch_size, no_download):
    """Write the PNG plots of CHECKPOINT (and its training metrics) into --out."""
    metrics = read_metrics(metrics_path) if metrics_path else None
    require_matplotlib()
    prepare_folder(out_dir, "--out")
    backend = get_backend(device)
    saved = load_any_checkpoint(checkpoint)
    model = restore_model(saved, backend)
    data = load_dataset(dataset or dataset_name_of(saved), data_dir, download=not no_download)
    require_examples(data, ("test",), "plotting")
    predictions = predict_classes(model, data.test_images, batch_size)
    paths = write_all_plots(out_dir, metrics, model, data.test_images, data.test_labels, predictions,
                            class_names_for(data.name))
    for path in paths:
        click.echo(f"plot: {path}")


if __name__ == "__main__":
    main()
