#!/usr/bin/env python
"""Where a training step's time goes: each layer's forward and backward, the loss head and the optimizer,
timed inside the very step the training loop runs, beside a PyTorch eager step of the same model and batch.

    python scripts/profile_step.py                       # cnn and mlp, batch 128, float32, cpu, one worker
    python scripts/profile_step.py --models cnn --repeats 100 --device gpu
    python scripts/profile_step.py --workers 2           # the CPU engine's threads, as train.py runs them

Per part, the times are medians over `repeats` steps, each part timed on its own (the device is
synchronized around it, so they add up to more than a step). Whole steps (gather-free: the batch sits in
the step's home) are timed without those clocks, nets and torch alternating in blocks of 10 steps so that
load from other processes hits both; their medians and ratio are the numbers to compare. Torch gets as
many threads as NumPy's BLAS. On a shared machine, read the load average in the header before trusting a table.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

from _cli import one_line_errors  # first: it puts the project on sys.path, catches an early Ctrl-C

import click
import numpy

import backend as backend_module
from nets.bench.parts import attributed
from nets.baseline import torch_or_none
from nets.train.engine import EngineState, NetsEngine
from nets.train.parallel import usable_cores
from nets.nn.models import MODEL_NAMES, build_model
from nets.optim import Adam


def blas_threads() -> int | None:
    """NumPy's BLAS thread count (threadpoolctl), or None when it cannot be read."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    for entry in threadpool_info():
        if entry.get("user_api") == "blas" and "numpy" in entry.get("filepath", ""):
            return int(entry["num_threads"])
    return None


def synthetic_batch(rng, batch_size, input_shape):
    """MNIST-like float images (mostly zeros, values k/255) and integer labels, on the host."""
    images = rng.integers(0, 256, size=(batch_size, *input_shape)) / 255.0
    images[rng.random(images.shape) < 0.8] = 0.0
    return images, rng.integers(0, 10, size=batch_size)


class Clock:
    """perf_counter after synchronizing the device, so queued GPU work is counted."""

    def __init__(self, backend):
        self.backend = backend

    def __call__(self) -> float:
        self.backend.synchronize()
        return time.perf_counter()


def profile_parts(engine, x, labels, repeats, clock):
    """{(part, pass): median ms} over `repeats` training steps, each part timed inside the real step."""
    times: dict = {}

    def timing(function, key):
        def timed(*args, **kwargs):
            start = clock()
            result = function(*args, **kwargs)
            times.setdefault(key, []).append(clock() - start)
            return result
        return timed

    with attributed(engine, timing) as parts:
        for _ in range(repeats):
            engine.train_step(x, labels)
    return {key: 1e3 * statistics.median(times[key]) for key in parts if key in times}


