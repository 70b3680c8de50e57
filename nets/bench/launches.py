"""Kernel launches per step: counted by the strict CuPy stand-in on any machine, or by the PyTorch profiler
on a GPU.

`standin_launches` runs the engine train.py uses on the stand-in (backend/standin) and attributes every
launch of one training step to a layer and a pass (forward, backward), the loss head and the optimizer,
by wrapping those calls while one real step runs (parts.py): the table is the step's own, nothing re-enacted.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy

from nets.bench.parts import attributed

WARMUP_STEPS = 3  # buffers, index tables and workspaces are made in the first step of a batch size


def launches_by_part(engine, counter, x, labels):
    """One training step of `engine` on the stand-in whose `counter` counts: ({(part, pass): launches}, the step's
    Tally), every launch attributed to a layer's forward or backward, the loss or the optimizer (parts.py)."""
    totals: dict = {}

    def counting(function, key):
        def counted(*args, **kwargs):
            mark = counter.mark()
            result = function(*args, **kwargs)
            totals[key] = totals.get(key, 0) + counter.since(mark).launches
            return result
        return counted

    with attributed(engine, counting):
        mark = counter.mark()
        engine.train_step(x, labels)
        return totals, counter.since(mark)


def standin_launches(model_name: str, batch_size: int) -> dict | None:
    """Launches of one nets training step (Adam, float32) and one prediction, on the CuPy stand-in.

    Returns {"model", "batch_size", "train_step", "predict", "syncs", "rows": [{"part", "forward",
    "backward"}, ...]} with a row per layer, then "loss" and "optimizer"; None when cupy is not importable.
    """
    from backend.standin import standin_backend
    from nets.train.engine import NetsEngine
    from nets.nn.models import build_model
    from nets.optim import Adam

    gpu = standin_backend()
    if gpu is None:
        return None
    counter = gpu.xp.counter
    model = build_model(model_name, backend=gpu, dtype="float32", rng=numpy.random.default_rng(0))
    engine = NetsEngine(model, Adam(model.parameters(), lr=1e-3), gpu)
    rng = numpy.random.default_rng(1)
    images = gpu.asarray(rng.random((batch_size, *model.input_shape), dtype=numpy.float32))
    labels = gpu.asarray(rng.integers(0, 10, batch_size))
    x, y = engine.batch(images, labels, gpu.asarray(numpy.arange(batch_size)))
    engine.plan([1e-3] * (WARMUP_STEPS + 1))
    for _ in range(WARMUP_STEPS):
        engine.train_step(x, y)
    engine.predict(images).argmax(1)

    totals, train = launches_by_part(engine, counter, x, y)
    mark = counter.mark()
    engine.predict(images).argmax(1)  # the logits and the classes, as a prediction makes them
    predict = counter.since(mark)

    rows = []
    for part in [name for name, _ in model.layers] + ["loss", "optimizer"]:
        rows.append({"part": part, "forward": totals.get((part, "forward"), 0),
                     "backward": totals.get((part, "backward"), 0)})
    placed = sum(row["forward"] + row["backward"] for row in rows)
    if placed != train.launches:
        rows.append({"part": "other", "forward": train.launches - placed, "backward": 0})
    return {"model": model_name, "batch_size": batch_size, "train_step": train.launches,
            "predict": predict.launches, "syncs": train.syncs, "transfers": train.transfers,
            "by_kind": train.by_kind(), "rows": rows}


