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
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy

from nets.nn.losses import SoftmaxCrossEntropy


def default_workers() -> int:
    """Worker threads for CPU training: the cores this process may use (at most 8), else 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))


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
        shared = model.parameters().flat
        self.replicas = [build_model(model.config(), backend=model.backend, dtype=model.dtype,
                                     rng=numpy.random.default_rng(0), shared_values=shared)
                         for _ in range(self.workers)]
        self.heads = [SoftmaxCrossEntropy(model.classes) for _ in range(self.workers)]
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="nets-worker")
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

        def run_all():
            futures = [self._pool.submit(function, index, *share) for index, share in enumerate(shares)]
            return [future.result() for future in futures]

        if self._blas is None:
            return run_all(), shares
        with self._blas.limit(limits=1, user_api="blas"):
            return run_all(), shares

    def gradients(self, x, labels) -> None:
        """Fill the model's gradient buffer with the gradient over the whole batch; the replicas' heads
        add the batch's loss and hits to their totals."""
        count = len(labels)

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
