"""What the benchmark reports: machine facts, library versions, NumPy's BLAS, the JSON report, the markdown
tables on stdout, and the bar chart (matplotlib imported only for it)."""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import sys
from pathlib import Path

import numpy

from nets.bench import EPOCH_IMAGES, SCHEMA
from nets.bench.timing import UNTRUSTED_SPREAD
from nets.train.parallel import usable_cores


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
    return {
        "cpu": cpu_model_name(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "platform": platform.platform(),
        "hostname": platform.node(),
    }


def library_versions(torch) -> dict:
    versions = {"python": platform.python_version(), "numpy": numpy.__version__, "torch": None, "cupy": None}
    if torch is not None:
        versions["torch"] = torch.__version__
        versions["torch_cuda"] = torch.version.cuda
    return versions


def new_report(options, *, torch, blas, threads: int, skipped: list, load_start, argv) -> dict:
    """The JSON report before any measurement: machine, versions, settings; rows and floors come later."""
    return {
        "schema": SCHEMA,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(shlex.quote(part) for part in [Path(sys.executable).name, *argv]),
        "machine": machine_facts(),
        "versions": library_versions(torch),
        "blas": blas,
        "threadpools": None,
        "threads": threads,
        "environment": {key: os.environ.get(key) for key in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                                             "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")},
        "settings": {
            "dtype": "float32",
            "optimizer": "adam lr=1e-3",
            "repeats": options.repeats,
            "warmup": options.warmup,
            "sample_seconds": options.sample_seconds,
            "epoch_images": EPOCH_IMAGES,
            "torch_inference": "model.eval() under torch.inference_mode()",
            "torch_tf32": options.tf32,
            "torch_cudnn_benchmark": options.cudnn_benchmark,
            "order": "warm-up per implementation, then rounds alternating nets, torch, ...; medians",
            "isolation": "cpu: each implementation in a process of its own; gpu: one process",
        },
        "peak_memory_method": {},
        "gemm": {},
        "rows": [],
        "floor": [],
        "seed_loop": None,
        "skipped": skipped,
        "load_average": {"start": list(load_start), "end": None},
        "warnings": [],
    }


def finish_report(report: dict) -> None:
    """Record every thread pool at the end (torch's too), the load average after the measurements, and the
    warnings about figures that are not trustworthy."""
    try:
        from threadpoolctl import threadpool_info

        report["threadpools"] = threadpool_info()
    except ImportError:
        pass
    report["load_average"]["end"] = list(os.getloadavg())
    report["warnings"] = trust_warnings(report)


def trust_warnings(report: dict) -> list[str]:
    """One line per figure whose samples disagree by more than UNTRUSTED_SPREAD, and one when the load average
    (1 minute, at the start or the end) was above the usable cores: other work shared the machine."""
    lines = []
    for row in report["rows"]:
        for phase in ("train", "infer"):
            value = row.get(f"{phase}_spread")
            if value is not None and value > UNTRUSTED_SPREAD:
                samples = row[f"{phase}_samples_images_per_second"]
                lines.append(f"{row['model']} {row['device']} batch {row['batch_size']} {row['impl']} {phase}: the "
                             f"samples range from {min(samples):,.0f} to {max(samples):,.0f} img/s ({value:.1f}x), so "
                             "its median is not trustworthy; measure again on a quieter machine.")
    cores, load = report["machine"]["usable_cores"], report["load_average"]
    start, end = (load[key][0] if load[key] else 0.0 for key in ("start", "end"))
    if max(start, end) > cores:
        lines.append(f"the load average was {start:.1f} at the start and {end:.1f} at the end, above the {cores} "
                     "usable cores: other work competed with every figure, so none is trustworthy.")
    return lines


def _load_text(report: dict) -> str:
    load = report["load_average"]
    start, end = (f"{load[key][0]:.1f}" if load[key] else "?" for key in ("start", "end"))
    return f"load average {start} at the start, {end} at the end, {report['machine']['usable_cores']} usable cores"


