"""Timed samples: wall seconds of a number of steps, and rounds alternating the implementations."""

from __future__ import annotations

import math
import time


# The other library's worker threads keep spinning for a while after its last call (OpenBLAS's and OpenMP's
# busy-wait); on 2 cores they stole up to 4x from the next sample. A pause before each CPU sample lets them
# park; GPU samples (runner.settle False) need none.
SETTLE_SECONDS = 0.3
# A figure whose fastest sample is more than this factor faster than its slowest measured other work too.
UNTRUSTED_SPREAD = 1.5


def spread(samples) -> float | None:
    """How far a figure's samples disagree: the fastest over the slowest (1.0 when they agree); None for fewer than
    two samples."""
    return max(samples) / min(samples) if len(samples) >= 2 and min(samples) > 0 else None


def seconds_for(runner, step, count: int) -> float:
    """Wall seconds of `count` steps, the device synchronized before and after."""
    runner.synchronize()
    start = time.perf_counter()
    for _ in range(count):
        step()
    runner.synchronize()
    return time.perf_counter() - start


def steps_per_sample(runner, step, sample_seconds: float) -> int:
    """How many steps make one timed sample last about `sample_seconds` (at least one)."""
    one = seconds_for(runner, step, 1)
    return max(1, min(10_000, math.ceil(sample_seconds / max(one, 1e-7))))


def alternate_rounds(runners, phase: str, repeats: int, sample_seconds: float, batch_size: int) -> dict:
    """Images per second of each runner: `repeats` rounds of one sample each, in the order A B A B ..."""
    steps = {}
    for runner in runners:
        step = runner.train_step if phase == "train" else runner.infer_step
        steps[runner.impl] = (step, steps_per_sample(runner, step, sample_seconds))
    samples = {runner.impl: [] for runner in runners}
    for _ in range(repeats):
        for runner in runners:
            step, count = steps[runner.impl]
            if getattr(runner, "settle", True):
                time.sleep(SETTLE_SECONDS)
            samples[runner.impl].append(count * batch_size / seconds_for(runner, step, count))
    return samples
