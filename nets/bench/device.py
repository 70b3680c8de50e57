"""One device's benchmark: every model and batch size, nets beside torch, rows and floors into the report."""

from __future__ import annotations

import gc
import statistics
from dataclasses import dataclass, field

import backend as backend_module
from nets.commands import install_hint, torch_install_hint

from nets.bench import EPOCH_IMAGES, log
from nets.bench.flops import gemm_gflops, layer_gemms, train_flops_per_image, train_step_gemm_shapes
from nets.bench.launches import count_kernel_launches, standin_capture, standin_launches
from nets.bench.memory import CpuPeakMemory, CupyPeakMemory, NoPeakMemory, TorchCudaPeakMemory
from nets.bench.runners import TorchGraphRunner, make_batch, nets_runner, torch_runner
from nets.bench.timing import alternate_rounds, spread


@dataclass
class Options:
    """What scripts/bench.py was asked to measure (one device at a time)."""

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
    graphs: bool = True  # on a GPU, also each training step captured as a CUDA graph (nets_graph, torch_graph)


@dataclass
class Row:
    """One (model, impl, device, batch size) measurement; as_json() is its row in the JSON."""

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
            data[f"{phase}_spread"] = spread(samples)  # fastest over slowest sample: above 1.5, not trustworthy
        return data


def bench_device(device: str, options, torch, report: dict) -> None:
    """All models and batch sizes on one device; appends to report["rows"] and report["floor"]."""
    backend = backend_module.get_backend(device, seed=0)
    torch_problem = None
    if torch is None:
        torch_problem = f"torch is not installed ({torch_install_hint()}); torch rows skipped"
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

    from nets.nn.models import build_model

    shapes = {
        name: tuple(build_model(name, backend=backend_module.get_backend("cpu"), dtype="float32").input_shape)
        for name in options.models
    }
    # One step of everything first, so that one-time costs (loading oneDNN or cuBLAS, compiling CuPy
    # kernels, starting thread pools) land neither in the first row's peak memory nor in its warm-up.
    for model_name, input_shape in shapes.items():
        x_host, labels_host = make_batch(input_shape, 2)
        primers = [nets_runner(model_name, backend, x_host, labels_host)]
        if torch_problem is None:
            primers.append(torch_runner(model_name, device, x_host, labels_host))
        for runner in primers:
            for step in (runner.train_step, runner.infer_step):
                step()
            runner.synchronize()
        del primers

    for model_name, input_shape in shapes.items():
        gemms = layer_gemms(model_name, input_shape) if torch is not None else []
        for batch_size in options.batch_sizes:
            x_host, labels_host = make_batch(input_shape, batch_size)
            builders = [("nets", lambda: nets_runner(model_name, backend, x_host, labels_host), nets_probe)]
            if torch_problem is None:
                builders.append(("torch", lambda: torch_runner(model_name, device, x_host, labels_host), torch_probe))
                if options.channels_last and device == "cpu" and len(input_shape) == 3:
                    builders.append(("torch_channels_last",
                                     lambda: torch_runner(model_name, device, x_host, labels_host, True), torch_probe))
            if options.graphs and device == "gpu":
                builders.append(("nets_graph", lambda: nets_runner(model_name, backend, x_host, labels_host, True),
                                 nets_probe))
                if torch_problem is None:
                    builders.append(("torch_graph", lambda: TorchGraphRunner(model_name, x_host, labels_host),
                                     torch_probe))
            runners, rows = [], {}
            for impl, build, probe in builders:
                # built and warmed up one at a time, so each peak is its own
                probe.start()
                runner = build()
                for step in (runner.train_step, runner.infer_step):
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


def count_standin_launches(options, report: dict) -> None:
    """Kernel launches per training step of the nets, per layer and pass, counted by the CuPy stand-in
    (the same on every machine); into report["launches_standin"]."""
    entries = []
    for model_name in options.models:
        for batch_size in options.batch_sizes:
            log(f"[stand-in] counting launches: {model_name} batch {batch_size}")
            entry = standin_launches(model_name, batch_size)
            if entry is not None:
                entry["capture"] = standin_capture(model_name, batch_size)
            if entry is None:
                report["skipped"].append(f"launches: cupy is not importable here ({install_hint('gpu')}); "
                                         "the stand-in needs it as the reference for CuPy's API")
                return
            entries.append(entry)
    report["launches_standin"] = entries
