#!/usr/bin/env python
"""Throughput of the nets (NumPy on the CPU, CuPy on the GPU) beside PyTorch eager, and the arithmetic floor.

    python scripts/bench.py --device cpu --models mlp,cnn --batch-sizes 32,128,256 --json runs/bench_cpu.json

For every (model, device, batch size) both implementations get the same model, the same synthetic batch of
MNIST's shape (already on the device), float32 and Adam. Training steps (forward, backward, optimizer step)
and inference (forward in eval mode; torch under `inference_mode`) are timed separately. Each implementation
warms up first (its peak memory is read then); the timed samples alternate nets, torch, nets, torch ... so
that drift on a shared machine hits both, and medians are reported. On the GPU the clock is read only after
synchronizing. Torch gets as many CPU threads as NumPy's BLAS.

stdout gets markdown tables (throughput and nets/torch ratio per row; the arithmetic floor); progress goes
to stderr. benchmarks/README.md says how to read and reproduce them.
"""

from __future__ import annotations

import datetime
import gc
import json
import math
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import click
import numpy

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as a plain script from a checkout that is not pip-installed
    sys.path.insert(0, str(REPO_ROOT))

import backend as backend_module  # noqa: E402

EPOCH_IMAGES = 60_000  # one MNIST training epoch
NUM_CLASSES = 10
SEED_LOOP_SIZES = (784, 128, 64, 10)
SCHEMA = "nets-bench/1"


def log(message: str) -> None:
    """Progress to stderr, so that stdout holds only the markdown tables."""
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------- threads


