"""Where a training step's time goes (scripts/profile_step.py): each layer's forward and backward, the loss head and
the optimizer, timed inside the very step the training loop runs, beside a PyTorch eager step of the same model and
batch.

    result = profile_model("cnn", backend, batch_size=128, dtype="float32", repeats=40, workers=1)
    print("\n".join(profile_lines(result)))

Per part, the times are medians over `repeats` steps, each part timed on its own (the device is synchronized around
it, so they add up to more than a step). Whole steps (gather-free: the batch sits in the step's home) are timed
without those clocks, nets and torch alternating in blocks of 10 steps so that load from other processes hits both;
their medians and ratio are the numbers to compare.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import numpy

from nets.bench import MAX_BATCH_SIZE, MAX_STEP_REPEATS
from nets.bench.parts import attributed, timer

WARMUP_STEPS = 5  # buffers and tables made, caches and BLAS threads awake
BLOCK = 10  # whole steps per block, nets and torch alternating


@dataclass
class Profile:
    """One model's profile: parts {(part, pass): median ms}, the part names in step order, the whole-step medians
    (ms) of the nets and of torch eager (None without torch)."""

    model: str
    parts: dict
    part_names: list
    nets_ms: float
    torch_ms: float | None


class Clock:
    """perf_counter after synchronizing the device, so queued GPU work is counted."""

    def __init__(self, backend):
        self.backend = backend

    def __call__(self) -> float:
        self.backend.synchronize()
        return time.perf_counter()


def mnist_like_batch(rng, batch_size, input_shape):
    """MNIST-like float images (mostly zeros, values k/255) and integer labels, on the host."""
    images = rng.integers(0, 256, size=(batch_size, *input_shape)) / 255.0
    images[rng.random(images.shape) < 0.8] = 0.0
    return images, rng.integers(0, 10, size=batch_size)


def time_parts(engine, x, labels, repeats, clock) -> dict:
    """{(part, pass): median ms} over `repeats` training steps, each part timed inside the real step."""
    times: dict = {}
    with attributed(engine, timer(clock, times)) as parts:
        for _ in range(repeats):
            engine.train_step(x, labels)
    return {key: 1e3 * statistics.median(times[key]) for key in parts if key in times}


def compare_steps(engine, x, labels, torch_step, repeats, clock, block=BLOCK):
    """Median whole-step milliseconds of (nets, torch), timed in alternating blocks of `block` steps.

    Blocks, not single steps: right after one library's call the other's idle BLAS/OpenMP threads are still
    spinning, and step-by-step alternation measured torch at up to 6x its own speed. The first two steps of every
    block are not counted.
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
    return 1e3 * statistics.median(ours), (1e3 * statistics.median(theirs) if theirs else None)


def torch_step_timer(model, images, labels, device: str, threads: int | None):
    """A function timing one training step (Adam) of the torch engine on the same model and batch, warmed up; None
    without torch."""
    from nets.baseline import torch_or_none

    torch = torch_or_none()
    if torch is None:
        return None
    from nets.baseline.engine import TorchEngine
    from nets.train.engine import EngineState

    if threads:
        torch.set_num_threads(threads)
    engine = TorchEngine(model.config(), device=device, dtype=model.dtype.name, optimizer="adam", lr=1e-3,
                         count_totals=False)  # a bare eager step, as the bench times it
    engine.load_state(EngineState(model.state_dict()))
    backend = engine.backend
    x, y = engine.batch(backend.asarray(images, dtype=model.dtype), backend.asarray(labels),
                        backend.asarray(numpy.arange(len(labels))))
    clock = Clock(backend)

    def step():
        start = clock()
        engine.train_step(x, y)
        return clock() - start

    for _ in range(WARMUP_STEPS):
        step()
    return step


def _check_bounds(batch_size: int, repeats: int) -> None:
    """ValueError outside the bounds the measuring scripts take (nets.bench.MAX_BATCH_SIZE, MAX_STEP_REPEATS)."""
    if not 1 <= batch_size <= MAX_BATCH_SIZE or not 1 <= repeats <= MAX_STEP_REPEATS:
        raise ValueError(f"batch_size must be 1 to {MAX_BATCH_SIZE} and repeats 1 to {MAX_STEP_REPEATS}, got "
                         f"{batch_size} and {repeats}.")


def profile_model(name: str, backend, *, batch_size: int, dtype: str, repeats: int, workers: int = 1,
                  with_torch: bool = True, torch_threads: int | None = None) -> Profile:
    """Profile one model on `backend`: the parts of a one-worker step, and whole steps with `workers` CPU threads
    beside torch eager (torch_threads: its thread count, as NumPy's BLAS)."""
    from nets.nn.models import build_model
    from nets.optim import Adam
    from nets.train.engine import NetsEngine

    _check_bounds(batch_size, repeats)
    rng = numpy.random.default_rng(0)
    model = build_model(name, backend=backend, dtype=dtype, rng=rng)
    images, labels_host = mnist_like_batch(rng, batch_size, model.input_shape)
    engines = []
    for count in (1, workers):  # the parts of one worker's step; whole steps as asked
        engine = NetsEngine(model, Adam(model.parameters(), lr=1e-3), backend, workers=count)
        x, labels = engine.batch(backend.asarray(images, dtype=dtype), backend.asarray(labels_host),
                                 backend.asarray(numpy.arange(batch_size)))
        engine.plan([1e-3] * (WARMUP_STEPS + 2 * repeats + (repeats // BLOCK + 1) * (BLOCK + 2)))
        for _ in range(WARMUP_STEPS):
            engine.train_step(x, labels)
        engines.append((engine, x, labels))
    torch_step = torch_step_timer(model, images, labels_host, backend.name, torch_threads) if with_torch else None
    clock = Clock(backend)
    parts = time_parts(*engines[0], repeats, clock)
    ours, theirs = compare_steps(*engines[1], torch_step, repeats, clock)
    return Profile(name, parts, [layer for layer, _ in model.layers] + ["loss", "optimizer"], ours, theirs)


def profile_lines(profile: Profile) -> list[str]:
    """The table of one profile: a row per part (forward, backward, total ms), their sum, the whole steps."""
    name, parts = profile.model, profile.parts
    lines = [f"{name}: {'part':<12} {'forward ms':>10} {'backward ms':>11} {'total ms':>9}"]
    indent = " " * (len(name) + 2)
    for part in profile.part_names:
        forward, backward = parts.get((part, "forward"), 0.0), parts.get((part, "backward"), 0.0)
        lines.append(f"{indent}{part:<12} {forward:>10.3f} {backward:>11.3f} {forward + backward:>9.3f}")
    total_forward = sum(value for (_, kind), value in parts.items() if kind == "forward")
    total_backward = sum(value for (_, kind), value in parts.items() if kind == "backward")
    lines.append(f"{indent}{'sum':<12} {total_forward:>10.3f} {total_backward:>11.3f} "
                 f"{total_forward + total_backward:>9.3f}")
    line = f"  whole step: nets {profile.nets_ms:.3f} ms"
    if profile.torch_ms is not None:
        line += f", torch eager {profile.torch_ms:.3f} ms, nets/torch {profile.nets_ms / profile.torch_ms:.2f}x"
    return lines + [line]
