#!/usr/bin/env python3
"""Evaluate a checkpoint on a test set: accuracy, per-class accuracy and the confusion matrix.

    python scripts/evaluate.py                        # the newest checkpoint in runs/
    python scripts/evaluate.py runs/cnn.npz
    python scripts/evaluate.py torch_cnn.pt --dataset fashion-mnist --device gpu --json runs/eval.json

CHECKPOINT is a nets .npz checkpoint or a PyTorch state dict (.pt); without one, the newest .npz in runs/ is taken
and named. The dataset defaults to the one the checkpoint was trained on (when it says), else mnist. The test set
is scored in batches of --batch-size (100: under 200 MB in all for the CNN on 10,000 images), and only the test
split is kept. When the metrics JSON train.py wrote beside the checkpoint is from the same run, the test accuracy
that run measured is printed after the report; one from another run is named and left out. --json never replaces
a run's training metrics unless --replace-metrics says so.
"""

from __future__ import annotations

import os

from _cli import one_line_errors, refuse_empty, run  # first: signals, the project's packages, sys.path

import click

from backend import DEVICES
from nets.baseline.checkpoint import load_any_checkpoint
from nets.checkpoint import restore_model
from nets.devices import open_backend
from nets.data.datasets import DATASET_NAMES, TITLES, dataset_files
from nets.report.evaluation import class_names_for, dataset_name_of, evaluate, format_report, test_set_for
from nets.report.runs import MetricsError, checkpoint_or_newest, holds_training_metrics, other_run, read_metrics
from nets.outputs import OutputError, check_file_creatable, refuse_overlap, write_json
from nets.train.engine import EngineState
from nets.train.paths import DEFAULT_RUNS_DIR, metrics_path_beside
from nets.train.settings import IMPLS

BATCH_SIZE = 100  # the CNN's forward pass takes about 0.6 MB per image: 100 keep the whole run under 200 MB


def refuse_replacing_metrics(json_path: str, replace: bool) -> None:
    """OutputError, before any work, when --json names a file of a run's training metrics and --replace-metrics
    was not given."""
    if not replace and holds_training_metrics(json_path):
        raise OutputError(f"--json {json_path} holds a run's training metrics (its epochs), and the report would "
                          "replace them; give --json another path, or add --replace-metrics to replace them.")


def run_measured(saved, checkpoint: str, dataset_name: str) -> tuple[str | None, str | None]:
    """(the line saying what the checkpoint's run measured on this test set, a note line): from the metrics JSON
    beside the checkpoint when it is that run's; a note naming it when it is another run's; neither without one."""
    beside = metrics_path_beside(checkpoint)
    if not os.path.isfile(beside):
        return None, None
    try:
        metrics, _ = read_metrics(beside)
    except MetricsError:
        return None, f"note: {beside} beside the checkpoint cannot be read as a run's metrics; scoring without it."
    reason = other_run(saved, metrics)
    if reason:
        return None, f"note: {beside} beside the checkpoint is another run's metrics ({reason}); scoring without it."
    epochs = [entry for entry in metrics["epochs"] if "test_accuracy" in entry and "epoch" in entry]
    if not epochs or metrics.get("dataset") != dataset_name:
        return None, None
    last = epochs[-1]
    return f"its run measured {100 * last['test_accuracy']:.2f}% after epoch {last['epoch']} ({beside})", None


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("checkpoint", type=click.Path(dir_okay=False, readable=False), required=False)
@click.option("--dataset", type=click.Choice(DATASET_NAMES), default=None,
              help="Test set to use (default: the checkpoint's own, else mnist).")
@click.option("--data-dir", type=click.Path(file_okay=False, readable=False), default=None,
              help="Folder holding the four IDX files.")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=BATCH_SIZE, show_default=True,
              help="Test images per forward pass (memory grows with it: about 0.6 MB per image for the CNN).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, readable=False), default=None,
              help="Also write the results as JSON here.")
@click.option("--replace-metrics", is_flag=True,
              help="Let --json replace a file of a run's training metrics (refused otherwise).")
@click.option("--no-download", is_flag=True, help="Never download datasets.")
@click.option("--impl", type=click.Choice(IMPLS), default="nets", show_default=True,
              help="Score with the nets, or load the weights into the PyTorch baseline and score with it.")
@one_line_errors
def main(checkpoint, dataset, data_dir, device, batch_size, json_path, replace_metrics, no_download, impl):
    """Print the test accuracy, per-class accuracy and confusion matrix of CHECKPOINT (default: the newest in runs/)."""
    refuse_empty({"CHECKPOINT": checkpoint, "--json": json_path, "--data-dir": data_dir})
    if json_path:
        check_file_creatable(json_path, "--json")
        refuse_replacing_metrics(json_path, replace_metrics)
    checkpoint, newest = checkpoint_or_newest(checkpoint, DEFAULT_RUNS_DIR)
    if newest:
        click.echo(newest)
    if json_path:
        refuse_overlap(json_path, "--json", {"the checkpoint being scored": checkpoint})
    saved = load_any_checkpoint(checkpoint)
    if impl == "torch":
        from nets.baseline.engine import TorchEngine

        predictor = TorchEngine(saved.model_config, device="gpu" if device == "gpu" else "cpu", dtype=saved.dtype)
        predictor.load_state(EngineState(saved.params))
    else:
        backend = open_backend(device, log=click.echo)
        predictor = restore_model(saved, backend)
    known = dataset_name_of(saved, "") or None
    data, note = test_set_for(saved, checkpoint, dataset, data_dir, not no_download, "evaluation")
    if note:
        click.echo(note, err=True)
    if json_path:
        files = dataset_files(data.directory)[0].values()
        refuse_overlap(json_path, "--json", {f"the dataset file {path}": path for path in files})
    result = evaluate(predictor, data.test_images, data.test_labels, batch_size)
    names = class_names_for(data.name)

    trained = f"trained on {TITLES[known]}" if known else "its dataset unknown"
    click.echo(f"{saved.model_name} from {checkpoint} ({trained}) on the {data.name} test set ({data.source}), scored "
               f"by {impl} on {predictor.backend.name}")
    if known and known != data.name:
        click.echo(f"warning: {checkpoint} was trained on {TITLES[known]}, so scoring it on {data.title} compares "
                   f"its {TITLES[known]} classes with {data.title}'s labels.", err=True)
    click.echo(format_report(result, names))
    measured, note = run_measured(saved, checkpoint, data.name)
    if note:
        click.echo(note, err=True)
    if measured:
        click.echo(measured)
    if json_path:
        report = {"checkpoint": str(checkpoint), "model": saved.model_name, "dataset": data.name,
                  "device": predictor.backend.name, **result.to_dict(names)}
        write_json(json_path, report, "--json")


if __name__ == "__main__":
    run(main)
