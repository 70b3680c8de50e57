#!/usr/bin/env python3
"""Draw the plots of a finished run from its saved files (what train.py --plot draws right after training).

    python scripts/plot.py                   # the newest checkpoint in runs/
    python scripts/plot.py runs/cnn.npz      # metrics from runs/cnn.json, PNGs into runs/cnn-plots/
    python scripts/plot.py runs/cnn.npz --metrics other.json --out plots

Writes training_curves.png (from the metrics JSON: --metrics, else the one train.py wrote beside the checkpoint
when it is from the same run), confusion_matrix.png, first_layer_filters.png and misclassified.png (from the
checkpoint, evaluated on the test set) into --out (default: beside the checkpoint, CHECKPOINT-NAME-plots/).
A metrics field of the wrong type is left out with one warning line; NaN and infinite values are left out.
"""

from __future__ import annotations

import os
from pathlib import Path

from _cli import one_line_errors, refuse_empty, run  # first: signals, the project's packages, sys.path

import click

from backend import DEVICES
from nets.baseline.checkpoint import load_any_checkpoint
from nets.devices import open_backend
from nets.checkpoint import restore_model
from nets.data.datasets import DATASET_NAMES
from nets.nn.inference import predict_classes
from nets.report.evaluation import class_names_for, test_set_for
from nets.outputs import check_folder_creatable, prepare_folder
from nets.report.plots import require_matplotlib, write_all_plots
from nets.report.runs import MetricsError, checkpoint_or_newest, other_run, read_metrics
from nets.train.paths import DEFAULT_RUNS_DIR, metrics_path_beside

BATCH_SIZE = 100  # as evaluate.py: the CNN's forward pass takes about 0.6 MB per image


def metrics_for(saved, checkpoint: str, asked: str | None, log) -> dict | None:
    """The metrics to draw the curves from, each decision said in one line: --metrics as asked (a warning when it is
    another run's), else the JSON beside the checkpoint when it is from the same run, else none."""
    if asked is not None:
        metrics, warning = read_metrics(asked)
        if warning:
            log(warning, err=True)
        reason = other_run(saved, metrics)
        if reason:
            log(f"warning: --metrics {asked} is not from the run of {checkpoint} ({reason}); its curves are drawn "
                "as asked.", err=True)
        return metrics
    beside = metrics_path_beside(checkpoint)
    if not os.path.isfile(beside):
        log(f"metrics: none ({beside} is not there), so no training curves; --metrics FILE gives them")
        return None
    try:
        metrics, warning = read_metrics(beside)
    except MetricsError:
        log(f"metrics: none ({beside} cannot be read as a run's metrics), so no training curves; --metrics FILE "
            "gives them")
        return None
    reason = other_run(saved, metrics)
    if reason:
        log(f"metrics: none ({beside} is from another run: {reason}), so no training curves; --metrics FILE draws "
            "them anyway")
        return None
    if warning:
        log(warning, err=True)
    log(f"metrics: {beside} (beside the checkpoint, from the same run)")
    return metrics


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("checkpoint", type=click.Path(dir_okay=False, readable=False), required=False)
@click.option("--metrics", "metrics_path", type=click.Path(dir_okay=False, readable=False), default=None,
              help="Metrics JSON from train.py [default: the one beside CHECKPOINT, when it is from the same run; "
                   "without one, no training curves].")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, readable=False), default=None,
              help="Folder for the PNGs [default: beside CHECKPOINT, named after it: runs/cnn.npz -> runs/cnn-plots].")
@click.option("--dataset", type=click.Choice(DATASET_NAMES), default=None,
              help="Test set to use (default: the checkpoint's own, else mnist).")
@click.option("--data-dir", type=click.Path(file_okay=False, readable=False), default=None,
              help="Folder holding the four IDX files.")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=BATCH_SIZE, show_default=True)
@click.option("--no-download", is_flag=True, help="Never download datasets.")
@one_line_errors
def main(checkpoint, metrics_path, out_dir, dataset, data_dir, device, batch_size, no_download):
    """Write the PNG plots of CHECKPOINT (default: the newest in runs/) and its training metrics into --out."""
    refuse_empty({"CHECKPOINT": checkpoint, "--metrics": metrics_path, "--out": out_dir, "--data-dir": data_dir})
    checkpoint, newest = checkpoint_or_newest(checkpoint, DEFAULT_RUNS_DIR)
    if newest:
        click.echo(newest)
    out_dir = out_dir or str(Path(checkpoint).with_name(Path(checkpoint).stem + "-plots"))
    require_matplotlib()
    check_folder_creatable(out_dir, "--out")
    saved = load_any_checkpoint(checkpoint)
    metrics = metrics_for(saved, checkpoint, metrics_path, click.echo)
    backend = open_backend(device, log=click.echo)
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
    run(main)
