"""Data parallelism over CPU threads: each worker runs a replica of the model on its share of the batch.

Why: on the CPU, NumPy runs each element-wise pass (im2col copies, col2im adds, pooling, ReLU) on one core,
while BLAS spreads only the matrix products over the others. Splitting the batch across threads, each with
a single-threaded BLAS, keeps every core busy for the whole step (NumPy releases the GIL inside its loops).
A short step gains less from the split than the hand-off to the threads costs, so each model class says in
`min_per_worker` how many examples a worker needs to be worth it (None: never split); docs/performance.md has
the timings behind those numbers.

The replicas compute with the model's own parameter buffer (`shared_values`: optimizers update it in place,
so every replica sees each update) and keep their own activations, buffers, gradients and loss head. Each
worker runs its share in chunks of at most the model's `train_chunk` examples (forward and backward of one chunk,
then the next), so its buffers are sized for a chunk, not a share. The batch gradient is the size-weighted mean
of the chunks' gradients, what one pass over the whole batch computes up to float rounding, combined over the
flat gradient buffers in a few whole-buffer operations:

    loss = sum_i n_i * loss_i / N,    grad = sum_i n_i * grad_i / N

The worker threads start when the replicas are made, not at the first step: on a machine that cannot start
them (`RuntimeError: can't start new thread`, a loaded machine at its process limit) each batch runs on one
thread instead, and one line on stderr says so; training and the bench go on.
"""

from __future__ import annotations

import contextlib
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
    """A worker thread's life: run each (future, function, args, errstate) put in its queue until None comes, under
    the caller's numpy errstate (which threads do not inherit)."""
    while True:
        item = calls.get()
        if item is None:
            return
        future, function, args, errstate = item
        del item  # hold nothing between calls (a call's closure would keep its DataParallel alive)
        try:
            with numpy.errstate(**errstate):
                future.set_result(function(*args))
        except BaseException as error:  # handed to the caller, who re-raises it
            future.set_exception(error)
        del future, function, args


def _stop(queues) -> None:
    for calls in queues:
        calls.put(None)