def numpy_blas_info() -> dict | None:
    """threadpoolctl's entry for NumPy's BLAS (read before torch is imported, so torch's libraries are absent)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    for entry in threadpool_info():
        if entry.get("user_api") == "blas":
            return entry
    return None


def import_torch():
    """torch, or None when it is not installed (the torch rows are then skipped)."""
    try:
        import torch
    except ImportError:
        return None
    return torch


# ------------------------------------------------------------------------------------------ peak memory


def _proc_status_kb(key: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def release_free_heap() -> None:
    """Give freed heap memory back to the OS (glibc's malloc_trim), so that RSS counts only live memory
    and a new peak is not hidden by memory an earlier run freed but the allocator kept."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class CpuPeakMemory:
    """Peak resident memory above the level at `start`: Linux's VmHWM, reset through /proc/self/clear_refs.

    Writing "5" to clear_refs resets the high-water mark to the current RSS (Linux >= 4.0), so each
    implementation's peak is measured on its own without tracemalloc's slowdown.
    """

    method = (
        "cpu: process peak RSS (VmHWM, reset via /proc/self/clear_refs) minus RSS before building the model, "
        "freed heap returned to the OS first (malloc_trim); libraries' one-time setup is primed before"
    )

    @staticmethod
    def available() -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as clear_refs:
                clear_refs.write("5")
            _proc_status_kb("VmHWM")
        except OSError:
            return False
        except KeyError:
            return False
        return True

    def start(self) -> None:
        gc.collect()
        release_free_heap()
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        self._baseline_kb = _proc_status_kb("VmRSS")

    def stop(self) -> float:
        return max(0, _proc_status_kb("VmHWM") - self._baseline_kb) / 1024.0


class CupyPeakMemory:
    """Bytes CuPy's default memory pool holds after the run, the pool emptied before it.

    The pool keeps every block it ever allocated until `free_all_blocks`, so what it holds at the end is
    the high-water mark of the arrays alive at once (rounded up to the pool's block sizes).
    """

    method = "gpu nets: cupy default memory pool total_bytes() after the run, the pool emptied before"

    def __init__(self, xp):
        self._pool = xp.get_default_memory_pool()

    def start(self) -> None:
        gc.collect()
        self._pool.free_all_blocks()
        self._baseline = self._pool.used_bytes()

    def stop(self) -> float:
        return max(0, self._pool.total_bytes() - self._baseline) / 2**20


class TorchCudaPeakMemory:
    """torch.cuda.max_memory_allocated above what was allocated at `start`."""

    method = "gpu torch: torch.cuda.max_memory_allocated() minus memory_allocated() before building the model"

    def __init__(self, torch):
        self._torch = torch

    def start(self) -> None:
        gc.collect()
        self._torch.cuda.empty_cache()
        self._torch.cuda.reset_peak_memory_stats()
        self._baseline = self._torch.cuda.memory_allocated()

    def stop(self) -> float:
        return max(0, self._torch.cuda.max_memory_allocated() - self._baseline) / 2**20


class NoPeakMemory:
    method = "unavailable"

    def start(self) -> None:
        pass

    def stop(self) -> None:
        return None


# ------------------------------------------------------------------------------------- implementations


class NetsRunner:
    """The nets model with Adam, and one synthetic batch on the backend's device."""

    impl = "nets"

    def __init__(self, model_name: str, backend, x_host: numpy.ndarray, labels_host: numpy.ndarray):
        from nets.models import build_model
        from nets.optim import Adam

        self.backend = backend
        self.model = build_model(model_name, backend=backend, dtype="float32", rng=numpy.random.default_rng(0))
        self.optimizer = Adam(self.model.parameters(), lr=1e-3)
        self.x = backend.asarray(x_host, dtype="float32")
        self.labels = backend.asarray(labels_host)

    def train_step(self) -> None:
        self.model.loss_and_gradients(self.x, self.labels)
        self.optimizer.step(self.model.gradients())

    def infer_step(self) -> None:
        self.model.forward(self.x, train=False)

    def begin(self, phase: str) -> None:
        pass

    def synchronize(self) -> None:
        self.backend.synchronize()


class TorchRunner:
    """The same architecture in PyTorch eager (torch.optim.Adam), on "cpu" or "cuda"."""

    impl = "torch"

    def __init__(self, model_name, torch, device, x_host, labels_host, channels_last=False):
        from nets.torch_baseline import build_torch_model

        self.torch = torch
        self.device = device
        self.functional = torch.nn.functional
        self.model = build_torch_model(model_name).to(device)
        self.x = torch.from_numpy(numpy.ascontiguousarray(x_host)).to(device)
        self.labels = torch.from_numpy(labels_host.astype(numpy.int64)).to(device)
        if channels_last:
            self.impl = "torch_channels_last"
            self.model = self.model.to(memory_format=torch.channels_last)
            self.x = self.x.contiguous(memory_format=torch.channels_last)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)

    def begin(self, phase: str) -> None:
        self.model.train(phase == "train")

    def train_step(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.functional.cross_entropy(self.model(self.x), self.labels)
        loss.backward()
        self.optimizer.step()

    def infer_step(self) -> None:
        with self.torch.inference_mode():
            self.model(self.x)

    def synchronize(self) -> None:
        if self.device == "cuda":
            self.torch.cuda.synchronize()


# -------------------------------------------------------------------------------------------- timing


# The other library's worker threads keep spinning for a while after its last call (OpenBLAS's and OpenMP's
# busy-wait); on 2 cores they stole up to 4x from the next sample. A pause before each sample lets them park.
SETTLE_SECONDS = 0.3


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
        runner.begin(phase)
        step = runner.train_step if phase == "train" else runner.infer_step
        steps[runner.impl] = (step, steps_per_sample(runner, step, sample_seconds))
    samples = {runner.impl: [] for runner in runners}
    for _ in range(repeats):
        for runner in runners:
            step, count = steps[runner.impl]
            time.sleep(SETTLE_SECONDS)
            samples[runner.impl].append(count * batch_size / seconds_for(runner, step, count))
    return samples


@dataclass
class Row:
    model: str
    impl: str
    device: str
    batch_size: int
    train_images_per_second: float | None = None
    infer_images_per_second: float | None = None
    peak_memory_mb: float | None = None
    train_samples_images_per_second: list = field(default_factory=list)
    infer_samples_images_per_second: list = field(default_factory=list)
    kernel_launches_per_train_step: float | None = None
    kernel_launches_per_infer_step: float | None = None

    @property
    def epoch_seconds(self) -> float | None:
        return EPOCH_IMAGES / self.train_images_per_second if self.train_images_per_second else None

    def as_json(self) -> dict:
        data = dict(self.__dict__)
        data["train_epoch_seconds"] = self.epoch_seconds
        # the best sample: less disturbed by other processes than the median on a shared machine
        for phase in ("train", "infer"):
            samples = data[f"{phase}_samples_images_per_second"]
            data[f"{phase}_images_per_second_best"] = max(samples) if samples else None
        return data


# ---------------------------------------------------------------------------------- FLOPs and GEMMs


def layer_gemms(model_name: str, input_shape) -> list[dict]:
    """The conv and linear layers of the model as GEMMs per sample: [{name, m, k, n}], m per image.

    A linear layer is (1 x in) @ (in x out); a convolution, via im2col, (OH*OW x C*KH*KW) @ (C*KH*KW x F).
    Shapes come from the PyTorch model of the same architecture (forward hooks on one image), which is the
    only model whose layers say their output sizes in a standard way.
    """
    torch = import_torch()
    if torch is None:
        return []
    from nets.torch_baseline import build_torch_model

    model = build_torch_model(model_name)
    gemms = []

    def hook(module, inputs, output):
        name = module_names[module]
        if isinstance(module, torch.nn.Linear):
            gemms.append({"name": name, "m": 1, "k": module.in_features, "n": module.out_features})
        elif isinstance(module, torch.nn.Conv2d):
            out_h, out_w = output.shape[-2:]
            kernel = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            gemms.append({"name": name, "m": out_h * out_w, "k": kernel, "n": module.out_channels})

    module_names = {module: name for name, module in model.named_modules()}
    handles = [
        module.register_forward_hook(hook)
        for module in model.modules()
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d))
    ]
    with torch.no_grad():
        model(torch.zeros((1, *input_shape), dtype=torch.float32))
    for handle in handles:
        handle.remove()
    return gemms


