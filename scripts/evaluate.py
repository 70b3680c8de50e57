#!/usr/bin/env python3
"""Evaluate a checkpoint on a test set: accuracy, per-class accuracy and the confusion matrix.

    python scripts/evaluate.py runs/cnn.npz
    python scripts/evaluate.py torch_cnn.pt --dataset fashion-mnist --device gpu --json runs/eval.json

CHECKPOINT is a nets .npz checkpoint or a PyTorch state dict (.pt). The dataset defaults to the one the
checkpoint was trained on (when it says), else mnist.
"""

from __future__ import annotations

from _cli import one_line_errors, refuse_empty  # first: it puts the project on sys.path, catches an early Ctrl-C

import click

from backend import DEVICES
from nets.baseline.checkpoint import load_any_checkpoint
from nets.checkpoint import restore_model
from nets.devices import open_backend
from nets.data.datasets import DATASET_NAMES, TITLES, dataset_files
from nets.report.evaluation import class_names_for, dataset_name_of, evaluate, format_report, test_set_for
from nets.outputs import check_file_creatable, refuse_overlap, write_json
from nets.train.engine import EngineState
from nets.train.settings import IMPLS


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--dataset", type=click.Choice(DATASET_NAMES), default=None,
              help="Test set to use (default: the checkpoint's own, else mnist).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Folder holding the four IDX files.")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the results as JSON here.")
@click.option("--no-download", is_flag=True, help="Never download datasets.")
@click.option("--impl", type=click.Choice(IMPLS), default="nets", show_default=True,
              help="Score with the nets, or load the weights into the PyTorch baseline and score with it.")
@one_line_errors
def main(checkpoint, dataset, data_dir, device, batch_size, json_path, no_download, impl):
    """Print the test accuracy, per-class accuracy and confusion matrix of CHECKPOINT."""
    refuse_empty({"CHECKPOINT": checkpoint, "--json": json_path, "--data-dir": data_dir})
    if json_path:
        check_file_creatable(json_path, "--json")
        refuse_overlap(json_path, "--json", {"the checkpoint being scored": checkpoint})
    saved = load_any_checkpoint(checkpoint)
    if impl == "torch":
        from nets.baseline.engine import TorchEngine

        predictor = TorchEngine(saved.model_config, device="gpu" if device == "gpu" else "cpu", dtype=saved.dtype)
        predictor.load_state(EngineState(saved.params))
    else:
        backend = open_backend(device, say=click.echo)
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
               f"by {impl} on {predictor.io.name}")
    if known and known != data.name:
        click.echo(f"warning: {checkpoint} was trained on {TITLES[known]}, so scoring it on {data.title} compares "
                   f"its {TITLES[known]} classes with {data.title}'s labels.", err=True)
    click.echo(format_report(result, names))
    if json_path:
        report = {"checkpoint": str(checkpoint), "model": saved.model_name, "dataset": data.name,
                  "device": predictor.io.name, **result.to_dict(names)}
        write_json(json_path, report, "--json")


if __name__ == "__main__":
    main()
