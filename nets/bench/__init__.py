"""The throughput benchmark behind scripts/bench.py: the nets beside PyTorch eager, and the arithmetic floor.

    runners.py    Runner: an engine (nets or torch, as train.py builds them), Adam, one synthetic batch; make_batch
    timing.py     seconds_for, steps_per_sample, alternate_rounds (samples alternating nets, torch, ...)
    memory.py     peak-memory meters: CPU (VmHWM), CuPy's pool, torch.cuda; release_free_heap
    flops.py      the model's GEMMs, training FLOPs per image, the measured GEMM rate (the floor)
    launches.py   kernel launches per step: the CuPy stand-in per layer, the PyTorch profiler on a GPU
    parts.py      a step's parts (each layer's forward and backward, the loss, the optimizer), wrapped while it runs
    profile.py    each part's time inside the real step, and whole steps beside PyTorch (scripts/profile_step.py)
    seed_loop.py  the course notebook's per-sample NumPy loop, extrapolated to an epoch
    report.py     machine facts, versions, BLAS info, the JSON report, the markdown tables, the plot
    device.py     Options, Row and bench_device: every model and batch size on one device

Here: the constants and helpers all of them share. torch (through nets.baseline) and matplotlib are imported
only when used.
"""

from __future__ import annotations

import sys

EPOCH_IMAGES = 60_000  # one MNIST training epoch
# Bounds of the measuring scripts' options (bench.py, profile_step.py, compare_layers.py), which keep one run within
# minutes and a few GB: a CNN batch of 2048 takes about 1.6 GB (and the reference layers allocate every array of a
# step); timed steps per measurement at most MAX_STEP_REPEATS.
MAX_BATCH_SIZE = 2048
MAX_STEP_REPEATS = 1000
NUM_CLASSES = 10
SCHEMA = "nets-bench/1"


def log(message: str) -> None:
    """Progress to stderr, so that stdout holds only the markdown tables."""
    print(message, file=sys.stderr, flush=True)