def train_step_gemm_shapes(gemms, batch_size: int) -> list[tuple[int, int, int]]:
    """(M, K, N) of every matmul in one training step: forward, weight gradient, input gradient per layer.

    The first layer has no input gradient (nobody needs the gradient of the images), so it has two.
    """
    shapes = []
    for position, gemm in enumerate(gemms):
        m, k, n = gemm["m"] * batch_size, gemm["k"], gemm["n"]
        shapes += [(m, k, n), (k, m, n)] + ([(m, n, k)] if position > 0 else [])
    return shapes


def train_flops_per_image(gemms) -> int:
    """Training FLOPs per image: forward 2*MACs, backward twice that (weight and input gradients),
    less the first layer's input gradient. Bias, activation, pooling and Adam FLOPs are left out."""
    return sum(2 * m * k * n for m, k, n in train_step_gemm_shapes(gemms, 1))


def gemm_gflops(backend, shapes, repeats: int) -> float:
    """float32 GFLOP/s of `backend` over the given (M, K, N) matmuls: the best of at least 5 samples.

    The best, not the median: the floor is the fastest these GEMMs can go, and on a shared machine
    the slower samples measure the neighbours.
    """
    xp = backend.xp
    rng = numpy.random.default_rng(0)
    operands = []
    for m, k, n in shapes:
        a = backend.asarray(rng.standard_normal((m, k), dtype=numpy.float32))
        b = backend.asarray(rng.standard_normal((k, n), dtype=numpy.float32))
        operands.append((a, b, xp.empty((m, n), dtype=xp.float32)))
    flops = sum(2 * m * k * n for m, k, n in shapes)

    def one_pass():
        for a, b, out in operands:
            xp.matmul(a, b, out=out)

    one_pass()  # warm-up: BLAS threads, cuBLAS handles and kernels
    backend.synchronize()
    start = time.perf_counter()
    one_pass()
    backend.synchronize()
    first = time.perf_counter() - start
    passes = max(1, math.ceil(0.02 / max(first, 1e-7)))  # a timed sample of at least ~20 ms
    times = []
    for _ in range(max(5, repeats)):
        backend.synchronize()
        start = time.perf_counter()
        for _ in range(passes):
            one_pass()
        backend.synchronize()
        times.append((time.perf_counter() - start) / passes)
    return flops / min(times) / 1e9


# ------------------------------------------------------------------------------------ kernel launches


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


# ------------------------------------------------------------------------------------ the seed loop


