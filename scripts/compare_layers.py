#!/usr/bin/env python
"""The reference layers (nets/nn/reference) beside the fast ones, part by part, inside real training steps: kernel
launches on the strict CuPy stand-in and milliseconds on the device (the tables of docs/reading.md).

    python scripts/compare_layers.py                                  # mlp and cnn, batch 128, the CPU
    python scripts/compare_layers.py --models cnn --repeats 50 --device gpu
"""

from __future__ import annotations

import os

from _cli import one_line_errors, run  # first: signals, the project's packages, sys.path

import click
import numpy

from nets.bench import MAX_BATCH_SIZE, MAX_STEP_REPEATS as MAX_REPEATS
from nets.devices import open_backend
from nets.bench.reference import comparison_table, count_launches, time_parts
from nets.bench.report import cpu_model_name, numpy_blas_info
from nets.nn.models import MODEL_NAMES
from nets.train.parallel import usable_cores



@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--models", default="mlp,cnn", show_default=True, help="Comma-separated: mlp, cnn.")
@click.option("--batch-size", default=128, show_default=True, type=click.IntRange(1, MAX_BATCH_SIZE))
@click.option("--repeats", default=20, show_default=True, type=click.IntRange(1, MAX_REPEATS),
              help="Timed steps of each layer set (after 3 warm-up steps); the figures are their medians.")
@click.option("--device", default="cpu", show_default=True, type=click.Choice(["cpu", "gpu", "auto"]))
@one_line_errors
def main(models, batch_size, repeats, device):
    """Count the launches and time each layer's forward and backward, the loss and the optimizer, reference beside
    fast, inside training steps (Adam, float32, one thread).

    \b
    python scripts/compare_layers.py                  # mlp and cnn, batch 128, the CPU
    python scripts/compare_layers.py --models cnn --repeats 50
    """
    names = [name.strip() for name in models.split(",") if name.strip()]
    unknown = [name for name in names if name not in MODEL_NAMES]
    if unknown or not names:
        raise click.BadParameter(f"{', '.join(map(repr, unknown)) or 'nothing'} is not a model; give a comma-separated "
                                 f"list of {', '.join(MODEL_NAMES)}.", param_hint="--models")
    backend = open_backend(device)
    blas = numpy_blas_info() or {}
    load = " ".join(f"{value:.1f}" for value in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    where = f"{cpu_model_name()}, {usable_cores()} usable cores" if backend.name == "cpu" else backend.device_name()
    click.echo(f"{where}; numpy {numpy.__version__} ({blas.get('internal_api', 'BLAS')}, "
               f"{blas.get('num_threads', '?')} threads); batch {batch_size}, medians of {repeats} steps; "
               f"load average {load}")
    for name in names:
        launches = count_launches(name, batch_size)
        times = time_parts(name, batch_size, backend, repeats)
        click.echo(f"\n{name}\n")
        click.echo(comparison_table(name, launches, times, device=backend.name.upper()))
        if launches is None:
            click.echo("\n(launches: cupy is not importable here, so the stand-in cannot count them; "
                       "pip install -e .[standin])")


if __name__ == "__main__":
    run(main)
