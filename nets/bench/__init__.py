"""The throughput benchmark behind scripts/bench.py: the nets beside PyTorch eager, and the arithmetic floor.

    runners.py    NetsRunner and TorchRunner (one model, Adam, one synthetic batch on the device), make_batch
    timing.py     seconds_for, steps_per_sample, alternate_rounds (samples alternating nets, torch, ...)
    memory.py     peak-memory meters: CPU (VmHWM), CuPy's pool, torch.cuda; release_free_heap
    flops.py      the model's GEMMs, training FLOPs per image, the measured GEMM rate (the floor)
    launches.py   CUDA kernels per step, counted with the PyTorch profiler
    seed_loop.py  the course notebook's per-sample NumPy loop, extrapolated to an epoch
    report.py     machine facts, versions, BLAS info, the JSON report, the markdown tables, the plot
    run.py        Options, Row and bench_device: every model and batch size on one device

Here: the constants and helpers all of them share. torch and matplotlib are imported only when used.
"""

from __future__ import annotations

import sys

EPOCH_IMAGES = 60_000  # one MNIST training epoch
NUM_CLASSES = 10
SCHEMA = "nets-bench/1"


def log(message: str) -> None:
    """Progress to stderr, so that stdout holds only the markdown tables."""
    print(message, file=sys.stderr, flush=True)


def import_torch():
    """torch, or None when it is not installed (the torch rows are then skipped)."""
    try:
        import torch
    except ImportError:
        return None
    return torch