def compare_steps(engine, x, labels, torch_step, repeats, clock, block=10):
    """Median whole-step milliseconds of (nets, torch), timed in alternating blocks of `block` steps.

    Blocks, not single steps: right after one library's call the other's idle BLAS/OpenMP threads
    are still spinning, and step-by-step alternation measured torch at up to 6x its own speed.
    The first two steps of every block are not counted.
    """
    def nets_step():
        start = clock()
        engine.train_step(x, labels)
        return clock() - start

    ours, theirs = [], []
    for _ in range(max(1, repeats // block)):
        ours += [nets_step() for _ in range(block + 2)][2:]
        if torch_step is not None:
            theirs += [torch_step() for _ in range(block + 2)][2:]
    median = lambda samples: 1e3 * statistics.median(samples) if samples else float("nan")  # noqa: E731
    return median(ours), median(theirs)


def make_torch_step(model, images, labels, device, threads):
    """A closure timing one training step (Adam) of the torch engine on the same model and batch; None without
    torch."""
    torch = torch_or_none()
    if torch is None:
        return None
    from nets.baseline.engine import TorchEngine

    if threads:
        torch.set_num_threads(threads)
    engine = TorchEngine(model.config(), device=device, dtype=model.dtype.name, optimizer="adam", lr=1e-3,
                         count_totals=False)  # a bare eager step, as the bench times it
    engine.load_state(EngineState(model.state_dict()))
    io = engine.io
    x, y = engine.batch(io.asarray(images, dtype=model.dtype), io.asarray(labels), io.asarray(numpy.arange(len(labels))))

    def step():
        io.synchronize()
        start = time.perf_counter()
        engine.train_step(x, y)
        io.synchronize()
        return time.perf_counter() - start

    for _ in range(5):
        step()
    return step


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--models", default="cnn,mlp", show_default=True, help="Comma-separated: cnn, mlp.")
@click.option("--batch-size", default=128, show_default=True, type=click.IntRange(1))
@click.option("--dtype", default="float32", show_default=True, type=click.Choice(["float32", "float64"]))
@click.option("--device", default="cpu", show_default=True, type=click.Choice(["cpu", "gpu", "auto"]))
@click.option("--repeats", default=40, show_default=True, type=click.IntRange(1),
              help="Timed steps per measurement (after 5 warm-up).")
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
    names = [m.strip() for m in models.split(",") if m.strip()]
    unknown = [name for name in names if name not in MODEL_NAMES]
    if unknown or not names:
        raise click.BadParameter(f"{', '.join(map(repr, unknown)) or 'nothing'} is not a model; give a comma-separated "
                                 f"list of {', '.join(MODEL_NAMES)}.", param_hint="--models")
    backend = backend_module.get_backend(device)
    clock = Clock(backend)
    if threads is not None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=threads, user_api="blas")
    threads = blas_threads()
    load = " ".join(f"{value:.1f}" for value in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    print(f"numpy {numpy.__version__}, BLAS threads {threads}, device {backend.device_name()}, "
          f"{dtype}, batch {batch_size}, workers {workers}, medians of {repeats}, load average {load}")
    for name in names:
        rng = numpy.random.default_rng(0)
        model = build_model(name, backend=backend, dtype=dtype, rng=rng)
        images, labels_host = synthetic_batch(rng, batch_size, model.input_shape)
        engines = []
        for count in (1, workers):  # the parts of one worker's step; whole steps as asked
            engine = NetsEngine(model, Adam(model.parameters(), lr=1e-3), backend, workers=count)
            x, labels = engine.batch(backend.asarray(images, dtype=dtype), backend.asarray(labels_host),
                                     backend.asarray(numpy.arange(batch_size)))
            engine.plan([1e-3] * (5 + 2 * repeats + (repeats // 10 + 1) * 12))
            for _ in range(5):  # warm-up: buffers and tables made, caches and BLAS threads awake
                engine.train_step(x, labels)
            engines.append((engine, x, labels))
        torch_step = None if no_torch else make_torch_step(model, images, labels_host, backend.name, threads)
        parts = profile_parts(*engines[0], repeats, clock)
        ours, theirs = compare_steps(*engines[1], torch_step, repeats, clock)

        print(f"\n{name}: {'part':<12} {'forward ms':>10} {'backward ms':>11} {'total ms':>9}")
        names = [layer for layer, _ in model.layers] + ["loss", "optimizer"]
        for part in names:
            forward, backward = parts.get((part, "forward"), 0.0), parts.get((part, "backward"), 0.0)
            print(f"{'':<{len(name) + 2}}{part:<12} {forward:>10.3f} {backward:>11.3f} {forward + backward:>9.3f}")
        total_forward = sum(value for (part, kind), value in parts.items() if kind == "forward")
        total_backward = sum(value for (part, kind), value in parts.items() if kind == "backward")
        print(f"{'':<{len(name) + 2}}{'sum':<12} {total_forward:>10.3f} {total_backward:>11.3f} "
              f"{total_forward + total_backward:>9.3f}")
        line = f"  whole step: nets {ours:.3f} ms"
        if torch_step is not None:
            line += f", torch eager {theirs:.3f} ms, nets/torch {ours / theirs:.2f}x"
        print(line)


if __name__ == "__main__":
    main()
