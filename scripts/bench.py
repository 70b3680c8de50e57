#!/usr/bin/env python
"""Throughput of the nets (NumPy on the CPU, CuPy on the GPU) beside PyTorch, and the arithmetic floor.

    python scripts/bench.py --device cpu --models mlp,cnn --batch-sizes 32,128,256 --json runs/bench_cpu.json
    python scripts/bench.py --models cnn --batch-sizes 128 --repeats 2      # a quick look (seconds)
    python scripts/bench.py --count-launches --models mlp,cnn --batch-sizes 128 --repeats 1   # where launches go

For every (model, device, batch size) the implementations (the nets, torch eager and, for the CNN on the CPU,
torch with channels_last) get the same model, the same synthetic batch of MNIST's shape (already on the
device), float32 and Adam. Training steps (forward, backward, optimizer step) and inference (forward in eval
mode; torch under `inference_mode`) are timed separately. Each implementation warms up first (its peak memory
is read then); on the CPU each runs in a process of its own. The timed samples alternate nets, torch, ...
round by round, so that drift on a shared machine hits all of them; medians are reported with the spread of
the samples. On the GPU the clock is read only after synchronizing. Torch gets as many CPU threads as NumPy's
BLAS.

stdout gets markdown tables (throughput and nets/torch ratio per row; the arithmetic floor); progress goes
to stderr. docs/performance.md says how to read and reproduce them.
"""


from __future__ import annotations

import os
import sys
from pathlib import Path

from _cli import Checked, comma_list, comma_models, one_line_errors, run  # first: signals, packages, sys.path

import click

from nets.devices import gpu_unavailable
from nets.errors import DeviceError
from nets.commands import python_command
from nets.baseline import torch_or_none
from nets.bench import MAX_BATCH_SIZE, log
from nets.bench.report import finish_report, new_report, numpy_blas_info, print_tables, save_plot, write_json
from nets.bench.device import Options, bench_device, count_standin_launches
from nets.bench.seed_loop import seed_loop_epoch_seconds
from nets.nn.models import MODEL_NAMES
from nets.outputs import check_file_creatable
from nets.train.parallel import usable_cores
from nets.validate import real

# Bounds that keep one run within minutes and a few GB: more threads than cores only measure oversubscription (and
# each thread of NumPy's BLAS and of torch is a process slot); a 4096^3 float32 GEMM is 137 GFLOP and 200 MB.
MAX_BATCH_SIZES = 16
CORES = usable_cores()


def comma_ints(context, parameter, value):
    items = comma_list(value)
    if not items or len(items) > MAX_BATCH_SIZES:
        raise click.BadParameter(f"give 1 to {MAX_BATCH_SIZES} batch sizes, each 1 to {MAX_BATCH_SIZE}, "
                                 "e.g. 32,128,256")
    try:
        numbers = [int(item) for item in items]
    except ValueError:
        raise click.BadParameter("give whole numbers separated by commas, e.g. 32,128,256") from None
    if min(numbers) < 1 or max(numbers) > MAX_BATCH_SIZE:
        raise click.BadParameter(f"each batch size must be 1 to {MAX_BATCH_SIZE} (a CNN batch of {MAX_BATCH_SIZE} "
                                 "takes about 1.6 GB)")
    return numbers


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--device", type=click.Choice(["cpu", "gpu", "all"]), default="cpu", show_default=True,
              help="all = cpu, then gpu where one is usable (saying so when it is skipped).")
@click.option("--models", default="mlp,cnn", show_default=True, callback=comma_models,
              help=f"Comma-separated model names ({', '.join(MODEL_NAMES)}).")
@click.option("--batch-sizes", default="32,128,256", show_default=True, callback=comma_ints,
              help=f"Comma-separated batch sizes (at most {MAX_BATCH_SIZES}, each 1 to {MAX_BATCH_SIZE}).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write every measurement and the machine facts here.")
@click.option("--repeats", type=click.IntRange(1, 100), default=5, show_default=True,
              help="Timed samples per implementation (rounds of A B); medians are reported.")
@click.option("--warmup", type=click.IntRange(0, 100), default=3, show_default=True,
              help="Untimed training and inference steps per implementation before timing.")
@click.option("--sample-seconds", default=0.2, show_default=True,
              type=Checked(float, lambda value, name: real(value, name, low=0, high=10, low_open=True)),
              help="Target length of one timed sample; steps per sample are set from one timed step.")
@click.option("--threads", type=click.IntRange(1, CORES), default=None,
              help=f"CPU threads for NumPy's BLAS and torch alike, at most the usable cores ({CORES} here; default: "
                   "what NumPy's BLAS has).")