def seed_loop_epoch_seconds(samples: int) -> dict:
    """The course notebook's per-sample NumPy MLP (784-128-64-10, batch 1, SGD), a plain loop, extrapolated.

    Written the way a student would: float64 (NumPy's default), one image at a time, np.outer for the
    weight gradients.
    """
    rng = numpy.random.default_rng(0)
    x = rng.random((samples, SEED_LOOP_SIZES[0]))
    y = rng.integers(0, NUM_CLASSES, samples)
    sizes = SEED_LOOP_SIZES
    weights = [rng.standard_normal((o, i)) * numpy.sqrt(2.0 / i) for i, o in zip(sizes[:-1], sizes[1:])]
    biases = [numpy.zeros(o) for o in sizes[1:]]
    learning_rate = 0.01
    start = time.perf_counter()
    for i in range(samples):
        a0 = x[i]
        z1 = weights[0] @ a0 + biases[0]
        a1 = numpy.maximum(z1, 0)
        z2 = weights[1] @ a1 + biases[1]
        a2 = numpy.maximum(z2, 0)
        z3 = weights[2] @ a2 + biases[2]
        p = numpy.exp(z3 - z3.max())
        p /= p.sum()
        d3 = p.copy()
        d3[y[i]] -= 1.0
        d2 = (weights[2].T @ d3) * (z2 > 0)
        d1 = (weights[1].T @ d2) * (z1 > 0)
        weights[2] -= learning_rate * numpy.outer(d3, a2)
        biases[2] -= learning_rate * d3
        weights[1] -= learning_rate * numpy.outer(d2, a1)
        biases[1] -= learning_rate * d2
        weights[0] -= learning_rate * numpy.outer(d1, a0)
        biases[0] -= learning_rate * d1
    seconds = time.perf_counter() - start
    return {
        "samples": samples,
        "seconds": seconds,
        "epoch_seconds_extrapolated": seconds * EPOCH_IMAGES / samples,
        "dtype": "float64",
        "sizes": list(SEED_LOOP_SIZES),
    }


# ------------------------------------------------------------------------------------- machine facts


def cpu_model_name() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_facts() -> dict:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "cpu": cpu_model_name(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "platform": platform.platform(),
        "hostname": platform.node(),
    }


def library_versions(torch) -> dict:
    versions = {"python": platform.python_version(), "numpy": numpy.__version__, "torch": None, "cupy": None}
    if torch is not None:
        versions["torch"] = torch.__version__
        versions["torch_cuda"] = torch.version.cuda
    return versions


# --------------------------------------------------------------------------------------- one device


def make_batch(input_shape, batch_size: int, seed: int = 0):
    """Synthetic MNIST-shaped data: pixels in [0, 1) and labels 0..9."""
    rng = numpy.random.default_rng(seed)
    x = rng.random((batch_size, *input_shape), dtype=numpy.float32)
    labels = rng.integers(0, NUM_CLASSES, batch_size).astype(numpy.int64)
    return x, labels


