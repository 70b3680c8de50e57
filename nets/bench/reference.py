"""The reference layers beside the fast ones, part by part, inside real training steps: kernel launches counted by
the CuPy stand-in, and milliseconds on a device. The tables of docs/reading.md (scripts/compare_layers.py).

    launches = count_launches("cnn", 128)                  # {"reference": {...}, "fast": {...}} on the stand-in
    times = time_parts("cnn", 128, backend, repeats=20)    # the same layout, medians in milliseconds
    print(comparison_table("cnn", launches, times))

Both models start from the same weights and train on the same synthetic batch with Adam (float32), one thread
each, every step as the training loop runs it (NetsEngine.train_step). Each layer's forward and backward, the
loss head and the optimizer step are wrapped while the step runs (parts.py): the figures are the step's own.
The reference's ReLU and max-pool rows are added together where the fast model runs them as one layer.
"""

from __future__ import annotations

import statistics

import numpy

from nets.bench.launches import launches_by_part
from nets.bench.parts import attributed, timer
from nets.bench.profile import Clock
from nets.bench.runners import make_batch
from nets.nn.models import build_model
from nets.nn.reference.models import build_reference_model
from nets.train.engine import nets_engine
from nets.train.settings import LAYER_SETS

__all__ = ["comparison_table", "count_launches", "time_parts"]

WARMUP_STEPS = 3  # buffers, index tables and workspaces are made in the first steps of a batch size
# the reference CNN's layers under the fast CNN's names (which runs each ReLU and max-pool as one layer)
FAST_PART = {"cnn": {"relu1": "relu_pool1", "pool1": "relu_pool1", "relu2": "relu_pool2", "pool2": "relu_pool2"}}
SIDES = ("reference", "fast")  # the tables' column order


def engine_of(layers: str, model_name: str, backend, batch_size: int, steps: int):
    """(engine, x, labels): a NetsEngine of one thread on `backend`, its batch gathered, `steps` steps planned."""
    build = build_reference_model if layers == "reference" else build_model
    model = build(model_name, backend=backend, dtype="float32", rng=numpy.random.default_rng(0))
    engine = nets_engine(model, "adam", lr=1e-3, workers=1)
    images, labels = make_batch(model.input_shape, batch_size)
    x, labels = engine.batch(backend.asarray(images), backend.asarray(labels),
                             backend.asarray(numpy.arange(batch_size)))
    engine.plan([1e-3] * (WARMUP_STEPS + steps))
    for _ in range(WARMUP_STEPS):
        engine.train_step(x, labels)
    return engine, x, labels


def _merged(values: dict, model_name: str) -> dict:
    """{(part, pass): value} with the reference's parts added into the fast model's names."""
    merged, names = {}, FAST_PART.get(model_name, {})
    for (part, kind), value in values.items():
        key = (names.get(part, part), kind)
        merged[key] = merged.get(key, 0) + value
    return merged


def count_launches(model_name: str, batch_size: int) -> dict | None:
    """Per set of layers (fast, reference): {"parts": {(part, pass): launches}, "step": launches,
    "allocations": arrays allocated} of one training step on the CuPy stand-in; None when cupy is not importable."""
    from backend.standin import standin_backend

    counted = {}
    for layers in LAYER_SETS:
        gpu = standin_backend()
        if gpu is None:
            return None
        engine, x, labels = engine_of(layers, model_name, gpu, batch_size, steps=1)
        parts, tally = launches_by_part(engine, gpu.xp.counter, x, labels)
        counted[layers] = {"parts": _merged(parts, model_name), "step": tally.launches,
                           "allocations": tally.allocations}
    return counted


def time_parts(model_name: str, batch_size: int, backend, repeats: int) -> dict:
    """Per set of layers: {"parts": {(part, pass): median ms}, "step": median ms of a whole (unwrapped) step}. The two
    strategies take turns step by step, so that load from other processes reaches both alike."""
    engines = {layers: engine_of(layers, model_name, backend, batch_size, 2 * repeats) for layers in LAYER_SETS}
    samples = {layers: {} for layers in LAYER_SETS}
    steps = {layers: [] for layers in LAYER_SETS}

    clock = Clock(backend)

    for _ in range(repeats):
        for layers, (engine, x, labels) in engines.items():
            start = clock()
            engine.train_step(x, labels)
            steps[layers].append(clock() - start)
            with attributed(engine, timer(clock, samples[layers])):
                engine.train_step(x, labels)
    milliseconds = lambda values: 1e3 * statistics.median(values)  # noqa: E731
    return {layers: {"parts": _merged({key: milliseconds(values) for key, values in samples[layers].items()},
                                                 model_name),
                       "step": milliseconds(steps[layers])} for layers in LAYER_SETS}


def comparison_table(model_name: str, launches: dict | None, times: dict, device: str = "CPU") -> str:
    """Markdown: per part (the fast model's layers, then the loss and the optimizer) and pass, the reference's and
    the fast version's launches (when counted) and milliseconds, then the whole step."""
    model = build_model(model_name, backend=_host(), rng=numpy.random.default_rng(0))
    parts = [name for name, _ in model.layers] + ["loss", "optimizer"]
    head = "| part | pass | launches reference | launches fast | ms reference | ms fast |"
    lines = [head, "|---|---|---:|---:|---:|---:|"]
    for part in parts:
        for kind in ("forward", "backward"):
            key = (part, kind)
            if key not in times["fast"]["parts"] and key not in times["reference"]["parts"]:
                continue
            counts = ["-", "-"] if launches is None else [launches[s]["parts"].get(key, 0) for s in SIDES]
            spent = [f"{times[s]['parts'].get(key, 0.0):.3f}" for s in SIDES]
            lines.append(f"| {part} | {kind} | {counts[0]} | {counts[1]} | {spent[0]} | {spent[1]} |")
    counts = ["-", "-"] if launches is None else [launches[s]["step"] for s in SIDES]
    lines.append(f"| **whole step** | | **{counts[0]}** | **{counts[1]}** | **{times['reference']['step']:.2f}** | "
                 f"**{times['fast']['step']:.2f}** |")
    if launches is not None:
        lines += ["", f"Arrays allocated per step on the stand-in: reference {launches['reference']['allocations']}, "
                      f"fast {launches['fast']['allocations']}. Milliseconds on the {device}."]
    return "\n".join(lines)


def _host():
    from backend import get_backend

    return get_backend("cpu")