@click.option("--gemm-size", type=click.IntRange(16, 4096), default=1024, show_default=True,
              help="Side of the square float32 matmul that measures the device's best GEMM rate.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Save a bar chart of images/s (PNG) here.")
@click.option("--seed-loop", "seed_loop_samples", type=click.IntRange(0, 60_000), default=0, show_default=True,
              help="Also time the course notebook's per-sample NumPy MLP loop on this many samples "
                   "(e.g. 2000) and extrapolate to a 60k epoch.")
@click.option("--channels-last/--no-channels-last", default=True, show_default=True,
              help="Time torch with channels_last tensors (oneDNN's direct convolutions) beside torch eager, as "
                   "the strongest CPU reference for the CNN.")
@click.option("--count-launches/--no-count-launches", default=False, show_default=True,
              help="Count kernel launches per step: per layer and pass with the strict CuPy stand-in (any "
                   "machine, needs cupy importable); on a GPU also with the PyTorch profiler (nets and torch).")
@click.option("--tf32/--no-tf32", default=False, show_default=True,
              help="GPU: let torch use TF32 in matmuls and convolutions (off: plain float32 like CuPy).")
@click.option("--cudnn-benchmark/--no-cudnn-benchmark", default=False, show_default=True,
              help="GPU: torch.backends.cudnn.benchmark (off is PyTorch's default).")
@click.option("--graphs/--no-graphs", default=True, show_default=True,
              help="GPU: also time each training step captured as a CUDA graph and replayed (nets_graph, and "
                   "torch.cuda.graphs as torch_graph).")
@one_line_errors
def main(device, models, batch_sizes, json_path, repeats, warmup, sample_seconds, threads, gemm_size, plot_path,
         seed_loop_samples, channels_last, count_launches, tf32, cudnn_benchmark, graphs):
    """Time training and inference of the nets beside PyTorch eager; print markdown tables.

    \b
    python scripts/bench.py --models cnn --batch-sizes 128 --repeats 2     # a quick look (seconds)
    python scripts/bench.py --device cpu --models mlp,cnn --json runs/bench.json
    python scripts/bench.py --count-launches --models mlp,cnn --batch-sizes 128 --repeats 1
    """
    for path, option in ((json_path, "--json"), (plot_path, "--plot")):  # before minutes of timing, not after
        if path is not None:
            check_file_creatable(path, option)
    load_start = os.getloadavg()
    devices = ["cpu", "gpu"] if device == "all" else [device]
    skipped = []
    if "gpu" in devices:
        problem = gpu_unavailable()
        if problem is not None:
            if device == "gpu":
                raise DeviceError(f"--device gpu is not available: {problem}")
            devices.remove("gpu")
            skipped.append(f"gpu: {problem}")
            log(f"gpu skipped: {problem}")

    limiter = None
    if threads is not None:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            raise DeviceError(f"--threads needs threadpoolctl; {python_command()} -m pip install "
                              "threadpoolctl, or leave out --threads.") from None
        limiter = threadpool_limits(limits=threads, user_api="blas")  # before torch: NumPy's BLAS only
    blas = numpy_blas_info()
    thread_count = threads or (blas or {}).get("num_threads") or os.cpu_count()
    torch = torch_or_none()  # None: the torch rows are skipped
    if torch is not None:
        torch.set_num_threads(thread_count)

    options = Options(models, batch_sizes, repeats, warmup, sample_seconds, gemm_size,
                      channels_last, count_launches, tf32, cudnn_benchmark, graphs, threads)
    report = new_report(options, torch=torch, blas=blas, threads=thread_count, skipped=skipped,
                        load_start=load_start, argv=sys.argv)
    try:
        for name in devices:
            bench_device(name, options, torch, report)
        if count_launches:
            count_standin_launches(options, report)
        if seed_loop_samples:
            log(f"seed loop: {seed_loop_samples} samples, one at a time")
            report["seed_loop"] = seed_loop_epoch_seconds(seed_loop_samples)
    finally:
        if limiter is not None:
            limiter.restore_original_limits()
    finish_report(report)
    for line in report["warnings"]:
        log(f"warning: {line}")

    print_tables(report)
    if json_path is not None:
        write_json(report, json_path)
        log(f"wrote {json_path}")
    if plot_path is not None and report["rows"]:
        plot_path.parent.mkdir(parents=True, exist_ok=True)
        save_plot(report["rows"], plot_path)
        log(f"wrote {plot_path}")


if __name__ == "__main__":
    run(main)
