"""CUDA kernel launches per step, counted by the PyTorch profiler."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path


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