def bench_device(device: str, options, torch, report: dict) -> None:
    """All models and batch sizes on one device; appends to report["rows"] and report["floor"]."""
    backend = backend_module.get_backend(device, seed=0)
    torch_device = "cuda" if device == "gpu" else "cpu"
    torch_problem = None
    if torch is None:
        torch_problem = "torch is not installed (pip install -e .[baseline]); torch rows skipped"
    elif device == "gpu" and not torch.cuda.is_available():
        torch_problem = "torch has no CUDA here (a CPU build?); torch rows skipped on the gpu"
    if torch_problem:
        log(f"[{device}] {torch_problem}")
        report["skipped"].append(f"{device}: {torch_problem}")

    if device == "gpu":
        report["machine"]["gpu"] = backend.device_name()
        report["versions"].update(backend.library_versions())
        if torch is not None and torch_problem is None:
            report["versions"]["cudnn"] = torch.backends.cudnn.version()
            # the same float32 arithmetic as CuPy's matmul: no TF32 in torch either
            torch.backends.cuda.matmul.allow_tf32 = options.tf32
            torch.backends.cudnn.allow_tf32 = options.tf32
            torch.backends.cudnn.benchmark = options.cudnn_benchmark
        nets_probe = CupyPeakMemory(backend.xp)
        torch_probe = TorchCudaPeakMemory(torch) if torch is not None and torch_problem is None else NoPeakMemory()
    else:
        cpu_probe = CpuPeakMemory() if CpuPeakMemory.available() else NoPeakMemory()
        nets_probe = torch_probe = cpu_probe
    report["peak_memory_method"][device] = {"nets": nets_probe.method, "torch": torch_probe.method}

    square = options.gemm_size
    square_rate = gemm_gflops(backend, [(square, square, square)], options.repeats)
    report["gemm"][device] = {"square_size": square, "square_gflops": square_rate}
    log(f"[{device}] float32 GEMM {square}^3: {square_rate:.1f} GFLOP/s")

    from nets.models import build_model

    shapes = {
        name: tuple(build_model(name, backend=backend_module.get_backend("cpu"), dtype="float32").input_shape)
        for name in options.models
    }
    # One step of everything first, so that one-time costs (loading oneDNN or cuBLAS, compiling CuPy
    # kernels, starting thread pools) land neither in the first row's peak memory nor in its warm-up.
    for model_name, input_shape in shapes.items():
        x_host, labels_host = make_batch(input_shape, 2)
        primers = [NetsRunner(model_name, backend, x_host, labels_host)]
        if torch_problem is None:
            primers.append(TorchRunner(model_name, torch, torch_device, x_host, labels_host))
        for runner in primers:
            for phase, step in (("train", runner.train_step), ("infer", runner.infer_step)):
                runner.begin(phase)
                step()
            runner.synchronize()
        del primers

    for model_name, input_shape in shapes.items():
        gemms = layer_gemms(model_name, input_shape) if torch is not None else []
        for batch_size in options.batch_sizes:
            x_host, labels_host = make_batch(input_shape, batch_size)
            builders = [("nets", lambda: NetsRunner(model_name, backend, x_host, labels_host), nets_probe)]
            if torch_problem is None:
                builders.append(
                    ("torch", lambda: TorchRunner(model_name, torch, torch_device, x_host, labels_host), torch_probe)
                )
                if options.channels_last and device == "cpu" and len(input_shape) == 3:
                    builders.append(
                        (
                            "torch_channels_last",
                            lambda: TorchRunner(model_name, torch, torch_device, x_host, labels_host, True),
                            torch_probe,
                        )
                    )
            runners, rows = [], {}
            for impl, build, probe in builders:
                # built and warmed up one at a time, so each peak is its own
                probe.start()
                runner = build()
                for phase, step in (("train", runner.train_step), ("infer", runner.infer_step)):
                    runner.begin(phase)
                    for _ in range(options.warmup):
                        step()
                runner.synchronize()
                rows[impl] = Row(model_name, impl, device, batch_size, peak_memory_mb=probe.stop())
                runners.append(runner)
            for phase in ("train", "infer"):
                samples = alternate_rounds(runners, phase, options.repeats, options.sample_seconds, batch_size)
                for impl, values in samples.items():
                    setattr(rows[impl], f"{phase}_samples_images_per_second", values)
                    setattr(rows[impl], f"{phase}_images_per_second", statistics.median(values))
            if options.count_launches and device == "gpu":
                for runner in runners:
                    if torch is None or not torch.cuda.is_available():
                        break
                    for phase, step in (("train", runner.train_step), ("infer", runner.infer_step)):
                        runner.begin(phase)
                        try:
                            count = count_kernel_launches(torch, runner, step)
                        except Exception as error:  # the profiler is optional machinery
                            log(f"[{device}] counting kernel launches failed: {error}")
                            count = None
                        setattr(rows[runner.impl], f"kernel_launches_per_{phase}_step", count)
            for row in rows.values():
                report["rows"].append(row.as_json())
                log(
                    f"[{device}] {model_name} batch {batch_size} {row.impl}: "
                    f"train {row.train_images_per_second:,.0f} img/s, infer {row.infer_images_per_second:,.0f} img/s, "
                    f"peak {row.peak_memory_mb if row.peak_memory_mb is not None else float('nan'):.1f} MB"
                )
            if gemms:
                shaped_rate = gemm_gflops(backend, train_step_gemm_shapes(gemms, batch_size), options.repeats)
                flops_per_epoch = train_flops_per_image(gemms) * EPOCH_IMAGES
                floor_seconds = flops_per_epoch / (shaped_rate * 1e9)
                floor = {
                    "model": model_name,
                    "device": device,
                    "batch_size": batch_size,
                    "train_flops_per_image": train_flops_per_image(gemms),
                    "gflop_per_epoch": flops_per_epoch / 1e9,
                    "gemm_gflops_layer_shapes": shaped_rate,
                    "gemm_gflops_square": square_rate,
                    "floor_seconds": floor_seconds,
                    "floor_seconds_at_square_rate": flops_per_epoch / (square_rate * 1e9),
                }
                for impl, row in rows.items():
                    floor[f"{impl}_epoch_over_floor"] = row.epoch_seconds / floor_seconds
                report["floor"].append(floor)
            del runners, rows
            gc.collect()