class _Threads:
    """`count` worker threads, started at once (RuntimeError if the machine cannot start them all: those started
    stop again), each running the calls given to it; they stop when this object is collected. The calling thread
    works beside them (DataParallel runs the first share itself)."""

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

    @contextlib.contextmanager
    def running(self, calls):
        """[(function, args)], one per thread from the first, started on entry; the block runs in the calling thread
        meanwhile, and the exit waits for them all (a call's error raised). Yields the list their results fill."""
        futures, errstate, results = [], numpy.geterr(), []
        for calls_queue, (function, args) in zip(self._queues, calls):
            futures.append(Future())
            calls_queue.put((futures[-1], function, args, errstate))
        try:
            yield results
        finally:
            done = [future.exception() for future in futures]  # wait for every call, even when the block raised
        failed = next((error for error in done if error is not None), None)
        if failed is not None:
            raise failed
        results.extend(future.result() for future in futures)


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
            self._threads = _Threads(self.workers - 1)  # the calling thread is the first worker
        except RuntimeError as error:  # "can't start new thread": the machine is at its limit
            threads = f"{self.workers - 1} CPU worker thread{'s' if self.workers != 2 else ''}"
            print(f"warning: could not start {threads} ({first_line(error)}); each batch runs on one thread instead.",
                  file=sys.stderr, flush=True)
            self.workers, self._threads = 1, None  # splits() is then always False: the caller runs the model itself
        shared = model.parameters().flat
        self.replicas = [build_model(model.config(), backend=model.backend, dtype=model.dtype,
                                     rng=numpy.random.default_rng(0), shared_values=shared)
                         for _ in range(self.workers if self._threads is not None else 0)]
        self.heads = [SoftmaxCrossEntropy(model.classes) for _ in self.replicas]
        self._blas = _single_threaded_blas()
        self._sums = [None] * len(self.replicas)  # each replica's weighted sum of its chunks' gradients
        self._logits = {}  # batch size -> the logits forward fills share by share

    def _workers_for(self, count) -> int:
        """How many workers share a batch of `count`: each gets at least min_per_worker examples."""
        return min(self.workers, count // self.min_per_worker)

    def splits(self, count) -> bool:
        """Whether a batch of `count` is worth splitting."""
        return self._workers_for(count) > 1

    def _shares(self, count) -> list:
        """(start, stop) of each worker's share of `count` examples."""
        bounds = numpy.linspace(0, count, self._workers_for(count) + 1).round().astype(int)
        return list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))

    def _single_threaded_blas(self):
        return self._blas.limit(limits=1, user_api="blas") if self._blas is not None else contextlib.nullcontext()

    def gradients(self, x, labels) -> None:
        """Fill the model's gradient buffer with the gradient over the whole batch; the replicas' heads
        add the batch's loss and hits to their totals. This thread runs the first share, the workers the others."""
        count = len(labels)
        if tuple(x.shape[1:]) != tuple(self.model.input_shape):  # the model's input_with_ones: its pixels, without
            x = x[:, :-1]  # the column of ones, which each replica's first Linear keeps in an array of its own
        shares = self._shares(count)
        others = [(self._share_gradients, (index, x, labels, share, count)) for index, share in enumerate(shares)
                  if index]
        replica, head = self.replicas[0], self.heads[0]
        with self._single_threaded_blas(), self._threads.running(others):
            for first, (start, stop) in enumerate(self._chunks(*shares[0])):
                logits = replica.forward_step(x[start:stop], train=True)
                replica.backward_step(head(logits, labels[start:stop]))
                self._accumulate(0, (stop - start) / count, first == 0)
        total, sums = self.model.gradients().flat, self._sums
        if len(shares) == 1:
            total[...] = sums[0]
        else:
            self.model.backend.xp.add(sums[0], sums[1], out=total)
        for index in range(2, len(shares)):
            total += sums[index]

    def _share_gradients(self, index, x, labels, share, count) -> None:
        replica, head = self.replicas[index], self.heads[index]
        for first, (start, stop) in enumerate(self._chunks(*share)):
            logits = replica.forward_step(x[start:stop], train=True)
            replica.backward_step(head(logits, labels[start:stop]))
            self._accumulate(index, (stop - start) / count, first == 0)

    def _chunks(self, start, stop) -> list:
        """A share (start, stop) as chunks of at most the model's train_chunk examples, of (nearly) equal sizes."""
        chunk = self.model.train_chunk or (stop - start)
        pieces = -(-(stop - start) // chunk)
        bounds = numpy.linspace(start, stop, pieces + 1).round().astype(int).tolist()
        return list(zip(bounds[:-1], bounds[1:]))

    def _accumulate(self, index, weight, first) -> None:
        """Replica `index`'s chunk gradient, weighted by the chunk's share of the batch, into its running sum (the
        replica's gradient buffer is scaled in place: its next backward overwrites it anyway)."""
        xp, gradient = self.model.backend.xp, self.replicas[index].gradients().flat
        if self._sums[index] is None:
            self._sums[index] = xp.empty_like(gradient)
        if first:
            xp.multiply(gradient, weight, out=self._sums[index])
        else:
            gradient *= weight
            self._sums[index] += gradient

    def forward(self, x):
        """Evaluation logits of a batch, split across the workers (the caller checks `splits` first): each writes
        its share into one array kept per batch size, which the next prediction of as many examples overwrites."""
        count = len(x)
        logits = self._logits.get(count)
        if logits is None:
            logits = self._logits[count] = numpy.empty((count, self.model.classes), dtype=self.model.dtype)
        shares = self._shares(count)
        others = [(self._share_logits, (index, x, logits, *share)) for index, share in enumerate(shares) if index]
        with self._single_threaded_blas(), self._threads.running(others):
            self._share_logits(0, x, logits, *shares[0])
        return logits

    def _share_logits(self, index, x, logits, start, stop) -> None:
        logits[start:stop] = self.replicas[index].predict_step(x[start:stop])

    def totals(self) -> tuple[float, int]:
        loss, hits = 0.0, 0
        for head in self.heads:
            head_loss, head_hits = head.totals()
            loss, hits = loss + head_loss, hits + head_hits
        return loss, hits

    def reset_totals(self) -> None:
        for head in self.heads:
            head.reset()