def print_tables(report: dict, file=None) -> None:
    """The markdown on stdout: throughput, the arithmetic floor, the seed loop, what was skipped."""
    print(f"## Throughput ({report['machine']['cpu']}, {report['threads']} threads"
          + (f", {report['machine']['gpu']}" if "gpu" in report["machine"] else "") + f"; {_load_text(report)})\n",
          file=file)
    print(throughput_table(report["rows"]), file=file)
    print("\ntrain epoch nets/torch = torch img/s / nets img/s: the nets' epoch time over torch's (< 1: nets faster); "
          "nets/channels_last the same against torch with channels_last tensors. spread = the fastest sample over the "
          f"slowest, the worse of train and infer (above {UNTRUSTED_SPREAD:g}: not trustworthy; – with one sample).",
          file=file)
    captured = graph_table(report["rows"])
    if captured:
        print("\n## Captured steps (CUDA graphs): epoch time over torch eager's, and over torch's own graphs\n",
              file=file)
        print(captured, file=file)
    for line in report.get("warnings", []):
        print(f"\nwarning: {line}", file=file)
    if report["floor"]:
        print("\n## Arithmetic floor (conv/linear GEMM FLOPs of a training step; backward = 2x forward)\n", file=file)
        print(floor_table(report["floor"], report["gemm"]), file=file)
    if report.get("launches_standin"):
        from nets.bench.launches import launch_table

        print("\n## Kernel launches per step on a GPU (counted by the strict CuPy stand-in: nets, Adam, float32)\n",
              file=file)
        print(launch_table(report["launches_standin"]), file=file)
    if report["seed_loop"]:
        seed = report["seed_loop"]
        print(f"\nPer-sample NumPy loop (batch 1 SGD, 784-128-64-10, float64): {seed['seconds']:.2f} s for "
              f"{seed['samples']} samples, so a 60k epoch takes about {seed['epoch_seconds_extrapolated']:.0f} s.",
              file=file)
    for line in report["skipped"]:
        print(f"\nskipped: {line}", file=file)


