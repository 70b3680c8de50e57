"""Data parallelism over CPU threads: each worker runs a replica of the model on its share of the batch.

Why: on the CPU, NumPy runs each element-wise pass (im2col copies, col2im adds, pooling, ReLU) on one core,
while BLAS spreads only the matrix products over the others. Splitting the batch across threads, each with
a single-threaded BLAS, keeps every core busy for the whole step (NumPy releases the GIL inside its loops).
Measured on 2 cores, CNN, batch 128, float32: 18.0 ms -> 12.1 ms per training step; at batch 32 it gained
nothing (4.45 -> 4.59 ms), and the MLP's 0.8 ms steps ran 1.6x slower split: each model class says in
`min_per_worker` how many examples a worker needs to be worth it (None: never split).

The replicas share the model's parameter arrays (optimizers update them in place, so every replica sees
each update) and keep their own activations, buffers and gradients. The batch gradient is the
size-weighted mean of the replicas' gradients, exactly what one pass over the whole batch computes:

    loss = sum_i n_i * loss_i / N,    grad = sum_i n_i * grad_i / N

`DataParallel` has the calls the training loop makes of a model (loss_and_gradients, gradients, forward,
parameters, ...) and hands every other attribute to the wrapped model.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy

from backend import array_module


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
    """model: a nets model on the CPU. workers: threads (one replica each). Batches smaller than
    workers * min_per_worker run on the model itself, unsplit, with BLAS's own threads."""

    def __init__(self, model, workers: int, min_per_worker: int = 32):
        from .models import build_model  # here, not at the top: models does not depend on this module

        self.model = model
        self.workers = int(workers)
        self.min_per_worker = int(min_per_worker)
        self.replicas = []
        for _ in range(self.workers):
            replica = build_model(model.config(), backend=model.backend, dtype=model.dtype,
                                  rng=numpy.random.default_rng(0))
            for (_, layer), (_, source) in zip(replica.layers, model.layers):
                layer.params = source.params  # the same arrays: one set of weights
            self.replicas.append(replica)
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="nets-worker")
        self._blas = _single_threaded_blas()
        self._gradients = None
        self._split_last = False

    def __getattr__(self, name):
        return getattr(self.model, name)

    def _workers_for(self, count) -> int:
        """How many workers share a batch of `count`: each gets at least min_per_worker examples."""
        return min(self.workers, count // self.min_per_worker)

    def _map(self, function, count):
        """function(replica, start, stop) on each worker's share of `count` examples, concurrently, with a
        single-threaded BLAS; -> (results, shares)."""
        workers = self._workers_for(count)
        bounds = numpy.linspace(0, count, workers + 1).round().astype(int)
        shares = list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))

        def run_all():
            futures = [self._pool.submit(function, replica, *share) for replica, share in zip(self.replicas, shares)]
            return [future.result() for future in futures]

        if self._blas is None:
            return run_all(), shares
        with self._blas.limit(limits=1, user_api="blas"):
            return run_all(), shares

    def loss_and_gradients(self, x, labels):
        """As Model.loss_and_gradients, over the whole batch: (loss, logits (N, classes))."""
        count = len(labels)
        self._split_last = self._workers_for(count) > 1
        if not self._split_last:
            return self.model.loss_and_gradients(x, labels)
        results, shares = self._map(
            lambda replica, start, stop: replica.loss_and_gradients(x[start:stop], labels[start:stop]), count)
        xp = array_module(x)
        weights = [(stop - start) / count for start, stop in shares]
        if self._gradients is None:
            self._gradients = {name: xp.empty_like(value) for name, value in self.model.parameters().items()}
        for name, total in self._gradients.items():
            parts = [replica.gradients()[name] for replica in self.replicas[:len(shares)]]
            xp.multiply(parts[0], weights[0], out=total)
            for part, weight in zip(parts[1:], weights[1:]):
                total += part * weight
        loss = sum(result[0] * weight for result, weight in zip(results, weights))
        return loss, xp.concatenate([result[1] for result in results])

    def gradients(self) -> dict:
        """The gradients of the last loss_and_gradients, over the whole batch."""
        return self._gradients if self._split_last else self.model.gradients()

    def forward(self, x, train=True):
        """As Model.forward; evaluation batches are split across the workers too."""
        if train or self._workers_for(len(x)) < 2:
            return self.model.forward(x, train=train)
        results, _ = self._map(lambda replica, start, stop: replica.forward(x[start:stop], train=False), len(x))
        return array_module(x).concatenate(results)
