"""Data parallelism over CPU threads: each worker runs a replica of the model on its share of the batch.

Why: on the CPU, NumPy runs each element-wise pass (im2col copies, col2im adds, pooling, ReLU) on one core,
while BLAS spreads only the matrix products over the others. Splitting the batch across threads, each with
a single-threaded BLAS, keeps every core busy for the whole step (NumPy releases the GIL inside its loops).
Measured on 2 cores, CNN, batch 128, float32: 18.0 ms -> 12.1 ms per training step; at batch 32 it gained
nothing (4.45 -> 4.59 ms), and the MLP's 0.8 ms steps ran 1.6x slower split: each model class says in
`min_per_worker` how many examples a worker needs to be worth it (None: never split).

The replicas compute with the model's own parameter buffer (`shared_values`: optimizers update it in place,
so every replica sees each update) and keep their own activations, buffers, gradients and loss head. The
batch gradient is the size-weighted mean of the replicas' gradients, exactly what one pass over the whole
batch computes, combined over the flat gradient buffers in a few whole-buffer operations:

    loss = sum_i n_i * loss_i / N,    grad = sum_i n_i * grad_i / N

The worker threads start when the replicas are made, not at the first step: on a machine that cannot start
them (`RuntimeError: can't start new thread`, a loaded machine at its process limit) each batch runs on one
thread instead, and one line on stderr says so; training and the bench go on.
"""

from __future__ import annotations

import os
import queue
import sys
import weakref
from concurrent.futures import Future
from threading import Thread

import numpy

from nets.errors import first_line

from nets.nn.losses import SoftmaxCrossEntropy


def usable_cores() -> int:
    """The cores this process may use (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_workers() -> int:
    """Worker threads for CPU training: the cores this process may use, at most 8."""
    return min(usable_cores(), 8)


def _serve(calls: queue.SimpleQueue) -> None:
    """A worker thread's life: run each (future, function, args) put in its queue until None comes."""
    while True:
        item = calls.get()
        if item is None:
            return
        future, function, args = item
        del item  # hold nothing between calls (a call's closure would keep its DataParallel alive)
        try:
            future.set_result(function(*args))
        except BaseException as error:  # handed to the caller, who re-raises it
            future.set_exception(error)
        del future, function, args


def _stop(queues) -> None:
    for calls in queues:
        calls.put(None)


class _Threads:
    """`count` worker threads, started at once (RuntimeError if the machine cannot start them all: those started
    stop again), each running the calls given to it; they stop when this object is collected."""

    def __init__(self, count: int):
        self._queues = []
        try:
            for index in range(count):
                calls = queue.SimpleQueue()
                Thread(target=_serve, args=(calls,), name=f"nets-worker-{index}", daemon=True).start()
                self._queues.append(calls)
        except RuntimeError:
            _stop(self._queues)
            raise
        weakref.finalize(self, _stop, list(self._queues))

    def run(self, calls) -> list:
        """[(function, args)], one per thread from the first -> their results in order (a call's error raised)."""
        futures = []
        for calls_queue, (function, args) in zip(self._queues, calls):
            futures.append(Future())
            calls_queue.put((futures[-1], function, args))
        return [future.result() for future in futures]


def _single_threaded_blas():
    """A context manager that limits BLAS to one thread per call (threadpoolctl), or does nothing without it."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()


class DataParallel:
    """Replicas of a nets model (on the CPU) that split a batch across `workers` threads.

    Batches smaller than workers * min_per_worker are left to the caller to run unsplit (`splits`).
    """

    def __init__(self, model, workers: int, min_per_worker: int = 32):
        from nets.nn.models import build_model  # here, not at the top: models does not depend on this module

        self.model = model
        self.workers = int(workers)
        self.min_per_worker = int(min_per_worker)
        try:
            self._threads = _Threads(self.workers)
        except RuntimeError as error:  # "can't start new thread": the machine is at its limit
            print(f"warning: could not start {self.workers} CPU worker threads ({first_line(error)}); each batch runs "
                  "on one thread instead.", file=sys.stderr, flush=True)
            self.workers, self._threads = 1, None  # splits() is then always False: the caller runs the model itself
        shared = model.parameters().flat
        self.replicas = [build_model(model.config(), backend=model.backend, dtype=model.dtype,
                                     rng=numpy.random.default_rng(0), shared_values=shared)
                         for _ in range(self.workers if self._threads is not None else 0)]
        self.heads = [SoftmaxCrossEntropy(model.classes) for _ in self.replicas]
        self._blas = _single_threaded_blas()
        self._scratch = None

    def _workers_for(self, count) -> int:
        """How many workers share a batch of `count`: each gets at least min_per_worker examples."""
        return min(self.workers, count // self.min_per_worker)

    def splits(self, count) -> bool:
        """Whether a batch of `count` is worth splitting."""
        return self._workers_for(count) > 1

    def _map(self, function, count):
        """function(worker index, start, stop) on each worker's share of `count` examples, concurrently,
        with a single-threaded BLAS; -> (results, shares)."""
        workers = self._workers_for(count)
        bounds = numpy.linspace(0, count, workers + 1).round().astype(int)
        shares = list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))

        errors = numpy.geterr()  # the caller's floating-point error handling, which threads do not inherit

        def with_callers_errstate(*arguments):
            with numpy.errstate(**errors):
                return function(*arguments)

        calls = [(with_callers_errstate, (index, *share)) for index, share in enumerate(shares)]
        if self._blas is None:
            return self._threads.run(calls), shares
        with self._blas.limit(limits=1, user_api="blas"):
            return self._threads.run(calls), shares

    def gradients(self, x, labels) -> None:
        """Fill the model's gradient buffer with the gradient over the whole batch; the replicas' heads
        add the batch's loss and hits to their totals."""
        count = len(labels)
        if tuple(x.shape[1:]) != tuple(self.model.input_shape):  # the model's input slot: its pixels, without the
            x = x[:, :-1]  # column of ones, which each replica's first Linear keeps in a slot of its own

        def one(index, start, stop):
            replica, head = self.replicas[index], self.heads[index]
            logits = replica.forward_step(x[start:stop], train=True)
            replica.backward_step(head(logits, labels[start:stop]))

        _, shares = self._map(one, count)
        total = self.model.gradients().flat
        xp = self.model.backend.xp
        if self._scratch is None:
            self._scratch = xp.empty_like(total)
        for index, (start, stop) in enumerate(shares):
            part = self.replicas[index].gradients().flat
            weight = (stop - start) / count
            if index == 0:
                xp.multiply(part, weight, out=total)
            else:
                total += xp.multiply(part, weight, out=self._scratch)

    def forward(self, x):
        """Evaluation logits of a batch, split across the workers (the caller checks `splits` first)."""
        results, _ = self._map(lambda index, start, stop: self.replicas[index].forward(x[start:stop], train=False),
                               len(x))
        return numpy.concatenate(results)

    def totals(self) -> tuple[float, int]:
        loss, hits = 0.0, 0
        for head in self.heads:
            head_loss, head_hits = head.totals()
            loss, hits = loss + head_loss, hits + head_hits
        return loss, hits

    def reset_totals(self) -> None:
        for head in self.heads:
            head.reset()