def fmt(value, digits=0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def worst_spread(row: dict) -> str:
    """The row's larger spread of train and infer, marked "!" above UNTRUSTED_SPREAD; "–" when unknown."""
    values = [row[key] for key in ("train_spread", "infer_spread") if row.get(key) is not None]
    if not values:
        return "–"
    return f"{max(values):.2f}" + ("!" if max(values) > UNTRUSTED_SPREAD else "")


REFERENCES = ("torch", "torch_channels_last")  # the columns beside the nets, where rows of them exist
SHORT = {"torch": "torch", "torch_channels_last": "channels_last"}


def throughput_table(rows) -> str:
    """One line per (model, device, batch): images/s of the nets, torch eager and (where timed) torch with
    channels_last, and the nets' epoch time over each; then the rows of other implementations and launch counts."""
    by_key: dict[tuple, dict] = {}
    for row in rows:
        by_key.setdefault((row["model"], row["device"], row["batch_size"]), {})[row["impl"]] = row
    peers = [impl for impl in REFERENCES if impl == "torch" or any(impl in impls for impls in by_key.values())]
    names = [SHORT[impl] for impl in peers]
    header = ["model", "device", "batch"]
    for phase, word in (("train", "train epoch"), ("infer", "infer")):
        header += [f"{phase} img/s nets", *(f"{phase} img/s {name}" for name in names)]
        header += [f"{word} nets/{name}" for name in names]
    header += ["60k epoch s nets", *(f"60k epoch s {name}" for name in names)]
    header += [f"peak MB nets / {' / '.join(names)}", f"spread nets / {' / '.join(names)}"]
    lines = ["| " + " | ".join(header) + " |", "|---|---|" + "---:|" * (len(header) - 2)]
    for (model, device, batch), impls in by_key.items():
        nets = impls.get("nets", {})
        cells = [model, device, str(batch)]
        for phase in ("train", "infer"):
            key = f"{phase}_images_per_second"
            cells += [fmt(nets.get(key)), *(fmt(impls.get(impl, {}).get(key)) for impl in peers)]
            cells += [_ratio(impls.get(impl, {}).get(key), nets.get(key)) for impl in peers]
        cells += [fmt(nets.get("train_epoch_seconds"), 2),
                  *(fmt(impls.get(impl, {}).get("train_epoch_seconds"), 2) for impl in peers)]
        measured = [nets, *(impls.get(impl, {}) for impl in peers)]
        cells.append(" / ".join(fmt(row.get("peak_memory_mb"), 1) for row in measured))
        cells.append(" / ".join(worst_spread(row) for row in measured))
        lines.append("| " + " | ".join(cells) + " |")
    extra = [row for row in rows if row["impl"] not in ("nets", *peers)]
    if extra:
        lines += ["", "| model | device | batch | impl | train img/s | infer img/s | 60k epoch s | peak MB | spread |"]
        lines.append("|---|---|---:|---|---:|---:|---:|---:|---:|")
        for row in extra:
            lines.append(
                f"| {row['model']} | {row['device']} | {row['batch_size']} | {row['impl']} "
                f"| {fmt(row['train_images_per_second'])} | {fmt(row['infer_images_per_second'])} "
                f"| {fmt(row['train_epoch_seconds'], 2)} | {fmt(row['peak_memory_mb'], 1)} | {worst_spread(row)} |"
            )
    return "\n".join(lines + _launch_lines(rows))


def _ratio(peer_rate, nets_rate) -> str:
    """The nets' time over a peer's: the peer's images/s over the nets' (below 1: the nets are faster)."""
    return f"{peer_rate / nets_rate:.2f}" if peer_rate and nets_rate else "–"


def _launch_lines(rows) -> list[str]:
    launches = [row for row in rows if row.get("kernel_launches_per_train_step") is not None]
    if not launches:
        return []
    lines = ["", "| model | device | batch | impl | kernels / train step | kernels / infer step |",
             "|---|---|---:|---|---:|---:|"]
    for row in launches:
        lines.append(f"| {row['model']} | {row['device']} | {row['batch_size']} | {row['impl']} "
                     f"| {fmt(row['kernel_launches_per_train_step'], 1)} "
                     f"| {fmt(row['kernel_launches_per_infer_step'], 1)} |")
    return lines


def graph_table(rows) -> str:
    """One line per (model, device, batch) with a captured row: each impl's training epoch time over torch eager's
    (< 1: faster) and the captured nets' over torch.cuda.graphs'; "" when no step was captured."""
    by_key: dict[tuple, dict] = {}
    for row in rows:
        by_key.setdefault((row["model"], row["device"], row["batch_size"]), {})[row["impl"]] = row
    keys = [key for key, impls in by_key.items() if "nets_graph" in impls]
    if not keys:
        return ""

    def rate(impls, impl):
        return (impls.get(impl) or {}).get("train_images_per_second")

    def over(impls, impl, reference):
        mine, theirs = rate(impls, impl), rate(impls, reference)
        return f"{theirs / mine:.2f}" if mine and theirs else "–"

    lines = ["| model | device | batch | train img/s nets eager | nets captured | torch eager | torch captured "
             "| epoch nets eager / torch eager | nets captured / torch eager | nets captured / torch captured |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for key in keys:
        impls = by_key[key]
        lines.append(f"| {' | '.join(map(str, key))} | "
                     + " | ".join(fmt(rate(impls, impl)) for impl in ("nets", "nets_graph", "torch", "torch_graph"))
                     + f" | {over(impls, 'nets', 'torch')} | {over(impls, 'nets_graph', 'torch')} "
                       f"| {over(impls, 'nets_graph', 'torch_graph')} |")
    return "\n".join(lines)


def floor_table(floors, gemm) -> str:
    """The arithmetic floor of every model and batch size, and each implementation's epoch time over it."""
    peers = [impl for impl in REFERENCES if any(f"{impl}_epoch_over_floor" in floor for floor in floors)]
    peers = peers or ["torch"]
    lines = [
        "| model | device | batch | GFLOP / 60k epoch | GEMM GFLOP/s (layer shapes) | floor s "
        "| floor s at square GEMM rate | nets epoch / floor | "
        + " | ".join(f"{SHORT[impl]} epoch / floor" for impl in peers) + " |",
        "|---|---|---:|---:|---:|---:|---:|---:|" + "---:|" * len(peers),
    ]
    for floor in floors:
        lines.append(
            f"| {floor['model']} | {floor['device']} | {floor['batch_size']} | {floor['gflop_per_epoch']:.1f} "
            f"| {floor['gemm_gflops_layer_shapes']:.1f} | {floor['floor_seconds']:.2f} "
            f"| {floor['floor_seconds_at_square_rate']:.2f} | {fmt(floor.get('nets_epoch_over_floor'), 1)} | "
            + " | ".join(fmt(floor.get(f"{impl}_epoch_over_floor"), 1) for impl in peers) + " |"
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


def write_json(report: dict, path: Path) -> None:
    """The whole report as JSON (indent 1), its folder made when missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1, default=str) + "\n")