# --------------------------------------------------------------------------------------- the tables


def fmt(value, digits=0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def throughput_table(rows) -> str:
    """One line per (model, device, batch): nets and torch images/s, the nets/torch epoch-time ratio."""
    by_key: dict[tuple, dict] = {}
    for row in rows:
        by_key.setdefault((row["model"], row["device"], row["batch_size"]), {})[row["impl"]] = row
    lines = [
        "| model | device | batch | train img/s nets | train img/s torch | train epoch nets/torch "
        "| infer img/s nets | infer img/s torch | infer nets/torch | 60k epoch s nets | 60k epoch s torch "
        "| peak MB nets | peak MB torch |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (model, device, batch), impls in by_key.items():
        nets, torch_row = impls.get("nets", {}), impls.get("torch", {})

        def ratio(key):
            if nets.get(key) and torch_row.get(key):
                return f"{torch_row[key] / nets[key]:.2f}"
            return "–"

        lines.append(
            f"| {model} | {device} | {batch} "
            f"| {fmt(nets.get('train_images_per_second'))} | {fmt(torch_row.get('train_images_per_second'))} "
            f"| {ratio('train_images_per_second')} "
            f"| {fmt(nets.get('infer_images_per_second'))} | {fmt(torch_row.get('infer_images_per_second'))} "
            f"| {ratio('infer_images_per_second')} "
            f"| {fmt(nets.get('train_epoch_seconds'), 2)} | {fmt(torch_row.get('train_epoch_seconds'), 2)} "
            f"| {fmt(nets.get('peak_memory_mb'), 1)} | {fmt(torch_row.get('peak_memory_mb'), 1)} |"
        )
    extra = [row for row in rows if row["impl"] not in ("nets", "torch")]
    if extra:
        lines += ["", "| model | device | batch | impl | train img/s | infer img/s | 60k epoch s | peak MB |"]
        lines.append("|---|---|---:|---|---:|---:|---:|---:|")
        for row in extra:
            lines.append(
                f"| {row['model']} | {row['device']} | {row['batch_size']} | {row['impl']} "
                f"| {fmt(row['train_images_per_second'])} | {fmt(row['infer_images_per_second'])} "
                f"| {fmt(row['train_epoch_seconds'], 2)} | {fmt(row['peak_memory_mb'], 1)} |"
            )
    launches = [row for row in rows if row.get("kernel_launches_per_train_step") is not None]
    if launches:
        lines += ["", "| model | device | batch | impl | kernels / train step | kernels / infer step |"]
        lines.append("|---|---|---:|---|---:|---:|")
        for row in launches:
            lines.append(
                f"| {row['model']} | {row['device']} | {row['batch_size']} | {row['impl']} "
                f"| {fmt(row['kernel_launches_per_train_step'], 1)} | {fmt(row['kernel_launches_per_infer_step'], 1)} |"
            )
    return "\n".join(lines)


def floor_table(floors, gemm) -> str:
    lines = [
        "| model | device | batch | GFLOP / 60k epoch | GEMM GFLOP/s (layer shapes) | floor s "
        "| floor s at square GEMM rate | nets epoch / floor | torch epoch / floor |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for floor in floors:
        lines.append(
            f"| {floor['model']} | {floor['device']} | {floor['batch_size']} | {floor['gflop_per_epoch']:.1f} "
            f"| {floor['gemm_gflops_layer_shapes']:.1f} | {floor['floor_seconds']:.2f} "
            f"| {floor['floor_seconds_at_square_rate']:.2f} "
            f"| {fmt(floor.get('nets_epoch_over_floor'), 1)} | {fmt(floor.get('torch_epoch_over_floor'), 1)} |"
        )
    for device, facts in gemm.items():
        lines.append(f"\n{device}: float32 GEMM {facts['square_size']}^3 runs at {facts['square_gflops']:.1f} GFLOP/s.")
    return "\n".join(lines)


def save_plot(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    keys = sorted({(r["model"], r["device"], r["batch_size"]) for r in rows})
    impls = sorted({r["impl"] for r in rows}, key=lambda impl: (impl != "nets", impl))
    lookup = {(r["model"], r["device"], r["batch_size"], r["impl"]): r for r in rows}
    figure, axes = pyplot.subplots(1, 2, figsize=(max(8, 1.4 * len(keys) * len(impls)), 4.5))
    width = 0.8 / max(1, len(impls))
    for axis, phase in zip(axes, ("train", "infer")):
        for index, impl in enumerate(impls):
            values = [(lookup.get((*key, impl)) or {}).get(f"{phase}_images_per_second") or 0 for key in keys]
            axis.bar([k + index * width for k in range(len(keys))], values, width, label=impl)
        axis.set_xticks([k + width * (len(impls) - 1) / 2 for k in range(len(keys))])
        axis.set_xticklabels([f"{m}\n{d} {b}" for m, d, b in keys], fontsize=8)
        axis.set_ylabel("images / s")
        axis.set_title(phase)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)


# -------------------------------------------------------------------------------------------- the CLI


def comma_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def comma_ints(context, parameter, value):
    try:
        numbers = [int(item) for item in comma_list(value)]
    except ValueError:
        raise click.BadParameter("give whole numbers separated by commas, e.g. 32,128,256") from None
    if not numbers or min(numbers) < 1:
        raise click.BadParameter("give at least one batch size, each at least 1")
    return numbers


@dataclass
class Options:
    models: list
    batch_sizes: list
    repeats: int
    warmup: int
    sample_seconds: float
    gemm_size: int
    channels_last: bool
    count_launches: bool
    tf32: bool
    cudnn_benchmark: bool


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--device", type=click.Choice(["cpu", "gpu", "all"]), default="cpu", show_default=True,
              help="all = cpu, then gpu where one is usable (saying so when it is skipped).")
@click.option("--models", default="mlp,cnn", show_default=True, help="Comma-separated model names.")
@click.option("--batch-sizes", default="32,128,256", show_default=True, callback=comma_ints,
              help="Comma-separated batch sizes.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write every measurement and the machine facts here.")
@click.option("--repeats", type=click.IntRange(1), default=5, show_default=True,
              help="Timed samples per implementation (rounds of A B); medians are reported.")
@click.option("--warmup", type=click.IntRange(0), default=3, show_default=True,
              help="Untimed training and inference steps per implementation before timing.")
@click.option("--sample-seconds", type=click.FloatRange(0, min_open=True), default=0.2, show_default=True,
              help="Target length of one timed sample; steps per sample are set from one timed step.")
@click.option("--threads", type=click.IntRange(1), default=None,
              help="CPU threads for NumPy's BLAS and torch alike (default: what NumPy's BLAS has).")
@click.option("--gemm-size", type=click.IntRange(16), default=1024, show_default=True,
              help="Side of the square float32 matmul that measures the device's best GEMM rate.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Save a bar chart of images/s (PNG) here.")
@click.option("--seed-loop", "seed_loop_samples", type=click.IntRange(0), default=0, show_default=True,
              help="Also time the course notebook's per-sample NumPy MLP loop on this many samples "
                   "(e.g. 2000) and extrapolate to a 60k epoch.")
@click.option("--channels-last/--no-channels-last", default=False, show_default=True,
              help="Add torch with channels_last memory format as a second CPU reference for the CNN.")
@click.option("--count-launches/--no-count-launches", default=False, show_default=True,
              help="GPU: count CUDA kernels per step with the PyTorch profiler (needs CUDA torch).")
@click.option("--tf32/--no-tf32", default=False, show_default=True,
              help="GPU: let torch use TF32 in matmuls and convolutions (off: plain float32 like CuPy).")
@click.option("--cudnn-benchmark/--no-cudnn-benchmark", default=False, show_default=True,
              help="GPU: torch.backends.cudnn.benchmark (off is PyTorch's default).")
def main(device, models, batch_sizes, json_path, repeats, warmup, sample_seconds, threads, gemm_size, plot_path,
         seed_loop_samples, channels_last, count_launches, tf32, cudnn_benchmark):
    """Time training and inference of the nets beside PyTorch eager; print markdown tables."""
    load_start = os.getloadavg()
    devices = ["cpu", "gpu"] if device == "all" else [device]
    skipped = []
    if "gpu" in devices:
        problem = backend_module.gpu_problem()
        if problem is not None:
            if device == "gpu":
                print(f"bench.py: --device gpu is not available: {problem}", file=sys.stderr)
                sys.exit(2)
            devices.remove("gpu")
            skipped.append(f"gpu: {problem}")
            log(f"gpu skipped: {problem}")

    limiter = None
    if threads is not None:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            print("bench.py: --threads needs threadpoolctl; pip install threadpoolctl, or leave out --threads.",
                  file=sys.stderr)
            sys.exit(2)
        limiter = threadpool_limits(limits=threads, user_api="blas")  # before torch: NumPy's BLAS only
    blas = numpy_blas_info()
    thread_count = threads or (blas or {}).get("num_threads") or os.cpu_count()
    torch = import_torch()
    if torch is not None:
        torch.set_num_threads(thread_count)

    options = Options(comma_list(models), batch_sizes, repeats, warmup, sample_seconds, gemm_size,
                      channels_last, count_launches, tf32, cudnn_benchmark)
    report = {
        "schema": SCHEMA,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(shlex.quote(part) for part in [Path(sys.executable).name, *sys.argv]),
        "machine": machine_facts(),
        "versions": library_versions(torch),
        "blas": blas,
        "threadpools": None,
        "threads": thread_count,
        "environment": {key: os.environ.get(key) for key in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                                             "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")},
        "settings": {
            "dtype": "float32",
            "optimizer": "adam lr=1e-3",
            "repeats": repeats,
            "warmup": warmup,
            "sample_seconds": sample_seconds,
            "epoch_images": EPOCH_IMAGES,
            "torch_inference": "model.eval() under torch.inference_mode()",
            "torch_tf32": tf32,
            "torch_cudnn_benchmark": cudnn_benchmark,
            "order": "warm-up per implementation, then rounds alternating nets, torch, ...; medians",
        },
        "peak_memory_method": {},
        "gemm": {},
        "rows": [],
        "floor": [],
        "seed_loop": None,
        "skipped": skipped,
        "load_average": {"start": list(load_start), "end": None},
    }
    try:
        for name in devices:
            bench_device(name, options, torch, report)
        if seed_loop_samples:
            log(f"seed loop: {seed_loop_samples} samples, one at a time")
            report["seed_loop"] = seed_loop_epoch_seconds(seed_loop_samples)
    finally:
        if limiter is not None:
            limiter.restore_original_limits()
    try:
        from threadpoolctl import threadpool_info

        report["threadpools"] = threadpool_info()
    except ImportError:
        pass
    report["load_average"]["end"] = list(os.getloadavg())

    print(f"## Throughput ({report['machine']['cpu']}, {thread_count} threads"
          + (f", {report['machine']['gpu']}" if "gpu" in report["machine"] else "") + ")\n")
    print(throughput_table(report["rows"]))
    print("\ntrain epoch nets/torch = torch img/s / nets img/s: the nets' epoch time over torch's (< 1: nets faster).")
    if report["floor"]:
        print("\n## Arithmetic floor (conv/linear GEMM FLOPs of a training step; backward = 2x forward)\n")
        print(floor_table(report["floor"], report["gemm"]))
    if report["seed_loop"]:
        seed = report["seed_loop"]
        print(f"\nPer-sample NumPy loop (batch 1 SGD, 784-128-64-10, float64): {seed['seconds']:.2f} s for "
              f"{seed['samples']} samples, so a 60k epoch takes about {seed['epoch_seconds_extrapolated']:.0f} s.")
    for line in report["skipped"]:
        print(f"\nskipped: {line}")
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=1, default=str) + "\n")
        log(f"wrote {json_path}")
    if plot_path is not None and report["rows"]:
        plot_path.parent.mkdir(parents=True, exist_ok=True)
        save_plot(report["rows"], plot_path)
        log(f"wrote {plot_path}")


if __name__ == "__main__":
    main()