def standin_capture(model_name: str, batch_size: int, steps: int = 20) -> dict | None:
    """One full-batch training step as fit() runs it (the batch's rows at the order's device counter, the gather,
    the step; Adam, float32), eager and captured as a CUDA graph, on the CuPy stand-in: host calls and kernels per
    step, and host seconds per step (medians of `steps`; the stand-in computes each kernel with NumPy, so the
    replay's time is that arithmetic alone and the eager step's adds the Python and CuPy calls a replay saves).
    None when cupy is not importable."""
    import statistics
    import time

    from backend.standin import standin_backend
    from nets.data.batches import EpochOrder
    from nets.nn.models import build_model
    from nets.optim import Adam
    from nets.train.engine import NetsEngine

    gpu = standin_backend()
    if gpu is None:
        return None
    model = build_model(model_name, backend=gpu, dtype="float32", rng=numpy.random.default_rng(0))
    engine = NetsEngine(model, Adam(model.parameters(), lr=1e-3), gpu)
    rng = numpy.random.default_rng(1)
    count = 4 * batch_size
    images = gpu.asarray(rng.random((count, *model.input_shape), dtype=numpy.float32))
    labels = gpu.asarray(rng.integers(0, 10, count))
    order = EpochOrder(gpu, count, batch_size)
    order.start(rng.permutation(count))

    def step():
        engine.train_step(*engine.batch(images, labels, order.next_rows()))

    graphed = engine.graphed(step, "on")
    engine.plan([1e-3] * (2 * steps + WARMUP_STEPS + 2))
    counter = gpu.xp.counter
    measured = {}
    with graphed.on_stream():
        for _ in range(WARMUP_STEPS):
            step()
        for name, call in (("eager", step), ("captured", graphed)):
            call()  # the captured one: captured here (after the warm-up steps above)
            seconds, mark = [], counter.mark()
            for _ in range(steps):
                started = time.perf_counter()
                call()
                seconds.append(time.perf_counter() - started)
            tally = counter.since(mark)
            measured[name] = {"host_calls_per_step": tally.host_calls / steps,
                              "kernel_launches_per_step": tally.launches / steps,
                              "graph_launches_per_step": tally.graph_launches / steps,
                              "host_seconds_per_step": statistics.median(seconds)}
    measured["captured"]["kernels_per_replay"] = graphed.kernels
    return {"model": model_name, "batch_size": batch_size, **measured}


def capture_lines(entry) -> list[str]:
    """What one standin_capture entry says, as markdown lines."""
    eager, captured = entry["eager"], entry["captured"]
    return [f"{entry['model']}, batch {entry['batch_size']}, "
            "one full-batch step as fit() runs it (rows, gather, step): "
            f"eager {eager['host_calls_per_step']:.0f} host calls ({eager['kernel_launches_per_step']:.0f} kernel "
            f"launches); captured {captured['host_calls_per_step']:.0f} host call "
            f"({captured['graph_launches_per_step']:.0f} graph launch of {captured['kernels_per_replay']} kernels). "
            f"Host time per step on the stand-in: eager {1e3 * eager['host_seconds_per_step']:.2f} ms, replayed "
            f"{1e3 * captured['host_seconds_per_step']:.2f} ms.", ""]


def launch_table(entries) -> str:
    """Markdown: launches per layer and pass, one column pair per (model, batch size)."""
    lines = []
    for entry in entries:
        lines += [f"{entry['model']}, batch {entry['batch_size']}: {entry['train_step']} launches per training step "
                  f"({entry['syncs']} host syncs, {entry['transfers']} host/device copies), "
                  f"{entry['predict']} per prediction (forward and argmax)", "",
                  "| part | forward | backward |", "|---|---:|---:|"]
        for row in entry["rows"]:
            lines.append(f"| {row['part']} | {row['forward']} | {row['backward']} |")
        kinds = ", ".join(f"{kind} {count}" for kind, count in entry["by_kind"].items()
                          if kind not in ("alloc", "sync", "d2h", "h2d"))
        lines += [f"| **step** | | **{entry['train_step']}** |", "", f"by kind: {kinds}", ""]
        if entry.get("capture"):
            lines += capture_lines(entry["capture"])
    return "\n".join(lines).rstrip()


def count_kernel_launches(torch, runner, step, steps: int = 3) -> float | None:
    """CUDA kernels per step, counted by the PyTorch profiler (CUPTI sees CuPy's kernels too).

    Kernels are the chrome-trace events of category "kernel"; memcpy and memset are not counted.
    """
    from torch.profiler import ProfilerActivity, profile

    step()
    runner.synchronize()
    with tempfile.TemporaryDirectory() as folder:
        trace = Path(folder) / "trace.json"
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as profiler:
            for _ in range(steps):
                step()
            runner.synchronize()
        profiler.export_chrome_trace(str(trace))
        events = json.loads(trace.read_text()).get("traceEvents", [])
    kernels = sum(1 for event in events if str(event.get("cat", "")).lower() == "kernel")
    return kernels / steps
