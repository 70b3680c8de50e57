"""On the CPU, each implementation timed in a process of its own, the processes taking turns round by round.

NumPy and torch in one process share it with their thread pools: one library's worker threads, still spinning
after its last call, tax the other's samples. So on the CPU every implementation (the nets, torch eager, torch with
channels_last) is built, warmed up and timed in a child process of its own, which holds nothing of the others, and
its peak memory is its process's own. The parent asks each child in turn for one timed sample (A B C, A B C, ...),
so that drift on the machine reaches all of them alike, and waits a moment before each sample for the previous
child's threads to park.

    with ImplProcesses([ImplSpec("nets", "cnn", 128, 3, 2), ImplSpec("torch", "cnn", 128, 3, 2)]) as processes:
        facts = processes.ready()            # [{"peak_mb", "pid", "torch_loaded"}] once each has warmed up
        samples = processes.samples("train", repeats=5, sample_seconds=0.2, batch_size=128)   # [[img/s, ...], ...]
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from dataclasses import dataclass

from nets.bench.timing import SETTLE_SECONDS, seconds_for, steps_per_sample


@dataclass(frozen=True)
class ImplSpec:
    """What a child builds: impl ("nets", "torch", "torch_channels_last") of `model` at `batch_size` on the CPU, with
    `threads` CPU threads (torch's intra-op threads; NumPy's BLAS limited to them when `limit_blas`)."""

    impl: str
    model: str
    batch_size: int
    warmup: int
    threads: int
    limit_blas: bool = False


def _build(spec: ImplSpec, batch_size: int):
    from nets.bench.runners import make_batch, nets_runner, torch_runner

    from nets.nn.architecture import input_shape

    x_host, labels_host = make_batch(input_shape(spec.model), batch_size)
    if spec.impl == "nets":
        from backend import get_backend

        return nets_runner(spec.model, get_backend("cpu", seed=0), x_host, labels_host)
    return torch_runner(spec.model, "cpu", x_host, labels_host, channels_last=spec.impl == "torch_channels_last")


def _prepare(spec: ImplSpec):
    """In the child: threads set, one-time costs primed (a batch of 2), then the runner built and warmed up with its
    peak memory read. -> (runner, peak MB or None)."""
    if spec.limit_blas:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=spec.threads, user_api="blas")
    if spec.impl != "nets":
        import torch

        torch.set_num_threads(spec.threads)
    from nets.bench.memory import CpuPeakMemory, NoPeakMemory

    primer = _build(spec, 2)  # loading oneDNN, starting thread pools: in no implementation's peak or warm-up
    for step in (primer.train_step, primer.infer_step):
        step()
    del primer
    probe = CpuPeakMemory() if CpuPeakMemory.available() else NoPeakMemory()
    probe.start()
    runner = _build(spec, spec.batch_size)
    for step in (runner.train_step, runner.infer_step):
        for _ in range(spec.warmup):
            step()
    return runner, probe.stop()


def serve(spec: ImplSpec, connection) -> None:
    """A child's life: build and warm up, say ("ready", {"peak_mb", "pid", "torch_loaded"}), then answer
    ("steps", phase, seconds) with the steps that make a sample last that long and ("sample", phase, steps) with
    their wall seconds, until None."""
    try:
        runner, peak = _prepare(spec)
        connection.send(("ready", {"peak_mb": peak, "pid": os.getpid(), "torch_loaded": "torch" in sys.modules}))
        while (request := connection.recv()) is not None:
            kind, phase, value = request
            step = runner.train_step if phase == "train" else runner.infer_step
            if kind == "steps":
                connection.send(("steps", steps_per_sample(runner, step, value)))
            else:
                connection.send(("sample", seconds_for(runner, step, value)))
    except BaseException as error:  # the parent raises it, with the child's words
        connection.send(("error", f"{type(error).__name__}: {error}"))
    finally:
        connection.close()


class ImplProcesses:
    """One child process per ImplSpec (multiprocessing's spawn: a fresh interpreter each), started together."""

    def __init__(self, specs):
        context = multiprocessing.get_context("spawn")
        self.specs, self._children = list(specs), []
        for spec in self.specs:
            parent_end, child_end = context.Pipe()
            process = context.Process(target=serve, args=(spec, child_end), name=f"bench-{spec.impl}", daemon=True)
            process.start()
            child_end.close()
            self._children.append((process, parent_end))

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        for process, connection in self._children:
            try:
                connection.send(None)
            except OSError:
                pass
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()
            connection.close()

    def _ask(self, index, request=None):
        process, connection = self._children[index]
        if request is not None:
            connection.send(request)
        try:
            answer = connection.recv()
        except EOFError:
            raise RuntimeError(f"the bench process of {self.specs[index].impl} ended "
                               f"(exit code {process.exitcode}).") from None
        if answer[0] == "error":
            raise RuntimeError(f"the bench process of {self.specs[index].impl} failed: {answer[1]}")
        return answer[1]

    def ready(self) -> list[dict]:
        """Each child's facts once it has warmed up: its peak memory in MB (None where it cannot be read), its process
        id, and whether torch is loaded in it."""
        return [self._ask(index) for index in range(len(self.specs))]

    def samples(self, phase: str, repeats: int, sample_seconds: float, batch_size: int) -> list[list[float]]:
        """Images per second of each child: `repeats` rounds of one sample each, A B C, A B C, ..., a pause of
        SETTLE_SECONDS before every sample."""
        counts = [self._ask(index, ("steps", phase, sample_seconds)) for index in range(len(self.specs))]
        samples: list[list[float]] = [[] for _ in self.specs]
        for _ in range(repeats):
            for index, count in enumerate(counts):
                time.sleep(SETTLE_SECONDS)
                samples[index].append(count * batch_size / self._ask(index, ("sample", phase, count)))
        return samples
