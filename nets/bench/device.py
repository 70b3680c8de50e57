"""One device's benchmark: every model and batch size, nets beside torch, rows and floors into the report. On the
CPU each implementation is timed in a process of its own (isolated.py); on a GPU they share this one."""

from __future__ import annotations

import gc
import statistics
from dataclasses import dataclass, field

import backend as backend_module
from nets.commands import install_hint, torch_install_hint

from nets.bench import EPOCH_IMAGES, log
from nets.bench.flops import gemm_gflops, layer_gemms, train_flops_per_image, train_step_gemm_shapes
from nets.bench.launches import count_kernel_launches, standin_capture, standin_launches
from nets.bench.isolated import ImplProcesses, ImplSpec
from nets.bench.memory import CpuPeakMemory, CupyPeakMemory, NoPeakMemory, TorchCudaPeakMemory
from nets.bench.runners import TorchGraphRunner, make_batch, nets_runner, torch_runner
from nets.bench.timing import alternate_rounds, spread
from nets.nn.architecture import input_shape


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
    threads: int | None = None  # --threads: NumPy's BLAS limited to this many in every process (None: as it is)


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

    def set_samples(self, phase: str, values: list) -> None:
        """The samples (images/s) of "train" or "infer", and their median as the figure."""
        setattr(self, f"{phase}_samples_images_per_second", list(values))
        setattr(self, f"{phase}_images_per_second", statistics.median(values))

    def as_json(self) -> dict:
        data = {key: value for key, value in self.__dict__.items() if key != "runner"}
        data["train_epoch_seconds"] = self.epoch_seconds
        # the best sample: less disturbed by other processes than the median on a shared machine
        for phase in ("train", "infer"):
            samples = data[f"{phase}_samples_images_per_second"]
            data[f"{phase}_images_per_second_best"] = max(samples) if samples else None
            data[f"{phase}_spread"] = spread(samples)  # fastest over slowest sample: above 1.5, not trustworthy
        return data


def torch_problem_on(device: str, torch, report: dict) -> str | None:
    """Why the torch rows are skipped on `device` (said on stderr and in report["skipped"]), or None."""
    problem = None
    if torch is None:
        problem = f"torch is not installed ({torch_install_hint()}); torch rows skipped"
    elif device == "gpu" and not torch.cuda.is_available():
        problem = "torch has no CUDA here (a CPU build?); torch rows skipped on the gpu"
    if problem:
        log(f"[{device}] {problem}")
        report["skipped"].append(f"{device}: {problem}")
    return problem


def bench_device(device: str, options, torch, report: dict) -> None:
    """All models and batch sizes on one device; appends to report["rows"] and report["floor"]. On the CPU each
    implementation runs in a process of its own (isolated.py); on a GPU all run here, one after another."""
    backend = backend_module.get_backend(device, seed=0)
    torch_problem = torch_problem_on(device, torch, report)
    if device == "gpu":
        probes = gpu_setup(backend, options, torch if torch_problem is None else None, report)
    else:
        probes = None
        method = f"{CpuPeakMemory.method}; in the implementation's own process"
        report["peak_memory_method"][device] = {impl: method for impl in ("nets", "torch")}
    square = options.gemm_size
    square_rate = gemm_gflops(backend, [(square, square, square)], options.repeats)
    report["gemm"][device] = {"square_size": square, "square_gflops": square_rate}
    log(f"[{device}] float32 GEMM {square}^3: {square_rate:.1f} GFLOP/s")
    if device == "gpu":
        prime_gpu(backend, options.models, torch_problem)
    for model_name in options.models:
        gemms = layer_gemms(model_name, input_shape(model_name)) if torch is not None else []
        for batch_size in options.batch_sizes:
            impls = impls_on(device, model_name, options, torch_problem)
            if device == "cpu":
                rows = isolated_rows(model_name, batch_size, impls, options, report["threads"])
            else:
                rows = in_process_rows(backend, model_name, batch_size, impls, options, probes)
                if options.count_launches and torch_problem is None:
                    count_gpu_launches(torch, rows)
            for row in rows.values():
                report["rows"].append(row.as_json())
                log(f"[{device}] {model_name} batch {batch_size} {row.impl}: "
                    f"train {row.train_images_per_second:,.0f} img/s, infer {row.infer_images_per_second:,.0f} img/s, "
                    f"peak {row.peak_memory_mb if row.peak_memory_mb is not None else float('nan'):.1f} MB")
            if gemms:
                report["floor"].append(floor_entry(backend, model_name, device, batch_size, gemms, rows,
                                                   square_rate, options.repeats))
            gc.collect()


def impls_on(device: str, model_name: str, options, torch_problem) -> list[str]:
    """The implementations timed for one model on `device`: the nets, torch eager, torch with channels_last (a CNN on
    the CPU, with --channels-last), and on a GPU each training step captured as a CUDA graph (with --graphs)."""
    impls = ["nets"]
    if torch_problem is None:
        impls.append("torch")
        if options.channels_last and device == "cpu" and len(input_shape(model_name)) == 3:
            impls.append("torch_channels_last")
    if options.graphs and device == "gpu":
        impls += ["nets_graph"] + (["torch_graph"] if torch_problem is None else [])
    return impls


