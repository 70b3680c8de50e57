#!/usr/bin/env python
"""Where a training step's time goes: each layer's forward and backward, the loss head and the optimizer, timed
inside the very step the training loop runs, beside a PyTorch eager step of the same model and batch
(nets/bench/profile.py says how each figure is taken).

    python scripts/profile_step.py                       # cnn and mlp, batch 128, float32, cpu, one worker
    python scripts/profile_step.py --models cnn --repeats 100 --device gpu
    python scripts/profile_step.py --workers 2           # the CPU engine's threads, as train.py runs them

Torch gets as many threads as NumPy's BLAS. On a shared machine, read the load average in the header before
trusting a table.
"""

from __future__ import annotations

from _cli import comma_models, one_line_errors, run  # first: signals, the project's packages, sys.path

import os  # noqa: E402

import click  # noqa: E402
import numpy  # noqa: E402

from nets.bench import MAX_BATCH_SIZE, MAX_STEP_REPEATS  # noqa: E402  (bench.py's and compare_layers.py's too)
from nets.devices import open_backend
from nets.bench.profile import profile_lines, profile_model
from nets.bench.report import numpy_blas_info
from nets.train.parallel import usable_cores


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--models", default="cnn,mlp", show_default=True, callback=comma_models,
              help="Comma-separated: cnn, mlp.")
@click.option("--batch-size", default=128, show_default=True, type=click.IntRange(1, MAX_BATCH_SIZE),
              help=f"1 to {MAX_BATCH_SIZE}, as bench.py takes.")
@click.option("--dtype", default="float32", show_default=True, type=click.Choice(["float32", "float64"]))
@click.option("--device", default="cpu", show_default=True, type=click.Choice(["cpu", "gpu", "auto"]))
@click.option("--repeats", default=40, show_default=True, type=click.IntRange(1, MAX_STEP_REPEATS),
              help=f"Timed steps per measurement (after 5 warm-up), at most {MAX_STEP_REPEATS}.")
@click.option("--threads", type=click.IntRange(1, usable_cores()), default=None,
              help="Limit NumPy's BLAS (and torch) to this many threads, at most the usable cores.")
@click.option("--workers", type=click.IntRange(1, usable_cores()), default=1, show_default=True,
              help="CPU threads splitting each batch for the whole-step times, as the training engine does "
                   "(the per-part table always times one worker); at most the usable cores.")
@click.option("--no-torch", is_flag=True, help="Skip the PyTorch reference.")
@one_line_errors
def main(models, batch_size, dtype, device, repeats, threads, workers, no_torch):
    """Time each layer's forward and backward, the loss and the optimizer inside a nets training step, and the
    whole step beside PyTorch eager.

    \b
    python scripts/profile_step.py                        # cnn and mlp, batch 128, float32, cpu
    python scripts/profile_step.py --models cnn --repeats 100 --device gpu
    """
    backend = open_backend(device)
    if threads is not None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=threads, user_api="blas")
    blas = numpy_blas_info()
    threads = int(blas["num_threads"]) if blas else None
    load = " ".join(f"{value:.1f}" for value in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    print(f"numpy {numpy.__version__}, BLAS threads {threads}, device {backend.device_name()}, "
          f"{dtype}, batch {batch_size}, workers {workers}, medians of {repeats}, load average {load}")
    for name in models:
        profile = profile_model(name, backend, batch_size=batch_size, dtype=dtype, repeats=repeats, workers=workers,
                                with_torch=not no_torch, torch_threads=threads)
        print("\n" + "\n".join(profile_lines(profile)))


if __name__ == "__main__":
    run(main)
