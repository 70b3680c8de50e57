#!/usr/bin/env python3
"""Draw the plots of a finished run from its saved files (what train.py --plot draws right after training).

    python scripts/plot.py runs/cnn.npz      # metrics from runs/cnn.json, PNGs into runs/cnn-plots/
    python scripts/plot.py runs/cnn.npz --metrics other.json --out plots

Writes training_curves.png (from the metrics JSON: --metrics, else the one train.py wrote beside the
checkpoint), confusion_matrix.png, first_layer_filters.png and misclassified.png (from the checkpoint,
evaluated on the test set) into --out (default: beside the checkpoint, CHECKPOINT-NAME-plots/).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from _cli import one_line_errors, refuse_empty  # first: it puts the project on sys.path, catches an early Ctrl-C

import click

from backend import DEVICES
from nets.baseline.checkpoint import load_any_checkpoint
from nets.devices import open_backend
from nets.checkpoint import restore_model
from nets.data.datasets import DATASET_NAMES
from nets.nn.inference import predict_classes
from nets.report.evaluation import class_names_for, test_set_for
from nets.outputs import check_folder_creatable, prepare_folder
from nets.report.plots import PlotError, require_matplotlib, write_all_plots
from nets.train.paths import metrics_path_beside


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
              help="Metrics JSON from train.py [default: the one beside CHECKPOINT, when there is one; without one, "
                   "no training curves].")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for the PNGs [default: beside CHECKPOINT, named after it: runs/cnn.npz -> runs/cnn-plots].")
@click.option("--dataset", type=click.Choice(DATASET_NAMES), default=None,
              help="Test set to use (default: the checkpoint's own, else mnist).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Folder holding the four IDX files.")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--no-download", is_flag=True, help="Never download datasets.")
@one_line_errors
def main(checkpoint, metrics_path, out_dir, dataset, data_dir, device, batch_size, no_download):
    """Write the PNG plots of CHECKPOINT (and its training metrics) into --out."""
    refuse_empty({"CHECKPOINT": checkpoint, "--metrics": metrics_path, "--out": out_dir, "--data-dir": data_dir})
    beside = metrics_path_beside(checkpoint)
    if metrics_path is None and os.path.isfile(beside):
        metrics_path = beside
        click.echo(f"metrics: {beside} (beside the checkpoint)")
    elif metrics_path is None:
        click.echo(f"metrics: none ({beside} is not there), so no training curves; --metrics FILE gives them")
    metrics = read_metrics(metrics_path) if metrics_path else None
    out_dir = out_dir or str(Path(checkpoint).with_name(Path(checkpoint).stem + "-plots"))
    require_matplotlib()
    check_folder_creatable(out_dir, "--out")
    backend = open_backend(device, say=click.echo)
    saved = load_any_checkpoint(checkpoint)
    model = restore_model(saved, backend)
    data, note = test_set_for(saved, checkpoint, dataset, data_dir, not no_download, "plotting")
    if note:
        click.echo(note, err=True)
    predictions = predict_classes(model, data.test_images, batch_size)
    paths = write_all_plots(prepare_folder(out_dir, "--out"), metrics, model, data.test_images, data.test_labels,
                            predictions, class_names_for(data.name))
    for path in paths:
        click.echo(f"plot: {path}")
    click.echo(f"{len(paths)} plots written to {out_dir}")


if __name__ == "__main__":
    main()