def isolated_rows(model_name, batch_size, impls, options, threads) -> dict:
    """{impl: Row} of one model and batch size on the CPU, each implementation in a process of its own."""
    specs = [ImplSpec(impl, model_name, batch_size, options.warmup, threads, limit_blas=options.threads is not None)
             for impl in impls]
    with ImplProcesses(specs) as processes:
        rows = {spec.impl: Row(model_name, spec.impl, "cpu", batch_size, peak_memory_mb=facts["peak_mb"])
                for spec, facts in zip(specs, processes.ready())}
        for phase in ("train", "infer"):
            samples = processes.samples(phase, options.repeats, options.sample_seconds, batch_size)
            for spec, values in zip(specs, samples):
                rows[spec.impl].set_samples(phase, values)
    return rows


def gpu_setup(backend, options, torch, report: dict) -> dict:
    """Facts of the GPU into the report, torch's float32 settings (no TF32 unless asked); -> {impl kind: meter}."""
    report["machine"]["gpu"] = backend.device_name()
    report["versions"].update(backend.library_versions())
    if torch is not None:
        report["versions"]["cudnn"] = torch.backends.cudnn.version()
        # the same float32 arithmetic as CuPy's matmul: no TF32 in torch either
        torch.backends.cuda.matmul.allow_tf32 = options.tf32
        torch.backends.cudnn.allow_tf32 = options.tf32
        torch.backends.cudnn.benchmark = options.cudnn_benchmark
    probes = {"nets": CupyPeakMemory(backend.xp), "torch": TorchCudaPeakMemory(torch) if torch else NoPeakMemory()}
    report["peak_memory_method"]["gpu"] = {"nets": probes["nets"].method, "torch": probes["torch"].method}
    return probes


def prime_gpu(backend, models, torch_problem) -> None:
    """One step of everything first, so that one-time costs (loading cuBLAS, compiling CuPy kernels) land neither in
    the first row's peak memory nor in its warm-up."""
    for model_name in models:
        x_host, labels_host = make_batch(input_shape(model_name), 2)
        primers = [nets_runner(model_name, backend, x_host, labels_host)]
        if torch_problem is None:
            primers.append(torch_runner(model_name, "gpu", x_host, labels_host))
        for runner in primers:
            for step in (runner.train_step, runner.infer_step):
                step()
            runner.synchronize()


def in_process_rows(backend, model_name, batch_size, impls, options, probes) -> dict:
    """{impl: Row} of one model and batch size on a GPU: each implementation built and warmed up in turn (its peak
    its own), then the samples alternating between them."""
    x_host, labels_host = make_batch(input_shape(model_name), batch_size)
    builders = {
        "nets": lambda: nets_runner(model_name, backend, x_host, labels_host),
        "torch": lambda: torch_runner(model_name, "gpu", x_host, labels_host),
        "nets_graph": lambda: nets_runner(model_name, backend, x_host, labels_host, True),
        "torch_graph": lambda: TorchGraphRunner(model_name, x_host, labels_host),
    }
    runners, rows = [], {}
    for impl in impls:
        probe = probes["nets" if impl.startswith("nets") else "torch"]
        probe.start()
        runner = builders[impl]()
        for step in (runner.train_step, runner.infer_step):
            for _ in range(options.warmup):
                step()
        runner.synchronize()
        rows[impl] = Row(model_name, impl, "gpu", batch_size, peak_memory_mb=probe.stop())
        rows[impl].runner = runner
        runners.append(runner)
    for phase in ("train", "infer"):
        samples = alternate_rounds(runners, phase, options.repeats, options.sample_seconds, batch_size)
        for impl, values in samples.items():
            rows[impl].set_samples(phase, values)
    return rows


def count_gpu_launches(torch, rows: dict) -> None:
    """Kernel launches per training and inference step of every row's runner, by the PyTorch profiler."""
    for row in rows.values():
        for phase, step in (("train", row.runner.train_step), ("infer", row.runner.infer_step)):
            try:
                count = count_kernel_launches(torch, row.runner, step)
            except Exception as error:  # the profiler is optional machinery
                log(f"[gpu] counting kernel launches failed: {error}")
                count = None
            setattr(row, f"kernel_launches_per_{phase}_step", count)


def floor_entry(backend, model_name, device, batch_size, gemms, rows, square_rate, repeats) -> dict:
    """The arithmetic floor of one model and batch size: its GEMMs' FLOPs at their measured rate, and each
    implementation's epoch time over it."""
    shaped_rate = gemm_gflops(backend, train_step_gemm_shapes(gemms, batch_size), repeats)
    flops_per_epoch = train_flops_per_image(gemms) * EPOCH_IMAGES
    floor_seconds = flops_per_epoch / (shaped_rate * 1e9)
    floor = {
        "model": model_name, "device": device, "batch_size": batch_size,
        "train_flops_per_image": train_flops_per_image(gemms), "gflop_per_epoch": flops_per_epoch / 1e9,
        "gemm_gflops_layer_shapes": shaped_rate, "gemm_gflops_square": square_rate, "floor_seconds": floor_seconds,
        "floor_seconds_at_square_rate": flops_per_epoch / (square_rate * 1e9),
    }
    for impl, row in rows.items():
        floor[f"{impl}_epoch_over_floor"] = row.epoch_seconds / floor_seconds
    return floor


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
